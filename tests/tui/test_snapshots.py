"""Snapshots of screens that hold no paths, times or numbers from a run, so they are stable.
Textual is pinned in pyproject.toml; after a deliberate change to a screen, refresh them with
`python -m pytest tests/tui/test_snapshots.py --snapshot-update` and review the SVG diff."""

import pytest

from minigpt_tui.app import MinigptApp

from .waiting import wait_for

SIZE = (80, 24)


@pytest.fixture
def app(tmp_path) -> MinigptApp:
    return MinigptApp(runs_root=tmp_path / "runs", autostart=False)


async def footer_settled(pilot, timeout: float = 10.0) -> None:
    """Wait until focus and the footer's keys have stopped changing: the footer is rebuilt after
    focus lands, later on a loaded machine than a fixed pause allows."""
    def state():
        return pilot.app.focused, [str(k.render()) for k in pilot.app.screen.query("FooterKey")]

    last, same, waited = state(), 0, 0.0
    while same < 3 and waited < timeout:
        await pilot.pause(0.1)
        waited += 0.1
        now = state()
        same = same + 1 if now == last else 0
        last = now


def keys_then_steady(*keys, focus: str):
    """Press keys, wait for focus to land on the widget whose id is focus (it moves after a
    refresh), then stop cursors blinking: a blink caught on or off is not a difference."""

    async def run_before(pilot) -> None:
        def focused(widget_id: str | None = None) -> bool:
            now = pilot.app.focused
            return now is not None and (widget_id is None or now.id == widget_id)

        # a key pressed before the pane has focus goes nowhere
        await wait_for(pilot, focused, what="the first focus")
        await footer_settled(pilot)
        await pilot.press(*keys)
        await wait_for(pilot, lambda: focused(focus), what=f"focus on #{focus}")
        await footer_settled(pilot)
        for screen in pilot.app.screen_stack:
            for box in screen.query("Input"):
                box.cursor_blink = False
        await pilot.pause()

    return run_before


def test_new_run_form(app, snap_compare):
    assert snap_compare(app, run_before=keys_then_steady("n", focus="data"), terminal_size=SIZE)


def test_ablate_pane_before_a_run(app, snap_compare):
    assert snap_compare(app, run_before=keys_then_steady("3", focus="ablate-variants"),
                        terminal_size=SIZE)


def test_inspect_pane_without_a_model(app, snap_compare):
    assert snap_compare(app, run_before=keys_then_steady("4", focus="inspect-prompt"),
                        terminal_size=SIZE)
