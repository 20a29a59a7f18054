"""The model's switches, each written once.

A switch is a part of GPT-2 a reader can change to see what it does: take it out (the residual
connections, attention, LayerNorm, ...) or put a modern part in its place (rotary positions,
RMSNorm, SwiGLU, ...). Each one is a field of GPTConfig whose default is GPT-2's value, and an
`if` you can find in model/gpt.py. This table says, for each, its values, GPT-2's, what it is in
one line, which of its values a Hugging Face GPT-2 or Llama folder can hold, and the variants
`minigpt ablate` trains to try it. Everything that lists switches reads them here: GPTConfig's
fields and their checks (model/config.py), `minigpt info`, export-hf's refusal, ablate's
variants and its help, train's options and --variant; the table in
docs/inspect-and-ablate.md is checked against it (tests/test_docs.py).

No torch here: the command line reads this table to build its options.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from minigpt.rules import Flag, Maybe, OneOf, Real, Whole

# what a variant does to the model, for the lists that group them (ablate --help, the TUI)
KINDS = {"remove": "remove a part", "add": "add a modern part",
         "question": "the questions", "size": "another size"}
FORMATS = ("gpt2", "llama")  # the Hugging Face layouts export-hf writes (hf/)


@dataclass(frozen=True)
class Variant:
    """A named change to the baseline that `minigpt ablate` trains and compares with it. A
    setting's value may be a function of the baseline's model configuration (gqa: half its
    heads), resolved by settings_for."""

    name: str
    description: str
    settings: dict = field(default_factory=dict)  # GPTConfig fields and the values it sets
    kind: str = "remove"  # a key of KINDS
    group: str | None = None  # asked for by this name with others (the "size" sweep)

    def settings_for(self, model) -> dict:
        return {k: v(model) if callable(v) else v for k, v in self.settings.items()}


@dataclass(frozen=True)
class Switch:
    name: str  # the GPTConfig field
    rule: Flag | OneOf | Real | Maybe  # the values it takes
    gpt2: bool | str | float | None  # GPT-2's value: the default
    meaning: str  # what it is, in a line
    # the values a Hugging Face folder of each format can hold (a format not named: GPT-2's
    # value only for "gpt2", none for the others)
    hf: dict[str, tuple | Callable] = field(default_factory=dict)
    variants: tuple[Variant, ...] = ()

    @property
    def kind(self) -> type:
        """The type its values have, for the command line's option."""
        rule = self.rule.rule if isinstance(self.rule, Maybe) else self.rule
        return {Flag: bool, OneOf: str, Whole: int, Real: float}[type(rule)]

    @property
    def values(self) -> tuple:
        if isinstance(self.rule, Flag):
            return (True, False)
        return self.rule.choices if isinstance(self.rule, OneOf) else ()

    @property
    def option(self) -> str:
        """train's option: --residual/--no-residual, --layer-norm."""
        dashed = self.name.replace("_", "-")
        return f"--{dashed}/--no-{dashed}" if isinstance(self.rule, Flag) else f"--{dashed}"

    def exportable(self, value, fmt: str = "gpt2") -> bool:
        held = self.hf.get(fmt, (self.gpt2,) if fmt == "gpt2" else ())
        return held(value) if callable(held) else value in held

    def said(self, value) -> str:
        """'residual=False (no residual connections)', 'mlp_ratio=2.66667 (GPT-2: 4)': a value,
        and what it means where a variant sets it alone, else GPT-2's value beside it."""
        what = next((v.description for v in self.variants if v.settings == {self.name: value}),
                    f"GPT-2: {_shown(self.gpt2)}")
        return f"{self.name}={_shown(value)} ({what})"


def _shown(value) -> str:
    return f"{value:g}" if isinstance(value, float) else repr(value)


ANY = lambda value: True  # noqa: E731 (a format that holds every value of a switch)

