"""Configuration: the model's shape and ablation switches, the training recipe, named presets,
and the sampling settings.

Plain dataclasses, no torch import, so the command line can read them without paying for torch.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, fields, replace

from minigpt.errors import ConfigError, SamplingError

LAYER_NORM_PLACEMENTS = ("pre", "post", "none")
ATTENTION_IMPLEMENTATIONS = ("sdpa", "explicit")
INT64_MAX = 2**63 - 1  # the largest count torch holds (sizes, steps, seeds)


# --- the rules settings obey -----------------------------------------------------------------------
# Settings come from the command line, the TUI and hand-editable checkpoint files, so each one is
# checked here, once, whatever the route: a count must be a real int (not 2.0, not True), a number
# must be finite (nan and inf pass every comparison's test the wrong way), and both in range.


@dataclass(frozen=True)
class Whole:
    """An int from minimum to maximum."""

    minimum: int
    maximum: int = INT64_MAX

    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if isinstance(value, bool) or not isinstance(value, int):
            raise error(f"{name} must be a whole number, got {value!r}")
        if value < self.minimum:
            raise error(f"{name} must be at least {self.minimum}, got {value}")
        if value > self.maximum:
            raise error(f"{name} must be at most {self.maximum}, got {value}")


@dataclass(frozen=True)
class Real:
    """A finite number between low and high (either bound open, either one absent)."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False

    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise error(f"{name} must be a number, got {value!r}")
        if not math.isfinite(value):
            raise error(f"{name} must be a finite number, got {value}")
        too_low = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        too_high = self.high is not None and (value >= self.high if self.high_open
                                              else value > self.high)
        if too_low or too_high:
            raise error(f"{name} must be {self.describe()}, got {value}")

    def describe(self) -> str:
        if self.low is not None and self.high is not None:
            return (f"in {'(' if self.low_open else '['}{self.low}, {self.high}"
                    f"{')' if self.high_open else ']'}")
        if self.low is not None:
            return f"{'>' if self.low_open else '>='} {self.low}"
        return f"{'<' if self.high_open else '<='} {self.high}"


@dataclass(frozen=True)
class Maybe:
    """None, or what the rule allows."""

    rule: Whole | Real

    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if value is not None:
            self.rule.check(name, value, error)


@dataclass(frozen=True)
class OneOf:
    choices: tuple

    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if not isinstance(value, str) or value not in self.choices:
            raise error(f"{name} must be one of {', '.join(self.choices)}, got {value!r}")


@dataclass(frozen=True)
class Flag:
    def check(self, name: str, value, error: type[Exception] = ConfigError) -> None:
        if not isinstance(value, bool):
            raise error(f"{name} must be true or false, got {value!r}")


