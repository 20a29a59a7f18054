"""The Chat pane: talk to a model and watch it write, token by token, with the candidates it chose
from.

A model with the chat template is talked to in turns, its conversation kept (a system prompt
first, if typed); a model without one continues each prompt, which stands alone
(minigpt.infer.dialogue decides, and the transcript's title says which). Compare mode (ctrl+t)
draws two replies to each prompt, with two seeds or two strategies, and appends the user's
choice to a preferences file (minigpt.infer.preferences) for `train --dpo`. Conversations are
saved, reopened and exported to Markdown (chat_files.py); a reply is copied to the clipboard
through the terminal (OSC 52), so it works over SSH.

The model loads and generates in thread workers (PyTorch releases the GIL in its kernels, and a
reply is short), posting messages to the pane; Esc cancels a reply between two tokens. Pieces
are sent in batches, POST_EVERY apart, so a fast model cannot flood the screen.
"""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static
from textual.worker import get_current_worker

from minigpt.backends.cpu import decode_threads
from minigpt.infer.config import STRATEGIES, SamplingConfig
from minigpt.infer.preferences import DEFAULT_PREFERENCES
from minigpt_tui.messages import ExchangeChanged, ModelLoaded
from minigpt_tui.panes.chat_files import ChatFiles
from minigpt_tui.screens.open_checkpoint import OpenCheckpoint
from minigpt_tui.text import assemble, clean, plain, sent_text
from minigpt_tui.widgets.comparison import Comparison
from minigpt_tui.widgets.prompt_input import PromptInput
from minigpt_tui.widgets.reply import Reply
from minigpt_tui.widgets.sampling_settings import SamplingSettings
from minigpt_tui.widgets.token_inspector import Candidates, TokenInspector

N_CANDIDATES = 8
# The reply reaches the screen in batches, as often as reading it needs: drawing a batch takes
# the app's thread a few milliseconds, and that time is taken from decoding (the decoder needs
# the GIL between its kernels, and on a small machine a core).
POST_EVERY = 0.15  # seconds between batches
GROW_BY = 4  # lines: a streaming reply grows this many at a time, each time a layout
SIDE_EVERY = 1.0  # seconds: how often the candidates and tokens/s follow a streaming reply
NEXT_SEED = "next seed"  # compare mode's B: A's settings with the next seed (else a strategy)
SAID = {True: "chat template: turns, user and assistant",  # the transcript's title
        False: "no chat template: it continues the text"}
PLACEHOLDER = {True: "your turn; enter sends, ctrl+j a new line",
               False: "text for the model to continue; enter sends, ctrl+j a new line"}


@dataclass
class Exchange:
    """The prompt being answered: what was sent, the prompt as a preference records it (the
    messages up to the user's turn, or the text), and where the reply (or both) is drawn."""

    sent: str
    recorded: str | list[dict]
    view: Reply | Comparison
    texts: list[str] = field(default_factory=lambda: ["", ""])