SWITCHES: tuple[Switch, ...] = (
    Switch("residual", Flag(), True,
           "residual connections: each block adds its output to the stream it read",
           hf={"llama": (True,)},
           variants=(Variant("residual", "no residual connections", {"residual": False}),)),
    Switch("attention", Flag(), True,
           "self-attention: how a token reads the tokens before it",
           hf={"llama": (True,)},
           variants=(Variant("attention", "no self-attention (MLP only)", {"attention": False}),)),
    Switch("layer_norm", OneOf(("pre", "post", "none")), "pre",
           "where the norm goes: before each sublayer (pre), after the residual add (post, as "
           "the 2017 Transformer), or nowhere",
           hf={"llama": ("pre",)},
           variants=(Variant("post-ln", "LayerNorm after the residual add", {"layer_norm": "post"}),
                     Variant("no-ln", "no LayerNorm at all", {"layer_norm": "none"}))),
    Switch("position", OneOf(("learned", "rope", "none")), "learned",
           "how a token knows where it is: learned embeddings (wpe), rotary (RoPE: q and k "
           "rotated by position), or not at all",
           hf={"llama": ("rope",)},
           variants=(Variant("pos-emb", "no position embedding", {"position": "none"}),
                     Variant("rope", "rotary position embeddings (RoPE)", {"position": "rope"},
                             kind="add"))),
    Switch("mlp", Flag(), True,
           "the MLP of each block",
           hf={"llama": (True,)},
           variants=(Variant("mlp", "no MLP (attention only)", {"mlp": False}),)),
    Switch("tie_weights", Flag(), True,
           "the LM head reads tokens out with the embedding matrix (wte)",
           hf={"gpt2": ANY, "llama": ANY},
           variants=(Variant("tying", "LM head not tied to the embedding",
                             {"tie_weights": False}),)),
    Switch("norm", OneOf(("layernorm", "rmsnorm")), "layernorm",
           "the norm: LayerNorm (subtract the mean, divide by the spread) or RMSNorm (divide "
           "by the root mean square)",
           hf={"llama": ("rmsnorm",)},
           variants=(Variant("rmsnorm", "RMSNorm instead of LayerNorm", {"norm": "rmsnorm"},
                             kind="add"),)),
    Switch("qk_norm", Flag(), False,
           "queries and keys normalized per head before their dot product (QK-norm)",
           hf={"llama": (False,)},
           variants=(Variant("qk-norm", "queries and keys normalized per head (QK-norm)",
                             {"qk_norm": True}, kind="add"),)),
    Switch("activation", OneOf(("gelu", "swiglu", "relu2")), "gelu",
           "the MLP's nonlinearity: GELU, SwiGLU (a gated SiLU) or ReLU squared",
           hf={"llama": ("swiglu",)},
           variants=(Variant("swiglu", "SwiGLU MLP, 8/3 x n_embd wide (as many weights)",
                             {"activation": "swiglu", "mlp_ratio": 8 / 3}, kind="add"),
                     Variant("relu2", "ReLU-squared MLP", {"activation": "relu2"}, kind="add"))),
    Switch("mlp_ratio", Real(0, 64, low_open=True), 4.0,
           "the MLP's width as a multiple of n_embd",
           hf={"llama": ANY},
           variants=tuple(Variant(f"mlp-ratio-{r}", f"MLP {r} x n_embd wide", {"mlp_ratio": r},
                                  kind="question", group="mlp-ratio") for r in (1, 2, 8))),
    Switch("n_kv_head", Maybe(Whole(1)), None,
           "key/value heads, shared by groups of query heads (grouped-query attention; 1 is "
           "multi-query; none: one per query head, as GPT-2)",
           hf={"llama": ANY},
           variants=(Variant("gqa", "half as many key/value heads as query heads (GQA)",
                             {"n_kv_head": lambda model: max(1, model.n_head // 2)},
                             kind="add"),)),
    Switch("causal", Flag(), True,
           "the causal mask: a token sees only the tokens before it",
           hf={"llama": (True,)},
           variants=(Variant("no-mask", "no causal mask: each token sees the whole sequence",
                             {"causal": False}, kind="question"),)),
    Switch("bias", Flag(), True, "biases in the linear layers and LayerNorms",
           hf={"llama": ANY}),
)

# the modern models, as sets of switches (ablate's "llama" and "modern"; train --variant)
COMBINATIONS = (
    Variant("llama", "Llama's parts: RoPE, RMSNorm, SwiGLU, no biases, untied head",
            {"position": "rope", "norm": "rmsnorm", "activation": "swiglu", "mlp_ratio": 8 / 3,
             "bias": False, "tie_weights": False}, kind="add"),
    Variant("modern", "nanochat's parts: RoPE, QK-norm, ReLU squared, RMSNorm, no biases, "
            "untied head", {"position": "rope", "qk_norm": True, "activation": "relu2",
                            "norm": "rmsnorm", "bias": False, "tie_weights": False}, kind="add"),
)


def by_name(switches: tuple[Switch, ...] = SWITCHES) -> dict[str, Switch]:
    return {s.name: s for s in switches}


def changed(config, switches: tuple[Switch, ...] = SWITCHES) -> list[Switch]:
    """The switches a configuration sets away from GPT-2's value."""
    return [s for s in switches if getattr(config, s.name) != s.gpt2]


def unexportable(config, switches: tuple[Switch, ...] = SWITCHES, fmt: str = "gpt2") -> list[str]:
    """Why a configuration cannot be a Hugging Face folder of this format, a switch each
    ('residual=False (no residual connections)'); empty when it can."""
    return [s.said(getattr(config, s.name)) for s in switches
            if not s.exportable(getattr(config, s.name), fmt)]
