"""How to train: the model's shape, the tokenizer and the optimization recipe (TrainConfig), and
the named presets. No torch here, so the command line reads them without paying for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace

from minigpt.errors import ConfigError
from minigpt.model.config import LORA_TARGETS, GPTConfig
from minigpt.rules import Flag, Maybe, Names, OneOf, Real, Whole, settings_record

# What a run can learn (TrainConfig.objective), as `minigpt info` says it
OBJECTIVES = {"lm": "the next token of text",
              "sft": "instruction tuning (SFT): the assistant's turns of conversations",
              "dpo": "preference tuning (DPO): chosen over rejected replies, against the model it "
                     "started from"}


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
    # what the run learns: "lm" the next token of a corpus (pretraining, --init fine-tuning),
    # "sft" the assistant's turns of conversations (data/chat.py), "dpo" people's preferences
    # between two replies (train/dpo.py), against the starting model, beta its strength
    objective: str = "lm"
    beta: float = 0.1
    # LoRA (model/lora.py): lora_r, the adapters' rank (None: every weight trains), on the block
    # layers lora_targets names ("c_attn,c_fc"), their product scaled by lora_alpha / lora_r;
    # lora_keep: checkpoints hold the adapters apart from the base's weights, not merged into them
    lora_r: int | None = None
    lora_alpha: float = 16.0
    lora_targets: str = "c_attn"
    lora_keep: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.model, GPTConfig):
            raise ConfigError(f"model must be a GPTConfig, got {type(self.model).__name__}")
        for name, rule in TRAIN_RULES.items():
            rule.check(LABELS.get(name, name), getattr(self, name))
        if self.lora_r is not None:
            if self.lora_r > self.model.n_embd:  # every target has a side of n_embd
                raise ConfigError(f"{LABELS['lora_r']} is {self.lora_r}, more than n_embd "
                                  f"({self.model.n_embd}): B A would have no more rank, only "
                                  "more parameters")
            if self.optimizer != "adamw":
                raise ConfigError("LoRA trains its adapters with AdamW (setup.build_optimizer), "
                                  f"not {self.optimizer}")

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
          "time_budget": "time_budget (--time)", "lora_r": "lora_r (--lora, the adapters' rank)",
          "lora_alpha": "lora_alpha (--lora-alpha)", "lora_targets": "lora_targets (--lora-targets)"}

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
    "objective": OneOf(tuple(OBJECTIVES)), "beta": Real(0, 100, low_open=True),
    "lora_r": Maybe(Whole(1)), "lora_alpha": Real(0, low_open=True),
    "lora_targets": Names(tuple(LORA_TARGETS)), "lora_keep": Flag(),
}


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
    # The default on a CPU: about 110 s on 2 cores gives recognizable text. Muon for the blocks'
    # matrices and AdamW for the rest, held at the peak and then decayed to 0 in a straight line
    # over the last half (WSD), for the steps 110 s allows on a 2-core CPU: chosen by the loss
    # it reaches there against AdamW alone and a cosine schedule (benchmarks/RESULTS.md,
    # "Figures first written elsewhere": the cpu preset's recipe).
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


