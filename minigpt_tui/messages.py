"""The messages between the panes and the app.

Panes do not call the app or read each other: a pane posts what happened, the message bubbles up
to the app, and the app keeps what it needs of it and tells the panes concerned (by a method or
an attribute it sets). A pane's own messages, from its workers to itself, stay in its module.

    RunChanged      Train, Ablate pane -> app: quit asks while a run is live; the Chat pane
                    decodes with fewer threads beside one, and offers the Train pane's model
    PickRun         Train pane -> app: show the run picker, then attach the run picked
    ModelLoaded     Chat pane -> Chat pane, app: the Inspect pane looks inside the same model
    ExchangeChanged Chat pane -> app: the Inspect pane suggests it when its tab is shown
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rich.text import Text
from textual.message import Message

if TYPE_CHECKING:
    from minigpt_tui.panes.following import FollowingPane


@dataclass
class RunChanged(Message):
    """A pane that follows a run has a new run, or news of it (posted at each redraw)."""

    pane: FollowingPane
    live: bool  # its process may still be at work: it uses every core, and quitting asks
    checkpoint: Path | None  # where it saves its model, saved yet or not; None: it saves none

    @property
    def control(self) -> FollowingPane:
        """The pane, for @on(RunChanged, "TrainPane")."""
        return self.pane


@dataclass
class PickRun(Message):
    """The user asked to attach to a run: the app shows the run picker."""


@dataclass
class ModelLoaded(Message):
    """The Chat pane has a model to decode with (its loader's, or one handed to the app)."""

    model: object
    tokenizer: object
    description: Text  # the checkpoint's path and what the model is, as the pane shows it
    lock: threading.Lock  # held by whoever runs the model: the Chat pane decoding, or Inspect


@dataclass
class ExchangeChanged(Message):
    """The Chat pane's last exchange changed: its prompt, then the reply as it streams."""

    text: str
