"""The minigpt TUI: Train, Chat, Ablate and Inspect panes in tabs.

    minigpt tui [--data PATH [--text-field NAME]] [--preset NAME] [--steps N] [--attach RUN_DIR]
    minigpt chat --ckpt CHECKPOINT [sampling options] [--device D] [--weights W]
                                        (opens straight into the Chat pane, set up so)

Training and ablations run as child processes in their own sessions, so quitting the TUI or
losing the SSH connection leaves them running; attaching later replays their history.

The app routes: panes post what happened (minigpt_tui.messages), the app keeps what it needs of
it and tells the panes concerned. No pane calls the app or reads another pane.
"""

from __future__ import annotations

from pathlib import Path

from textual import on
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import Footer, Header, TabbedContent, TabPane

from minigpt.backends.cpu import decode_threads
from minigpt.infer.config import SamplingConfig
from minigpt.runs.files import DEFAULT_RUNS_ROOT
from minigpt.runs.state import list_runs, summarize_run
from minigpt_tui.messages import ExchangeChanged, ModelLoaded, PickRun, RunChanged
from minigpt_tui.panes.ablate import AblatePane
from minigpt_tui.panes.chat import ChatPane
from minigpt_tui.panes.following import FollowingPane
from minigpt_tui.panes.inspect import InspectPane
from minigpt_tui.panes.train import TrainPane
from minigpt_tui.screens.quit import QuitScreen
from minigpt_tui.screens.run_picker import NEW_RUN, RunPicker