def settings_record(d, what: str) -> dict:
    """A record of settings read from a file: a dict with string keys, or a clear error."""
    if not isinstance(d, dict):
        raise ConfigError(f"{what} must be a mapping of names to values, got {type(d).__name__}")
    odd = [k for k in d if not isinstance(k, str)]
    if odd:
        raise ConfigError(f"unknown {what}: {', '.join(map(repr, odd[:3]))}")
    return d


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a GPT-2 model, plus switches that remove a part of it on purpose.

    The defaults are GPT-2 small (124M). Every switch left at its default gives GPT-2 exactly.
    """

    vocab_size: int = 50257
    block_size: int = 1024  # the context: the most tokens the model sees at once
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    bias: bool = True  # biases in Linear layers and LayerNorms, as in GPT-2
    layer_norm_epsilon: float = 1e-5
    attn_impl: str = "sdpa"  # "sdpa" (fused kernel) or "explicit" (scores, mask, softmax, sum)

    # Ablation switches. Each one is a visible branch in model.py.
    residual: bool = True  # False: a block's output replaces its input instead of adding to it
    attention: bool = True  # False: blocks have no self-attention (each position sees only itself)
    mlp: bool = True  # False: blocks have no MLP
    position_embedding: bool = True  # False: no wpe, the model does not know where a token is
    layer_norm: str = "pre"  # "pre" (GPT-2), "post" (the 2017 Transformer) or "none"
    tie_weights: bool = True  # False: the LM head gets its own matrix instead of reusing wte

    def __post_init__(self) -> None:
        for name, rule in GPT_RULES.items():
            rule.check(name, getattr(self, name))
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )

    @property
    def is_plain_gpt2(self) -> bool:
        """True when no ablation switch is set, so the weights mean what GPT-2's mean."""
        return (
            self.residual
            and self.attention
            and self.mlp
            and self.position_embedding
            and self.layer_norm == "pre"
            and self.tie_weights
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> GPTConfig:
        d = settings_record(d, "model settings")
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model setting(s): {', '.join(sorted(unknown))}")
        return cls(**d)


GPT_RULES = {
    "vocab_size": Whole(1), "block_size": Whole(1), "n_layer": Whole(1), "n_head": Whole(1),
    "n_embd": Whole(1), "dropout": Real(0, 1, high_open=True), "bias": Flag(),
    "layer_norm_epsilon": Real(0, low_open=True), "attn_impl": OneOf(ATTENTION_IMPLEMENTATIONS),
    "residual": Flag(), "attention": Flag(), "mlp": Flag(), "position_embedding": Flag(),
    "layer_norm": OneOf(LAYER_NORM_PLACEMENTS), "tie_weights": Flag(),
}


@dataclass(frozen=True)
class TrainConfig:
    """How to train: the model's shape, the tokenizer, and the optimization recipe."""

    model: GPTConfig
    tokenizer: str = "char"  # "char" or "bpe"
    bpe_vocab_size: int = 4096  # target vocabulary when tokenizer == "bpe"
    batch_size: int = 32
    grad_accum: int = 1  # micro-batches per optimizer step
    max_steps: int = 2000
    # seconds of wall clock for the whole run (evaluations in, pauses out): the run ends when they
    # are spent, and its schedule follows the clock instead of max_steps (train.py); None: steps
    time_budget: float | None = None
    lr: float = 1e-3
    min_lr: float = 1e-4  # where the decay ends
    warmup_steps: int = 100
    # after warmup: "cosine" decay to min_lr, or "wsd" (warmup-stable-decay): the peak, then a
    # straight line down to min_lr over the last decay_fraction of the steps (train.decay_shape)
    schedule: str = "cosine"
    decay_fraction: float = 0.3
    weight_decay: float = 0.1
    # "adamw", or "muon": Muon at muon_lr for the blocks' matrices, AdamW at lr for the rest
    # (muon.py); the schedule scales both
    optimizer: str = "adamw"
    muon_lr: float = 0.02
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # 0 disables clipping
    eval_interval: int = 250
    eval_iters: int = 20  # batches per split when estimating the loss
    log_interval: int = 10
    sample_tokens: int = 200  # length of the sample printed at each evaluation (0: none)
    val_fraction: float = 0.1
    seed: int = 1337

    def __post_init__(self) -> None:
        if not isinstance(self.model, GPTConfig):
            raise ConfigError(f"model must be a GPTConfig, got {type(self.model).__name__}")
        for name, rule in TRAIN_RULES.items():
            rule.check(LABELS.get(name, name), getattr(self, name))

    @staticmethod
    def check_setting(name: str, value) -> None:
        """The rule TrainConfig applies to one setting, for a value checked before a config exists
        (the TUI's --steps, handed on to a training process)."""
        TRAIN_RULES[name].check(LABELS.get(name, name), value)

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.grad_accum * self.model.block_size

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        d = dict(settings_record(d, "training settings"))
        if "model" not in d:
            raise ConfigError("training settings have no model settings")
        model = GPTConfig.from_dict(d.pop("model"))
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown training setting(s): {', '.join(sorted(unknown))}")
        return cls(model=model, **d)

    def with_overrides(self, **overrides) -> TrainConfig:
        """A copy with some settings changed; model settings (n_layer, dropout, ...) go to the model."""
        model_fields = {f.name for f in fields(GPTConfig)}
        model_changes = {k: v for k, v in overrides.items() if k in model_fields and v is not None}
        train_changes = {k: v for k, v in overrides.items() if k not in model_fields and v is not None}
        unknown = set(train_changes) - {f.name for f in fields(TrainConfig)}
        if unknown:
            raise ConfigError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        return replace(self, model=replace(self.model, **model_changes), **train_changes)


# settings whose command-line option has another name: errors name both
LABELS = {"max_steps": "max_steps (--steps)", "bpe_vocab_size": "bpe_vocab_size (--vocab-size)",
          "time_budget": "time_budget (--time)"}

TRAIN_RULES = {
    "tokenizer": OneOf(("char", "bpe")),
    # GPT-2's 256 bytes, <|endoftext|>, and a few merges; at most 2^20 (GPT-2 has 50,257, the
    # largest in common use about 200k): tokenizers' trainer allocates for the size asked
    "bpe_vocab_size": Whole(260, 2**20),
    "batch_size": Whole(1), "grad_accum": Whole(1), "max_steps": Whole(1),
    "time_budget": Maybe(Real(0, low_open=True)),
    # AdamW moves every weight by about lr each step: above 1 nothing can be learned
    "lr": Real(0, 1, low_open=True), "min_lr": Real(0, 1),
    "warmup_steps": Whole(0),
    "schedule": OneOf(("cosine", "wsd")), "decay_fraction": Real(0, 1, low_open=True),
    "weight_decay": Real(0),
    "optimizer": OneOf(("adamw", "muon")), "muon_lr": Real(0, 1, low_open=True),
    "beta1": Real(0, 1, high_open=True), "beta2": Real(0, 1, high_open=True),
    "grad_clip": Real(0),  # 0 disables clipping
    "eval_interval": Whole(1), "eval_iters": Whole(1), "log_interval": Whole(1),
    "sample_tokens": Whole(0),
    "val_fraction": Real(0, 0.5, low_open=True, high_open=True),
    "seed": Whole(0),
}


# --- a run's length: steps, or a time -----------------------------------------------------------

_DURATION = re.compile(r"(?:(?P<h>\d+(?:\.\d*)?)h)?(?:(?P<m>\d+(?:\.\d*)?)m)?"
                       r"(?:(?P<s>\d+(?:\.\d*)?)s)?")


def parse_duration(text: str) -> float:
    """Seconds, from '110s', '5m', '1h', '1h30m', '2.5m' or a bare number of seconds ('90'):
    what --time and the TUI's time field take. Anything else, or no time at all, is a
    ConfigError."""
    shown = text.strip() if len(text.strip()) <= 20 else text.strip()[:20] + "..."
    spelled = text.strip().lower().replace(" ", "")
    if re.fullmatch(r"\d+(?:\.\d*)?", spelled):
        seconds = float(spelled)
    else:
        match = _DURATION.fullmatch(spelled)
        if not spelled or match is None:
            raise ConfigError(f"{shown!r} is not a time: write it as 110s, 5m, 1h or 1h30m "
                              "(a bare number is seconds)")
        seconds = sum(float(match[unit] or 0) * factor
                      for unit, factor in (("h", 3600), ("m", 60), ("s", 1)))
    if not math.isfinite(seconds) or seconds <= 0:
        raise ConfigError(f"a time must be more than 0 seconds (and finite), got {shown!r}")
    return seconds


def format_duration(seconds: float) -> str:
    """'1h30m', '1m50s', '45s', '2.5s': a time as parse_duration reads it."""
    if seconds < 10:
        return f"{seconds:.2g}s"
    minutes, s = divmod(round(seconds), 60)
    h, m = divmod(minutes, 60)
    return "".join(f"{n}{unit}" for n, unit in ((h, "h"), (m, "m"), (s, "s")) if n) or "0s"


def check_run_length(max_steps: int | None, time_budget: float | None) -> None:
    """A run is as long as its steps or its time, not both."""
    if max_steps is not None and time_budget is not None:
        raise ConfigError("give a number of steps (--steps) or a time (--time), not both: a "
                          "timed run ends when its time is spent")


# vocab_size in presets is a placeholder: the tokenizer built from the data sets the real one.
PRESETS: dict[str, TrainConfig] = {
    # Smoke tests and the test suite: seconds on a laptop, not meant to be good.
    "tiny": TrainConfig(
        model=GPTConfig(vocab_size=256, block_size=64, n_layer=2, n_head=2, n_embd=64),
        batch_size=16, max_steps=300, lr=2e-3, warmup_steps=20, eval_interval=100,
        eval_iters=10, sample_tokens=100,
    ),
    # The default on a CPU: about 110 s on 2 cores gives recognizable text. Tuned for the loss
    # reached in 110 s on a 2-core AMD EPYC (AVX-512 BF16, bf16 autocast), where about 900 of
    # these steps fit (Muon costs 10-20% of AdamW's tokens/s). In 900 steps Muon for the blocks'
    # matrices and AdamW at 5e-3 for the rest, held at the peak and then decayed to 0 in a
    # straight line over the last half (WSD), reach tinyshakespeare validation loss 1.616; the
    # earlier recipe (AdamW 2e-3, cosine to 2e-4) reached 1.925 in 1000 steps, and AdamW 5e-3
    # with WSD 1.761.
    "cpu": TrainConfig(
        model=GPTConfig(vocab_size=256, block_size=128, n_layer=4, n_head=4, n_embd=128),
        batch_size=16, max_steps=900, optimizer="muon", muon_lr=0.02, lr=5e-3, min_lr=0.0,
        warmup_steps=100, schedule="wsd", decay_fraction=0.5, eval_interval=250, eval_iters=20,
    ),
    # nanoGPT's tinyshakespeare GPU recipe: a few minutes on one modern GPU.
    "gpu": TrainConfig(
        model=GPTConfig(vocab_size=256, block_size=256, n_layer=6, n_head=6, n_embd=384,
                        dropout=0.2),
        batch_size=64, max_steps=5000, lr=1e-3, min_lr=1e-4, warmup_steps=100,
        eval_interval=250, eval_iters=200,
    ),
    # GPT-2 small's shape (124M parameters with GPT-2's 50257-token vocabulary).
    "gpt2": TrainConfig(
        model=GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768),
        tokenizer="bpe", bpe_vocab_size=50257, batch_size=8, grad_accum=8, max_steps=10000,
        lr=6e-4, min_lr=6e-5, warmup_steps=500, beta2=0.95, eval_interval=500, eval_iters=50,
    ),
}


