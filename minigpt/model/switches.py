"""The model's switches, each written once.

A switch is a part of GPT-2 a reader can change to see what it does: take it out (the residual
connections, attention, LayerNorm, ...) or put another in its place. Each one is a field of
GPTConfig whose default is GPT-2's value, and an `if` you can find in model/gpt.py. This table
says, for each, its values, GPT-2's, what it is in one line, which of its values a Hugging Face
GPT-2 folder can hold, and the variants `minigpt ablate` trains to try it. Everything that
lists switches reads them here: GPTConfig's fields and their checks (model/config.py), `minigpt
info`, export-hf's refusal, ablate's variants and its help, train's options; the table in
docs/inspect-and-ablate.md is checked against it (tests/test_docs.py).

No torch here: the command line reads this table to build its options.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from minigpt.rules import Flag, OneOf

# what a variant does to the model, for the lists that group them (ablate --help, the TUI)
KINDS = {"remove": "remove a part", "add": "add a modern part", "question": "the questions",
         "size": "another size"}


@dataclass(frozen=True)
class Variant:
    """A named change to the baseline that `minigpt ablate` trains and compares with it."""

    name: str
    description: str
    settings: dict = field(default_factory=dict)  # GPTConfig fields and the values it sets
    kind: str = "remove"  # a key of KINDS
    group: str | None = None  # asked for by this name with others (the "size" sweep)


@dataclass(frozen=True)
class Switch:
    name: str  # the GPTConfig field
    rule: Flag | OneOf  # the values it takes
    gpt2: bool | str  # GPT-2's value: the default
    meaning: str  # what it is, in a line
    hf: tuple = ()  # values besides GPT-2's that a Hugging Face GPT-2 folder can hold
    variants: tuple[Variant, ...] = ()

    @property
    def values(self) -> tuple:
        return (True, False) if isinstance(self.rule, Flag) else self.rule.choices

    @property
    def option(self) -> str:
        """train's option: --residual/--no-residual, --layer-norm."""
        dashed = self.name.replace("_", "-")
        return f"--{dashed}/--no-{dashed}" if isinstance(self.rule, Flag) else f"--{dashed}"

    def exportable(self, value) -> bool:
        return value == self.gpt2 or value in self.hf

    def said(self, value) -> str:
        """'residual=False (no residual connections)': a value, and what it means."""
        what = next((v.description for v in self.variants if v.settings == {self.name: value}),
                    f"GPT-2: {self.gpt2!r}; {self.meaning}")
        return f"{self.name}={value!r} ({what})"


SWITCHES: tuple[Switch, ...] = (
    Switch("residual", Flag(), True,
           "residual connections: each block adds its output to the stream it read",
           variants=(Variant("residual", "no residual connections", {"residual": False}),)),
    Switch("attention", Flag(), True,
           "self-attention: how a token reads the tokens before it",
           variants=(Variant("attention", "no self-attention (MLP only)", {"attention": False}),)),
    Switch("layer_norm", OneOf(("pre", "post", "none")), "pre",
           "LayerNorm before each sublayer (pre), after the residual add (post, as the 2017 "
           "Transformer), or none",
           variants=(Variant("post-ln", "LayerNorm after the residual add", {"layer_norm": "post"}),
                     Variant("no-ln", "no LayerNorm at all", {"layer_norm": "none"}))),
    Switch("position_embedding", Flag(), True,
           "learned position embeddings (wpe): where each token is",
           variants=(Variant("pos-emb", "no position embedding",
                             {"position_embedding": False}),)),
    Switch("mlp", Flag(), True,
           "the MLP of each block: 4 x n_embd wide, GELU",
           variants=(Variant("mlp", "no MLP (attention only)", {"mlp": False}),)),
    Switch("tie_weights", Flag(), True,
           "the LM head reads tokens out with the embedding matrix (wte)", hf=(False,),
           variants=(Variant("tying", "LM head not tied to the embedding",
                             {"tie_weights": False}),)),
    Switch("bias", Flag(), True, "biases in the linear layers and LayerNorms"),
)


def by_name(switches: tuple[Switch, ...] = SWITCHES) -> dict[str, Switch]:
    return {s.name: s for s in switches}


def changed(config, switches: tuple[Switch, ...] = SWITCHES) -> list[Switch]:
    """The switches a configuration sets away from GPT-2's value."""
    return [s for s in switches if getattr(config, s.name) != s.gpt2]


def unexportable(config, switches: tuple[Switch, ...] = SWITCHES) -> list[str]:
    """Why a configuration cannot be a Hugging Face GPT-2 folder, a switch each ('residual=False
    (no residual connections)'); empty when it can."""
    return [s.said(getattr(config, s.name)) for s in switches
            if not s.exportable(getattr(config, s.name))]