class MinigptApp(App):
    CSS_PATH = "app.tcss"
    TITLE = "minigpt"
    BINDINGS = [
        Binding("q", "quit", "Quit"),
        Binding("1", "show_tab('train')", "Train", show=False),
        Binding("2", "show_tab('chat')", "Chat", show=False),
        Binding("3", "show_tab('ablate')", "Ablate", show=False),
        Binding("4", "show_tab('inspect')", "Inspect", show=False),
        Binding("f1,question_mark", "toggle_help", "Keys"),
    ]

    def __init__(self, data: str | None = None, preset: str | None = None,
                 steps: int | None = None, attach: Path | None = None, ckpt=None,
                 runs_root: Path = DEFAULT_RUNS_ROOT, autostart: bool = True,
                 weights: str = "auto", text_field: str | None = None,
                 sampling: SamplingConfig | None = None, device: str | None = None,
                 system: str | None = None):
        super().__init__()
        self.system = system  # minigpt chat's --system: the Chat pane's system prompt
        self.text_field = text_field  # of JSON Lines / Parquet --data, for the run it starts
        # for the chat model: minigpt chat's --weights, --device and sampling options
        self.weights, self.device, self.sampling = weights, device, sampling
        self.data, self.preset, self.steps = data, preset, steps
        # ckpt: a checkpoint for the Chat pane to load, or a model minigpt chat has loaded
        self.attach_dir, self.ckpt = attach, ckpt
        self.runs_root = Path(runs_root)
        self.autostart = autostart
        # what the panes said last, kept for the panes that need it
        self.followed: dict[FollowingPane, RunChanged] = {}  # each run pane's run: live or not
        self.last_exchange = ""  # the Chat pane's: the Inspect pane's suggested prompt

    def compose(self) -> ComposeResult:
        yield Header(icon="")
        with TabbedContent(initial="chat" if self.ckpt else "train"):
            with TabPane("Train [1]", id="train"):
                yield TrainPane(self.runs_root)
            with TabPane("Chat [2]", id="chat"):
                yield ChatPane(sampling=self.sampling, device=self.device, system=self.system)
            with TabPane("Ablate [3]", id="ablate"):
                yield AblatePane(self.runs_root)
            with TabPane("Inspect [4]", id="inspect"):
                yield InspectPane()
        yield Footer()

    def on_mount(self) -> None:
        if self.ckpt:
            self.query_one(ChatPane).load(self.ckpt, self.weights)
        elif self.attach_dir:
            self.open_run(Path(self.attach_dir))
        elif self.autostart:
            existing = list_runs(self.runs_root)
            if existing and self.data is None:
                self.pick_run()
            else:
                self.query_one(TrainPane).start_run(self.data, self.preset, self.steps,
                                                    self.text_field)
        self._focus_tab("chat" if self.ckpt else "train")

    # --- runs --------------------------------------------------------------------------------------

    @on(PickRun)
    def pick_run(self) -> None:
        """The run picker: attach the run picked to its pane, or open the new run form."""

        def picked(choice) -> None:
            if choice == NEW_RUN:
                self.query_one(TrainPane).action_new_run()
            elif choice is not None:
                self.open_run(choice)

        self.push_screen(RunPicker(list_runs(self.runs_root)), picked)

    def open_run(self, run_dir: Path) -> None:
        """Attach the pane of its kind (Train or Ablate) to a run directory, and show it."""
        summary = summarize_run(run_dir)
        if summary is not None and summary.kind == "ablate":
            self.query_one(AblatePane).attach(run_dir)
            self.action_show_tab("ablate")
        else:
            self.query_one(TrainPane).attach(run_dir)
            self.action_show_tab("train")

    @on(RunChanged)
    def _run_changed(self, message: RunChanged) -> None:
        """A reply decodes with half the cores while a run trains beside it (it uses every
        core too)."""
        self.followed[message.pane] = message
        training_beside = any(run.live for run in self.followed.values())
        self.query_one(ChatPane).threads = decode_threads(training_beside)

    @on(RunChanged, "TrainPane")
    def _training_changed(self, message: RunChanged) -> None:
        """The Chat pane offers the model the Train pane's run saves."""
        self.query_one(ChatPane).run_checkpoint = message.checkpoint

    # --- the model ---------------------------------------------------------------------------------

    @on(ModelLoaded)
    def _chat_model_loaded(self, message: ModelLoaded) -> None:
        """The Inspect pane looks inside the Chat pane's model."""
        self.query_one(InspectPane).use_model(message.model, message.tokenizer,
                                              message.description, message.lock)

    @on(ExchangeChanged)
    def _exchange_changed(self, message: ExchangeChanged) -> None:
        self.last_exchange = message.text  # suggested when the Inspect tab is shown

    # --- navigation --------------------------------------------------------------------------------

    def action_show_tab(self, tab: str) -> None:
        tabs = self.query_one(TabbedContent)
        if tabs.active == tab:
            self._focus_tab(tab)  # no TabActivated follows: focus here
            return
        # Let go of focus first: hiding the focused widget makes Textual focus a sibling of it,
        # in the pane just hidden, and TabbedContent shows the pane of a focused widget again.
        self.set_focus(None)
        tabs.active = tab  # its TabActivated focuses the new pane

    @on(TabbedContent.TabActivated)
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        if event.pane.id == "inspect":
            self.query_one(InspectPane).suggest(self.last_exchange)
        self._focus_tab(event.pane.id)

    def _focus_tab(self, tab: str) -> None:
        """Focus the pane's main widget once the tab is shown (a hidden widget takes no focus),
        so the pane's key bindings work at once.

        Only if the tab is still the active one by then: focusing a widget in a hidden pane
        makes TabbedContent show that pane again, whose TabActivated asked for another focus
        there, so keys 1 2 3 4 faster than a refresh left each tab re-activating itself forever."""
        target = {"train": "TrainPane", "chat": "#chat-prompt", "ablate": "#ablate-variants",
                  "inspect": "#inspect-prompt"}[tab]

        def focus() -> None:
            if self.query_one(TabbedContent).active == tab:
                self.query_one(target).focus()

        self.call_after_refresh(focus)

    def action_toggle_help(self) -> None:
        if self.screen.query("HelpPanel"):
            self.action_hide_help_panel()
        else:
            self.action_show_help_panel()

    # --- quitting ----------------------------------------------------------------------------------

    async def action_quit(self) -> None:
        """Quit, asking first while a run followed here is live: leave it running, or stop it."""
        live = [pane for pane in self.query(FollowingPane)
                if pane in self.followed and self.followed[pane].live]
        if not live:
            self.exit()
            return

        def decided(choice: str) -> None:
            if choice == "stop":
                for pane in live:
                    pane.stop_run()
            if choice in ("stop", "leave"):
                self.exit()

        self.push_screen(QuitScreen(" and ".join(pane.RUN_NAME for pane in live)), decided)