def preset(name: str) -> TrainConfig:
    try:
        return PRESETS[name]
    except KeyError:
        raise ConfigError(
            f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}"
        ) from None


def default_preset_name(device_type: str) -> str:
    """The preset used when none is named: the GPU recipe on CUDA, the CPU one elsewhere."""
    return "gpu" if device_type == "cuda" else "cpu"


# --- sampling ---------------------------------------------------------------------------------------
# How minigpt.infer.sampling turns the model's scores into tokens. The defaults here are the command
# line's and the Chat pane's defaults.

STRATEGIES = ("greedy", "temperature", "top-k", "top-p", "min-p")

# Each number of SamplingConfig: the name the options give it, and its rule (the Chat pane's
# inputs check what is typed with the same rules)
SAMPLING_RULES = {
    "temperature": ("temperature", Real(0)),
    "top_k": ("top-k", Whole(1)),
    "top_p": ("top-p", Real(0, 1, low_open=True)),
    "min_p": ("min-p", Real(0, 1)),
    "repetition_penalty": ("repetition penalty", Real(0, low_open=True)),
    "max_new_tokens": ("max new tokens", Whole(0)),
    "seed": ("seed", Whole(0)),
}


@dataclass(frozen=True)
class SamplingConfig:
    strategy: str = "top-k"
    temperature: float = 0.8  # all strategies but greedy divide the logits by it
    top_k: int = 50  # top-k: keep the k most likely tokens
    top_p: float = 0.9  # top-p: keep the fewest tokens whose probabilities add up to p
    min_p: float = 0.05  # min-p: keep tokens at least min_p times as likely as the best one
    repetition_penalty: float = 1.0  # > 1 makes tokens already in the context less likely
    max_new_tokens: int = 200
    stop: tuple[str, ...] = ()  # generation ends before the first of these strings
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise SamplingError(
                f"unknown strategy {self.strategy!r}; choose one of: {', '.join(STRATEGIES)}"
            )
        for field, (name, rule) in SAMPLING_RULES.items():
            value = getattr(self, field)
            if value is not None or field != "seed":  # no seed: a fresh draw each time
                rule.check(name, value, SamplingError)
        if any(not isinstance(s, str) or not s for s in self.stop):
            raise SamplingError("stop strings must not be empty")

    @property
    def is_greedy(self) -> bool:
        return self.strategy == "greedy" or self.temperature == 0
