"""A modal list of the conversations saved (minigpt.infer.conversations): pick one to reopen in
the Chat pane. One that cannot be read is listed as such; picking it says why."""

from __future__ import annotations

from pathlib import Path

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option

from minigpt.infer.conversations import Entry
from minigpt_tui.text import assemble, plain


def describe(entry: Entry) -> Text:
    """One row: when, the first prompt, how many turns, the model's file name."""
    chat = entry.chat
    if chat is None:
        return assemble((f"{entry.path.name}  ", "bold"), ("cannot be read", "red"))
    when = chat.saved.replace("T", " ")[:16]
    model = f", {Path(chat.model).name}" if chat.model else ""
    turns = len(chat.exchanges)
    return assemble((f"{when}  ", "dim"), chat.title.replace("\n", " "),
                    (f"  ({turns} turn{'s' if turns != 1 else ''}{model})", "dim"))


class OpenConversation(ModalScreen[Entry | None]):
    """Dismisses with the entry picked, or None (Esc)."""

    BINDINGS = [Binding("escape", "dismiss_none", "Close")]

    def __init__(self, entries: list[Entry], folder: Path, unsaved: int = 0):
        super().__init__()
        self.entries, self.folder, self.unsaved = entries, folder, unsaved

    def compose(self) -> ComposeResult:
        with Vertical(id="picker"):
            yield Label(plain(f"Conversations in {self.folder}: Enter opens, Esc closes"),
                        classes="title")
            if self.unsaved:
                yield Label(f"The conversation shown has {self.unsaved} unsaved turn(s): "
                            "opening another replaces it (Esc, then ctrl+s saves it).",
                            classes="note")
            if not self.entries:
                yield Label("None saved yet: ctrl+s in the Chat pane saves the conversation.")
                return
            yield OptionList(*(Option(describe(e), id=str(i))
                               for i, e in enumerate(self.entries)))

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.entries[int(event.option.id)])

    def action_dismiss_none(self) -> None:
        self.dismiss(None)
