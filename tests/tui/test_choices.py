"""The choices the TUI offers are the engine's: a preset added to minigpt.train.config.PRESETS is
offered by every form that picks a preset, every strategy by the Chat pane."""

import pytest
from textual.widgets import Select

from minigpt.infer.config import STRATEGIES
from minigpt.train.config import PRESETS, preset
from minigpt_tui.app import MinigptApp
from minigpt_tui.panes.train import TrainPane

from .waiting import wait_for

SIZE = (80, 24)


def offered(select: Select) -> list[str]:
    return [value for _, value in select._options if value != Select.BLANK]


@pytest.fixture
def extra_preset(monkeypatch):
    monkeypatch.setitem(PRESETS, "extra", preset("tiny"))
    return "extra"


async def test_the_forms_offer_every_preset(tmp_path, extra_preset):
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        assert offered(app.query_one("#ablate-preset", Select)) == list(PRESETS)
        assert extra_preset in PRESETS
        await wait_for(pilot, lambda: isinstance(app.focused, TrainPane), what="the pane's focus")
        await pilot.press("n")
        await wait_for(pilot, lambda: len(app.screen.query("#preset")) == 1, what="the form")
        assert offered(app.screen.query_one("#preset", Select)) == ["", *PRESETS]  # "": auto


async def test_the_chat_pane_offers_every_strategy(tmp_path):
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE):
        assert offered(app.query_one("#strategy", Select)) == list(STRATEGIES)
