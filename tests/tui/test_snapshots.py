"""Snapshots of screens that hold no paths, times or numbers from a run, so they are stable.
Textual is pinned in pyproject.toml; after a deliberate change to a screen, refresh them with
`python -m pytest tests/tui/test_snapshots.py --snapshot-update` and review the SVG diff."""

import pytest

from minigpt_tui.app import MinigptApp

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


def keys_then_steady(*keys):
    """Press keys, then stop cursors blinking: a blink caught on or off is not a difference."""

    async def run_before(pilot) -> None:
        await footer_settled(pilot)  # a key pressed before the pane has focus goes nowhere
        await pilot.press(*keys)
        await pilot.pause(0.5)  # focus moves after a refresh: let it land before the picture
        await footer_settled(pilot)
        for screen in pilot.app.screen_stack:
            for box in screen.query("Input"):
                box.cursor_blink = False
        await pilot.pause()

    return run_before


def test_new_run_form(app, snap_compare):
    assert snap_compare(app, run_before=keys_then_steady("n"), terminal_size=SIZE)


def test_ablate_pane_before_a_run(app, snap_compare):
    assert snap_compare(app, run_before=keys_then_steady("3"), terminal_size=SIZE)


def test_inspect_pane_without_a_model(app, snap_compare):
    assert snap_compare(app, run_before=keys_then_steady("4"), terminal_size=SIZE)
