"""The model's configuration: its shape, then one field per switch (model/switches.py).

    GPTConfig(n_layer=4, n_head=4, n_embd=128, residual=False)

The defaults are GPT-2 small (124M parameters); every switch left at its default gives GPT-2
exactly. A plain frozen dataclass: the shape's fields are written below, the switches' come
from their table, each with GPT-2's value as its default, so a new switch is one line there.
No torch here, so the command line reads configurations without paying for it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, make_dataclass
from typing import ClassVar

from minigpt.errors import ConfigError
from minigpt.model.switches import SWITCHES, Switch
from minigpt.rules import Flag, OneOf, Real, Whole, settings_record

ATTENTION_IMPLEMENTATIONS = ("sdpa", "explicit")
# The matrices LoRA may adapt (model/lora.py), by the names --lora-targets takes, and where each
# sits in a block: attention's qkv and output projections, the MLP's up and down projections.
LORA_TARGETS = {"c_attn": "attn.c_attn", "attn.c_proj": "attn.c_proj", "c_fc": "mlp.c_fc",
                "mlp.c_proj": "mlp.c_proj"}


def lora_summary(r: int, alpha: float, targets: str) -> str:
    """A LoRA run's adapters as train's start line and info say them: "r=8, alpha 16, on c_attn"."""
    return f"r={r}, alpha {alpha:g}, on {targets.replace(',', ', ')}"


@dataclass(frozen=True)
class ModelShape:
    """What every GPT has: sizes, and how it computes (not what)."""

    vocab_size: int = 50257
    block_size: int = 1024  # the context: the most tokens the model sees at once
    n_layer: int = 12
    n_head: int = 12
    n_embd: int = 768
    dropout: float = 0.0
    layer_norm_epsilon: float = 1e-5
    rope_theta: float = 10000.0  # RoPE's base (position="rope"): Llama 2's; imports carry others
    attn_impl: str = "sdpa"  # "sdpa" (fused kernel) or "explicit" (scores, mask, softmax, sum)

    switches: ClassVar[tuple[Switch, ...]] = ()  # the table the class was made from

    def __post_init__(self) -> None:
        for name, rule in SHAPE_RULES.items():
            rule.check(name, getattr(self, name))
        for switch in self.switches:
            switch.rule.check(switch.name, getattr(self, switch.name))
        if self.n_embd % self.n_head != 0:
            raise ConfigError(
                f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head})"
            )
        kv_heads = getattr(self, "n_kv_head", None)
        if kv_heads is not None and self.n_head % kv_heads != 0:
            raise ConfigError(f"n_head ({self.n_head}) must be divisible by n_kv_head "
                              f"({kv_heads}): each key/value head serves a group of query heads")
        if getattr(self, "position", None) == "rope" and (self.n_embd // self.n_head) % 2:
            raise ConfigError(f"rope turns pairs of channels: the head size n_embd / n_head "
                              f"({self.n_embd // self.n_head}) must be even")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(settings_record(d, "model settings"))
        if "position_embedding" in d and "position" not in d:  # a checkpoint from before RoPE
            learned = d.pop("position_embedding")
            Flag().check("position_embedding", learned)
            d["position"] = "learned" if learned else "none"
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ConfigError(f"unknown model setting(s): {', '.join(sorted(unknown))}")
        return cls(**d)


SHAPE_RULES = {
    "vocab_size": Whole(1), "block_size": Whole(1), "n_layer": Whole(1), "n_head": Whole(1),
    "n_embd": Whole(1), "dropout": Real(0, 1, high_open=True),
    "layer_norm_epsilon": Real(0, low_open=True), "rope_theta": Real(0, low_open=True),
    "attn_impl": OneOf(ATTENTION_IMPLEMENTATIONS),
}


def config_class(switches: tuple[Switch, ...], name: str = "GPTConfig") -> type[ModelShape]:
    """A frozen dataclass with the shape's fields and one field per switch (GPT-2's value its
    default), whose instances check every value against its rule."""
    return make_dataclass(name, [(s.name, type(s.gpt2), s.gpt2) for s in switches],
                          bases=(ModelShape,), frozen=True,
                          namespace={"switches": switches, "__module__": __name__})


GPTConfig = config_class(SWITCHES)
