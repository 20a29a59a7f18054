"""The Chat pane's sampling settings: the strategy, and a box for each number, checked as it is
typed by SamplingConfig's own rule for it."""

from __future__ import annotations

import json

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.validation import Function, ValidationResult, Validator
from textual.widgets import Input, Select

from minigpt.infer.config import SAMPLING_RULES, STRATEGIES, SamplingConfig
from minigpt.rules import Whole
from minigpt_tui.widgets.setting import labelled


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


class SamplingSettings(Vertical):
    DEFAULT_CSS = "SamplingSettings { height: auto; }"

    def __init__(self, initial: SamplingConfig, **kwargs):
        super().__init__(**kwargs)
        self.initial = initial  # the settings shown until the user edits them

    def compose(self) -> ComposeResult:
        cfg = self.initial
        yield Select([(s, s) for s in STRATEGIES], value=cfg.strategy, allow_blank=False,
                     id="strategy", compact=True)
        yield setting("temperature", "temperature", cfg.temperature, [Rule("temperature")])
        yield setting("top-k", "top_k", cfg.top_k, [Rule("top_k")])
        yield setting("top-p", "top_p", cfg.top_p, [Rule("top_p")])
        yield setting("min-p", "min_p", cfg.min_p, [Rule("min_p")])
        yield setting("penalty", "repetition_penalty", cfg.repetition_penalty,
                      [Rule("repetition_penalty")], tooltip="repetition penalty: above 1 makes "
                      "tokens already in the context less likely")
        yield setting("stop", "stop", show_stop(cfg.stop),
                      [Function(is_stop_text, "stop: a string, or a JSON list of them")],
                      valid_empty=True, tooltip='stop before this string; several: a JSON list, '
                      '["\\n\\n", "END"]')
        yield setting("seed", "seed", cfg.seed, [Rule("seed")], valid_empty=True)
        yield setting("max tokens", "max_new_tokens", cfg.max_new_tokens,
                      [Rule("max_new_tokens")])

    def config(self) -> SamplingConfig:
        """The settings as typed: each read as a number here and checked once, by
        SamplingConfig's own rules (a SamplingError says which is wrong)."""
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
            raise SamplingError("stop: a string, or a JSON list of them") from None
        return SamplingConfig(strategy=self.query_one("#strategy", Select).value, stop=stop,
                              **{field: typed(field) for field in SAMPLING_RULES})

    def show(self, cfg: SamplingConfig) -> None:
        """Put cfg's settings in the boxes (a conversation reopened: the settings it had)."""
        self.query_one("#strategy", Select).value = cfg.strategy
        for field in SAMPLING_RULES:
            value = getattr(cfg, field)
            self.query_one(f"#{field}", Input).value = "" if value is None else str(value)
        self.query_one("#stop", Input).value = show_stop(cfg.stop)
