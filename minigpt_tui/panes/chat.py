"""The Chat pane: type a prompt, watch the model continue it token by token, and look at the
candidates it chose from.

The model loads and generates in thread workers (PyTorch releases the GIL in its kernels, and a
reply is short), posting messages to the pane; Esc cancels a reply between two tokens. Pieces
are sent in batches, POST_EVERY apart, so a fast model cannot flood the screen.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.validation import Function, ValidationResult, Validator
from textual.widget import Widget
from textual.widgets import Input, Select, Static
from textual.worker import get_current_worker

from minigpt.backends.cpu import decode_threads
from minigpt.infer.config import SAMPLING_RULES, STRATEGIES, SamplingConfig
from minigpt.rules import Whole
from minigpt_tui.messages import ExchangeChanged, ModelLoaded
from minigpt_tui.screens.open_checkpoint import OpenCheckpoint
from minigpt_tui.text import assemble, clean, plain
from minigpt_tui.widgets.prompt_input import PromptInput
from minigpt_tui.widgets.reply import Reply
from minigpt_tui.widgets.setting import labelled
from minigpt_tui.widgets.token_inspector import Candidates, TokenInspector

N_CANDIDATES = 8
# The reply reaches the screen in batches, as often as reading it needs: drawing a batch takes
# the app's thread a few milliseconds, and that time is taken from decoding (the decoder needs
# the GIL between its kernels, and on a small machine a core).
POST_EVERY = 0.15  # seconds between batches
GROW_BY = 4  # lines: a streaming reply grows this many at a time, each time a layout
SIDE_EVERY = 1.0  # seconds: how often the candidates and tokens/s follow a streaming reply


class Rule(Validator):
    """What is typed in a sampling setting, checked by SamplingConfig's own rule for it."""

    def __init__(self, field: str):
        super().__init__()
        self.name, self.rule = SAMPLING_RULES[field]

    def validate(self, value: str) -> ValidationResult:
        try:
            number = int(value) if isinstance(self.rule, Whole) else float(value)
            self.rule.check(self.name, number, ValueError)
        except ValueError as e:
            return self.failure(str(e) if "must" in str(e) else f"{self.name}: not a number")
        return self.success()


def parse_stop(text: str) -> tuple[str, ...]:
    """The stop strings as typed: none when empty, a JSON list of strings (for several, or for
    one with a newline: ["\\n\\n"]), else the text itself as the one stop string."""
    if not text.startswith("["):
        return (text,) if text else ()
    strings = json.loads(text)  # a ValueError when it is not JSON
    if not isinstance(strings, list) or not all(isinstance(s, str) for s in strings):
        raise ValueError("not a list of strings")
    return tuple(strings)


def show_stop(stop: tuple[str, ...]) -> str:
    """The stop strings as parse_stop reads them back."""
    if len(stop) == 1 and stop[0].isprintable() and not stop[0].startswith("["):
        return stop[0]
    return json.dumps(list(stop), ensure_ascii=False) if stop else ""


def is_stop_text(text: str) -> bool:
    try:
        parse_stop(text)
        return True
    except ValueError:
        return False


def setting(label: str, input_id: str, value, validators, valid_empty=False,
            tooltip: str | None = None) -> Horizontal:
    """A sampling setting's line: its name, then a box holding its value as typed."""
    box = Input("" if value is None else str(value), id=input_id, validators=validators,
                valid_empty=valid_empty, compact=True)
    return labelled(label, box, tooltip)