class ChatPane(ChatFiles, Widget, can_focus=False):
    """The conversation with a model: the transcript and the prompt, the sampling settings, and
    the candidates of each token of the reply."""

    BINDINGS = [
        Binding("escape", "stop", "Stop reply"),
        Binding("ctrl+t", "compare", "Compare"),
        Binding("ctrl+s", "save", "Save chat"),
        Binding("ctrl+r", "reopen", "Open chat"),
        Binding("ctrl+g", "copy", "Copy reply"),
        Binding("ctrl+f", "export", "Export .md"),
        Binding("ctrl+o", "open", "Open checkpoint"),
        Binding("ctrl+l", "clear", "New chat"),
    ]

    # what the pane's workers tell it; what it tells the app is in minigpt_tui.messages

    @dataclass
    class LoadFailed(Message, bubble=False):
        error: str

    @dataclass
    class Generated(Message, bubble=False):
        """A batch of a reply (which: 0, or 1 for compare mode's B): its text, each token's
        candidates, the speed so far."""

        text: str
        candidates: list[Candidates]
        tokens_per_s: float
        which: int = 0

    @dataclass
    class Finished(Message, bubble=False):
        reason: str  # "done", "stopped", or "failed: ..." (said in the reply)

    def __init__(self, sampling: SamplingConfig | None = None, device: str | None = None,
                 system: str | None = None, prefs: Path | None = None, **kwargs):
        super().__init__(**kwargs)
        self.initial = sampling or SamplingConfig()  # the settings shown until the user edits them
        self.device = device  # as pick_device takes it: None for the best available
        self.system = system  # the system prompt shown first (minigpt chat --system)
        self.prefs = Path(prefs or DEFAULT_PREFERENCES)  # where compare mode's choices go
        self.model = None
        self.tokenizer = None
        self.dialogue = None  # minigpt.infer.dialogue.Dialogue, once a model is loaded
        self.checkpoint_path: Path | None = None
        self.weights = "auto"  # the weights asked for decoding: auto, fp32, bf16 or int8
        self.exchanges: list[tuple[str, str]] = []  # the conversation kept: (sent, reply)
        self.pending: Exchange | None = None  # the prompt answered last, until it is kept
        self.reply: Reply | None = None  # the reply streaming, or the last one
        self.comparing = False  # compare mode: two replies to each prompt
        self.generating = False
        self._side_shown = 0.0  # when the candidates and tokens/s were last drawn
        self.tokens_per_s = 0.0  # the reply's speed, as last measured
        self.last_exchange = ""  # the last prompt and its reply (the Inspect pane's default)
        self.model_lock = threading.Lock()  # one user of the model at a time: chat or inspect
        # set by the app from what the run panes say (minigpt_tui.messages.RunChanged):
        self.threads = decode_threads(training_beside=False)  # a reply's torch threads
        self.run_checkpoint: Path | None = None  # the Train pane's run's model, saved or not

    def compose(self) -> ComposeResult:
        with Horizontal():
            with Vertical(id="chat-main"):
                yield Static("No model: ctrl+o opens a checkpoint.", id="chat-model")
                with Horizontal(id="chat-system-row", classes="setting"):
                    yield Label("system", classes="setting-label")
                    yield Input(self.system or "", id="chat-system", compact=True,
                                placeholder="a system prompt (optional)")
                with Horizontal(id="chat-compare"):
                    yield Label("B:", classes="setting-label")
                    yield Select([(NEXT_SEED, NEXT_SEED)] + [(s, s) for s in STRATEGIES],
                                 value=NEXT_SEED, allow_blank=False, id="compare-b",
                                 compact=True)
                    yield Static(plain(f"each pick is appended to {self.prefs}"),
                                 id="compare-note")
                yield VerticalScroll(id="chat-transcript")
                yield PromptInput(placeholder=PLACEHOLDER[False], id="chat-prompt")
                yield Static("", id="chat-status")
            with Vertical(id="chat-side"):
                yield SamplingSettings(self.initial, id="chat-settings")
                yield TokenInspector(id="chat-inspector")

    @property
    def templated(self) -> bool:
        return self.dialogue is not None and self.dialogue.templated

    @property
    def reply_text(self) -> Text:
        """The last reply, its prompt first, as it is drawn."""
        return self.reply.text if self.reply is not None else Text()

    # --- model -------------------------------------------------------------------------------------

    def load(self, path, weights: str | None = None) -> None:
        """Load a checkpoint; weights: auto, fp32, bf16 or int8 (see minigpt.infer.load), else as
        before.
        path may be a model loaded already (an InferenceModel: minigpt chat loads it before the
        screen opens, so a bad file is one line there), which is used as it is."""
        if not isinstance(path, str | Path):
            self.checkpoint_path, self.weights = path.path, path.asked
            self.post_message(self._loaded_message(path))
            return
        self.query_one("#chat-model", Static).update(plain(f"loading {path} ..."))
        self.checkpoint_path = Path(path)
        self.weights = weights or self.weights
        self._load(Path(path), self.weights)

    def _loaded_message(self, loaded) -> ModelLoaded:
        description = assemble((str(loaded.path), "bold"), f"  {loaded.describe()}")
        return ModelLoaded(loaded.model, loaded.tokenizer, description, self.model_lock)

    @work(thread=True, exclusive=True, group="load")
    def _load(self, path: Path, weights: str) -> None:
        from minigpt.errors import MinigptError
        from minigpt.infer.load import load_for_inference

        try:
            loaded = load_for_inference(path, self.device, weights)
        except MinigptError as e:
            self.post_message(self.LoadFailed(str(e)))
            return
        except Exception as e:  # whatever else a strange file does: a line in the pane
            first = (str(e).strip().splitlines() or [""])[0]
            self.post_message(self.LoadFailed(f"cannot load {path}: {type(e).__name__}: {first}"))
            return
        self.post_message(self._loaded_message(loaded))

    @on(ModelLoaded)
    def _loaded(self, message: ModelLoaded) -> None:
        """Decode with the model (the message goes on up: the app hands it to Inspect), in a
        new conversation: turns, or continuations, as the model has the template or not."""
        from minigpt.infer.dialogue import Dialogue

        self.model, self.tokenizer = message.model, message.tokenizer
        self.dialogue = Dialogue(self.tokenizer)
        self.query_one("#chat-model", Static).update(message.description)
        self.query_one("#chat-system-row").display = self.templated
        self.query_one("#chat-prompt", PromptInput).placeholder = PLACEHOLDER[self.templated]
        self.query_one("#chat-transcript").border_title = plain(SAID[self.templated])
        self.new_conversation()
        self.query_one("#chat-prompt").focus()
        self.model_loaded()  # a conversation waiting for this model is shown now

    @on(LoadFailed)
    def _load_failed(self, message: LoadFailed) -> None:
        self.query_one("#chat-model", Static).update(plain(message.error, "red"))
        self.notify(clean(message.error), severity="error", markup=False)
        self.model_failed()

    # --- settings ----------------------------------------------------------------------------------

    def sampling_config(self) -> SamplingConfig | None:
        """The settings as typed, or None (with the problem shown) if one is not valid."""
        from minigpt.errors import SamplingError

        try:
            return self.query_one(SamplingSettings).config()
        except SamplingError as e:
            self.notify(clean(str(e)), severity="error", markup=False)
            return None

    @on(Input.Changed, "#chat-settings Input")
    def _show_validity(self, event: Input.Changed) -> None:
        if event.validation_result and not event.validation_result.is_valid:
            self.query_one("#chat-status", Static).update(
                plain("; ".join(event.validation_result.failure_descriptions), "red"))
        else:
            self.query_one("#chat-status", Static).update("")

    def _system(self) -> str | None:
        """The system prompt as typed, for a model with the template."""
        return (self.query_one("#chat-system", Input).value or None) if self.templated else None

    # --- generation --------------------------------------------------------------------------------

    @on(PromptInput.Submitted, "#chat-prompt")
    def send(self, event: PromptInput.Submitted) -> None:
        prompt = event.value
        if not prompt:
            return
        if self.model is None:
            self.notify("open a checkpoint first (ctrl+o)", severity="warning", markup=False)
            return
        if self.generating:
            self.notify("a reply is still streaming: Esc stops it", severity="warning",
                        markup=False)
            return
        cfg = self.sampling_config()
        if cfg is None:
            return
        from minigpt.errors import TokenizerError

        self.dialogue.system = self._system()
        try:
            prompt_ids = self.dialogue.prompt(prompt)  # once: the reply continues these ids
        except TokenizerError as e:
            self.notify(clean(str(e)), severity="error", markup=False)
            return
        self._drop_comparison("not picked")  # a pair left unpicked: neither
        recorded = self.dialogue.messages() + [{"role": "user", "content": prompt}] \
            if self.templated else prompt
        prompt_box = self.query_one(PromptInput)
        prompt_box.remember(prompt)
        prompt_box.value = ""
        self._exchanged(prompt)
        shown = sent_text(prompt, self.templated)
        if self.comparing:
            cfgs = self._pair(cfg)
            view = Comparison(shown, tuple(_drawn(c) for c in cfgs), grow_by=GROW_BY)
            self.reply = None
        else:
            cfgs = [cfg]
            view = self.reply = Reply(shown, grow_by=GROW_BY, classes="reply")
        self.pending = Exchange(prompt, recorded, view)
        self.query_one("#chat-transcript").mount(view)
        self.query_one(TokenInspector).clear()
        self.generating = True
        prompt_box.cursor_blink = False  # each blink redraws the box: not while decoding
        self._generate(prompt_ids, cfgs, self.threads, not self.comparing)

    def _pair(self, cfg: SamplingConfig) -> list[SamplingConfig]:
        """Compare mode's A and B: the settings, and B's (the next seed, or another strategy).
        Without a seed, one is drawn here, so each reply can be drawn again."""
        a = cfg if cfg.seed is not None else replace(cfg, seed=random.randrange(10_000))
        b = self.query_one("#compare-b", Select).value
        return [a, replace(a, seed=a.seed + 1) if b == NEXT_SEED else replace(a, strategy=b)]

    @work(thread=True, exclusive=True, group="generate")
    def _generate(self, prompt_ids: list[int], cfgs: list[SamplingConfig], threads: int,
                  with_candidates: bool) -> None:
        import torch

        torch.set_num_threads(threads)
        reason = "done"
        self.model_lock.acquire()  # inspect hooks the model's modules: not while it runs
        try:
            for which, cfg in enumerate(cfgs):
                reason = self._stream(which, prompt_ids, cfg, with_candidates)
                if reason != "done":
                    break
        except Exception as e:  # e.g. a model whose logits overflow to NaN: said, not a crash
            first = (str(e).strip().splitlines() or [""])[0]
            reason = f"failed: {type(e).__name__}: {first}"
        finally:
            self.model_lock.release()
        self.post_message(self.Finished(reason))

    def _stream(self, which: int, prompt_ids: list[int], cfg: SamplingConfig,
                with_candidates: bool) -> str:
        """One reply, posted in batches; "done", or "stopped" when the worker is cancelled."""
        import torch

        from minigpt.infer.sampling import GenerationStats, stream_pieces

        worker = get_current_worker()
        stats = GenerationStats()
        text, candidates, last_post = "", [], time.monotonic()
        try:
            for piece, step in stream_pieces(self.model, self.tokenizer, prompt_ids, cfg, stats):
                if worker.is_cancelled:
                    return "stopped"
                text += piece
                if step is not None and with_candidates:
                    probs, ids = torch.topk(step.probs, min(N_CANDIDATES, step.probs.numel()))
                    candidates.append(Candidates(
                        chosen=self.tokenizer.token_text(step.id),
                        options=[(self.tokenizer.token_text(i), p)  # one copy off the device
                                 for p, i in zip(probs.tolist(), ids.tolist(), strict=True)
                                 if p > 0]))
                if time.monotonic() - last_post > POST_EVERY:
                    self.post_message(self.Generated(text, candidates, stats.tokens_per_s, which))
                    text, candidates, last_post = "", [], time.monotonic()
            return "done"
        finally:
            self.post_message(self.Generated(text, candidates, stats.tokens_per_s, which))

    @on(Generated)
    def _append(self, message: Generated) -> None:
        if self.pending is None:
            return
        self.pending.texts[message.which] += message.text
        view = self.pending.view
        if message.which == 0:
            self._exchanged(self.last_exchange + message.text)
        if isinstance(view, Comparison):
            grew = view.append(message.which, message.text)
        else:
            grew = view.append(plain(message.text))  # draws the new text, not all of it again
        if grew:
            self.query_one("#chat-transcript").scroll_end(animate=False)  # a line more: follow
        # The candidates and the speed, beside and below the reply, a few times a second:
        # Textual redraws the rectangle around everything changed, so updating them with each
        # batch redraws the whole screen, and that time is taken from decoding (the GIL).
        # They are drawn in a frame of their own, after the reply's.
        self.tokens_per_s = message.tokens_per_s
        self.query_one(TokenInspector).extend(message.candidates)
        if time.monotonic() - self._side_shown >= SIDE_EVERY:
            self._side_shown = time.monotonic()
            self.call_after_refresh(self._show_side)

    def _exchanged(self, text: str) -> None:
        self.last_exchange = text
        self.post_message(ExchangeChanged(text))

    def _show_side(self) -> None:
        self.query_one(TokenInspector).show()
        self.query_one("#chat-status", Static).update(  # one line: the screen's layout stays
            f"{self.tokens_per_s:.1f} tokens/s", layout=False)

    @on(Finished)
    def _finished(self, message: Finished) -> None:
        self.generating = False
        self.query_one(PromptInput).cursor_blink = True
        self._show_side()  # the last token's candidates, the reply's speed
        exchange = self.pending
        if exchange is None:
            return
        if isinstance(exchange.view, Comparison):
            if message.reason == "done":
                exchange.view.ready()
                self.query_one("#chat-status", Static).update(
                    "a / left or b / right: the better reply; n: neither")
            else:
                self._drop_comparison(message.reason.split(":")[0])
                self._said_failure(message.reason)
            return
        exchange.view.finish()
        if message.reason == "done":
            self.keep(exchange.sent, exchange.texts[0])
        elif message.reason == "stopped":
            exchange.view.append(plain(" [stopped]", "dim"))
        else:
            exchange.view.append(plain(f" [{message.reason}]", "red"))
            self._said_failure(message.reason)

    def _said_failure(self, reason: str) -> None:
        if reason.startswith("failed"):
            self.query_one("#chat-status", Static).update(plain(reason, "red"))

    def keep(self, sent: str, reply: str) -> None:
        """A reply answered the prompt: the conversation goes on from it."""
        self.exchanges.append((sent, reply))
        self.dialogue.answered(sent, reply)
        self.pending = None

    # --- compare mode ------------------------------------------------------------------------------

    def action_compare(self) -> None:
        """Compare mode on or off: the two replies take the pane's width (the settings and the
        candidates come back with it off)."""
        from minigpt.errors import DataError
        from minigpt.infer.preferences import check_preferences_file

        if self.generating:
            self.notify("a reply is still streaming: Esc stops it", severity="warning",
                        markup=False)
            return
        if not self.comparing:
            try:
                check_preferences_file(self.prefs)  # refused now, not after the first pick
            except DataError as e:
                self.notify(clean(str(e)), severity="error", markup=False)
                return
        self.comparing = not self.comparing
        self.set_class(self.comparing, "-compare")
        self._drop_comparison("not picked")
        self.query_one("#chat-status", Static).update(
            plain(f"compare: two replies to each prompt; choices go to {self.prefs}")
            if self.comparing else "")

    @on(Comparison.Picked)
    def _picked(self, event: Comparison.Picked) -> None:
        """Append the choice to the preferences file; the conversation goes on from the better
        reply (from neither, it goes on without this turn)."""
        from minigpt.errors import DataError
        from minigpt.infer.preferences import append_preference

        exchange = self.pending
        if exchange is None or exchange.view is not event.comparison:
            return
        status = self.query_one("#chat-status", Static)
        if event.choice is None:
            event.comparison.picked(None)
            self.pending = None
            status.update("neither: nothing written, and the turn is not kept")
        else:
            chosen, rejected = exchange.texts[event.choice], exchange.texts[1 - event.choice]
            try:
                append_preference(self.prefs, exchange.recorded, chosen, rejected)
            except DataError as e:  # the pair stays to pick from: n drops it
                self.notify(clean(str(e)), severity="error", markup=False)
                return
            event.comparison.picked(event.choice)
            self.keep(exchange.sent, chosen)
            status.update(plain(f"{'AB'[event.choice]} is better: appended to {self.prefs}"))
        self.query_one("#chat-prompt").focus()

    def _drop_comparison(self, why: str) -> None:
        if self.pending is not None and isinstance(self.pending.view, Comparison):
            if self.pending.view.state in ("writing", "ready"):
                self.pending.view.dropped(why)
            self.pending = None

    # --- actions -----------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.generating:
            self.workers.cancel_group(self, "generate")

    def action_clear(self) -> None:
        """A new conversation: the transcript and the turns go (the system prompt stays)."""
        if self.generating:
            self.notify("a reply is still streaming: Esc stops it", severity="warning",
                        markup=False)
            return
        self.new_conversation()

    def new_conversation(self) -> None:
        self.query_one("#chat-transcript").remove_children()
        self.query_one(TokenInspector).clear()
        self.exchanges, self.pending, self.reply = [], None, None
        if self.dialogue is not None:
            self.dialogue.reset()
        self.forget_file()

    def action_open(self) -> None:
        """Ask for a checkpoint to open: the Train pane's run's, where it saved one, else the one
        open."""
        suggestion = _saved(self.run_checkpoint) or self.checkpoint_path

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.load(path)

        self.app.push_screen(OpenCheckpoint(suggestion), chosen)


def _drawn(cfg: SamplingConfig) -> str:
    """How compare mode drew a reply: 'top-k, seed 7'."""
    return f"{cfg.strategy}, seed {cfg.seed}"


def _saved(path: Path | None) -> Path | None:
    """The path if a file or folder is there."""
    try:
        return path if path is not None and path.exists() else None
    except (OSError, ValueError):  # a path from events.jsonl with a NUL byte in it
        return None
