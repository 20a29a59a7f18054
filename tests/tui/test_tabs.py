"""Tab keys pressed faster than the screen refreshes: the last one wins, and the tabs then stay."""

from pathlib import Path

from textual.widgets import TabbedContent

from minigpt_tui import app as app_module
from minigpt_tui.app import MinigptApp
from minigpt_tui.panes.train import TrainPane

from .waiting import wait_for

SIZE = (80, 24)


class CountingApp(MinigptApp):
    """Counts every tab activation, whoever caused it."""

    CSS_PATH = Path(app_module.__file__).with_name(MinigptApp.CSS_PATH)
    activations = 0

    def on_tabbed_content_tab_activated(self, event: TabbedContent.TabActivated) -> None:
        self.activations += 1


async def test_fast_tab_keys_settle_on_the_last_tab(finished_run):
    app = CountingApp(attach=finished_run, runs_root=finished_run.parent)  # idle: nothing live
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one(TabbedContent)
        await wait_for(pilot, lambda: isinstance(app.focused, TrainPane), what="the first focus")
        # three keys in one batch, as a terminal delivers "1 2 3" typed fast or sent by tmux
        for key in "123":
            app.simulate_key(key)
        ablate_focused = lambda: app.focused is app.query_one("#ablate-variants")  # noqa: E731
        await wait_for(pilot, lambda: tabs.active == "ablate" and ablate_focused(),
                       what="the last tab and its focus")
        before, seen = app.activations, set()
        for _ in range(20):  # a second more: nothing may switch tabs by itself
            await pilot.pause(0.05)
            seen.add(tabs.active)
        assert seen == {"ablate"}
        assert app.activations == before
        assert ablate_focused()


async def test_each_tab_key_shows_its_tab_from_any_other(finished_run):
    """Hiding the focused widget makes Textual focus a sibling in the same, now hidden, pane,
    which showed that pane again: 1 from the Ablate tab stayed on Ablate."""
    app = MinigptApp(attach=finished_run, runs_root=finished_run.parent)
    async with app.run_test(size=SIZE) as pilot:
        tabs = app.query_one(TabbedContent)
        await wait_for(pilot, lambda: isinstance(app.focused, TrainPane), what="the first focus")
        focus = {"train": "TrainPane", "ablate": "#ablate-variants", "chat": "#chat-prompt",
                 "inspect": "#inspect-prompt"}
        for key, tab in [("3", "ablate"), ("4", "inspect"), ("tab", "inspect"), ("1", "train"),
                         ("4", "inspect"), ("tab", "inspect"), ("3", "ablate"), ("2", "chat")]:
            # from the prompt (where a digit is text) to the view, as a user does
            target = app.query_one("#inspect-view" if key == "tab" else focus[tab])
            await pilot.press(key)
            await wait_for(pilot, lambda target=target: app.focused is target,
                           what=f"focus after {key}")
            assert tabs.active == tab, f"after {key}"
            await pilot.pause()
            assert tabs.active == tab and app.focused is target, f"{key}: it moved on"