class ChatPane(Widget, can_focus=False):
    """The conversation with a model: the transcript and the prompt, the sampling settings, and
    the candidates of each token of the reply."""

    BINDINGS = [
        Binding("escape", "stop", "Stop reply"),
        Binding("ctrl+o", "open", "Open checkpoint"),
        Binding("ctrl+l", "clear", "Clear"),
    ]

    # what the pane's workers tell it; what it tells the app is in minigpt_tui.messages

    @dataclass
    class LoadFailed(Message, bubble=False):
        error: str

    @dataclass
    class Generated(Message, bubble=False):
        """A batch of the reply: its text, each token's candidates, the speed so far."""

        text: str
        candidates: list[Candidates]
        tokens_per_s: float

    @dataclass
    class Finished(Message, bubble=False):
        reason: str  # "done", "stopped", or "failed: ..." (said in the reply)

    def __init__(self, sampling: SamplingConfig | None = None, device: str | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.initial = sampling or SamplingConfig()  # the settings shown until the user edits them
        self.device = device  # as pick_device takes it: None for the best available
        self.model = None
        self.tokenizer = None
        self.checkpoint_path: Path | None = None
        self.weights = "auto"  # the weights asked for decoding: auto, fp32, bf16 or int8
        self.reply: Reply | None = None  # the reply streaming, or the last one
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
                yield VerticalScroll(id="chat-transcript")
                yield PromptInput(placeholder="a prompt for the model to continue; Enter sends",
                                  id="chat-prompt")
                yield Static("", id="chat-status")
            with Vertical(id="chat-side"):
                cfg = self.initial
                yield Select([(s, s) for s in STRATEGIES], value=cfg.strategy, allow_blank=False,
                             id="strategy", compact=True)
                yield setting("temperature", "temperature", cfg.temperature, [Rule("temperature")])
                yield setting("top-k", "top_k", cfg.top_k, [Rule("top_k")])
                yield setting("top-p", "top_p", cfg.top_p, [Rule("top_p")])
                yield setting("min-p", "min_p", cfg.min_p, [Rule("min_p")])
                yield setting("penalty", "repetition_penalty", cfg.repetition_penalty,
                              [Rule("repetition_penalty")], tooltip="repetition penalty: above "
                              "1 makes tokens already in the context less likely")
                yield setting("stop", "stop", show_stop(cfg.stop),
                              [Function(is_stop_text, "stop: a string, or a JSON list of them")],
                              valid_empty=True, tooltip='stop before this string; several: '
                              'a JSON list, ["\\n\\n", "END"]')
                yield setting("seed", "seed", cfg.seed, [Rule("seed")], valid_empty=True)
                yield setting("max tokens", "max_new_tokens", cfg.max_new_tokens,
                              [Rule("max_new_tokens")])
                yield TokenInspector(id="chat-inspector")

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
        """Decode with the model (the message goes on up: the app hands it to Inspect)."""
        self.model, self.tokenizer = message.model, message.tokenizer
        self.query_one("#chat-model", Static).update(message.description)
        self.query_one("#chat-prompt").focus()

    @on(LoadFailed)
    def _load_failed(self, message: LoadFailed) -> None:
        self.query_one("#chat-model", Static).update(plain(message.error, "red"))
        self.notify(clean(message.error), severity="error", markup=False)

    # --- settings ----------------------------------------------------------------------------------

    def sampling_config(self):
        """The settings as typed, or None (with the problem shown) if one is not valid: each is
        read as a number here and checked once, by SamplingConfig's own rules."""
        from minigpt.errors import SamplingError

        def typed(field: str):
            text = self.query_one(f"#{field}", Input).value
            if field == "seed" and not text:
                return None  # a fresh draw each time
            name, rule = SAMPLING_RULES[field]
            try:
                return int(text) if isinstance(rule, Whole) else float(text)
            except ValueError:
                raise SamplingError(f"{name} must be a number, got {text!r}") from None

        try:
            stop = parse_stop(self.query_one("#stop", Input).value)
        except ValueError:
            self.notify("stop: a string, or a JSON list of them", severity="error", markup=False)
            return None
        try:
            return SamplingConfig(strategy=self.query_one("#strategy", Select).value, stop=stop,
                                  **{field: typed(field) for field in SAMPLING_RULES})
        except SamplingError as e:
            self.notify(clean(str(e)), severity="error", markup=False)
            return None

    @on(Input.Changed, ".setting Input")
    def _show_validity(self, event: Input.Changed) -> None:
        if event.validation_result and not event.validation_result.is_valid:
            self.query_one("#chat-status", Static).update(
                plain("; ".join(event.validation_result.failure_descriptions), "red"))
        else:
            self.query_one("#chat-status", Static).update("")

    # --- generation --------------------------------------------------------------------------------

    @on(Input.Submitted, "#chat-prompt")
    def send(self, event: Input.Submitted) -> None:
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

        try:
            prompt_ids = self.tokenizer.encode(prompt)  # once: the reply continues these ids
        except TokenizerError as e:
            self.notify(clean(str(e)), severity="error", markup=False)
            return
        prompt_box = self.query_one(PromptInput)
        prompt_box.remember(prompt)
        prompt_box.value = ""
        self._exchanged(prompt)
        self.reply = Reply(plain(prompt, "bold"), grow_by=GROW_BY, classes="reply")
        self.query_one("#chat-transcript").mount(self.reply)
        self.query_one(TokenInspector).clear()
        self.generating = True
        prompt_box.cursor_blink = False  # each blink redraws the box: not while decoding
        self._generate(prompt_ids, cfg, self.threads)

    @work(thread=True, exclusive=True, group="generate")
    def _generate(self, prompt_ids: list[int], cfg, threads: int) -> None:
        import torch

        from minigpt.infer.sampling import GenerationStats, stream_pieces

        torch.set_num_threads(threads)

        worker = get_current_worker()
        stats = GenerationStats()
        text, candidates, last_post = "", [], time.monotonic()
        reason = "done"
        self.model_lock.acquire()  # inspect hooks the model's modules: not while it runs
        try:
            for piece, step in stream_pieces(self.model, self.tokenizer, prompt_ids, cfg, stats):
                if worker.is_cancelled:
                    reason = "stopped"
                    break
                text += piece
                if step is not None:
                    probs, ids = torch.topk(step.probs, min(N_CANDIDATES, step.probs.numel()))
                    candidates.append(Candidates(
                        chosen=self.tokenizer.token_text(step.id),
                        options=[(self.tokenizer.token_text(i), p)  # one copy off the device
                                 for p, i in zip(probs.tolist(), ids.tolist(), strict=True)
                                 if p > 0]))
                if time.monotonic() - last_post > POST_EVERY:
                    self.post_message(self.Generated(text, candidates, stats.tokens_per_s))
                    text, candidates, last_post = "", [], time.monotonic()
        except Exception as e:  # e.g. a model whose logits overflow to NaN: said, not a crash
            first = (str(e).strip().splitlines() or [""])[0]
            reason = f"failed: {type(e).__name__}: {first}"
        finally:
            self.model_lock.release()
        self.post_message(self.Generated(text, candidates, stats.tokens_per_s))
        self.post_message(self.Finished(reason))

    @on(Generated)
    def _append(self, message: Generated) -> None:
        if self.reply is None:
            return
        self._exchanged(self.last_exchange + message.text)
        if self.reply.append(plain(message.text)):  # draws the new text, not all of it again
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
        if self.reply is not None:
            self.reply.finish()
        self._show_side()  # the last token's candidates, the reply's speed
        if message.reason == "stopped" and self.reply is not None:
            self.reply.append(plain(" [stopped]", "dim"))
        elif message.reason.startswith("failed") and self.reply is not None:
            self.reply.append(plain(f" [{message.reason}]", "red"))
            self.query_one("#chat-status", Static).update(plain(message.reason, "red"))

    # --- actions -----------------------------------------------------------------------------------

    def action_stop(self) -> None:
        if self.generating:
            self.workers.cancel_group(self, "generate")

    def action_clear(self) -> None:
        self.query_one("#chat-transcript").remove_children()
        self.query_one(TokenInspector).clear()

    def action_open(self) -> None:
        """Ask for a checkpoint to open: the Train pane's run's, where it saved one, else the one
        open."""
        suggestion = _saved(self.run_checkpoint) or self.checkpoint_path

        def chosen(path: Path | None) -> None:
            if path is not None:
                self.load(path)

        self.app.push_screen(OpenCheckpoint(suggestion), chosen)


def _saved(path: Path | None) -> Path | None:
    """The path if a file or folder is there."""
    try:
        return path if path is not None and path.exists() else None
    except (OSError, ValueError):  # a path from events.jsonl with a NUL byte in it
        return None
