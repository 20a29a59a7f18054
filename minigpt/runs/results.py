"""A finished ablation variant, in one shape: what the runner makes, the "result" event carries,
`--json` writes, and the command line's table, the TUI and the run state read.

from_event() reads one back from a file that may hold anything: a field of the wrong kind is
missing, never an error (runs/events.py's readers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from minigpt.runs.read import number, text, whole


@dataclass
class VariantResult:
    """A finished variant. One whose training diverged has no losses, and `diverged` says how."""

    variant: str
    description: str = ""
    train_loss: float | None = None
    val_loss: float | None = None
    val_loss_delta: float | None = None  # against the baseline's
    tokens_per_s: float | None = None
    seconds: float | None = None
    params: int | None = None
    steps: int | None = None
    sample: str = ""
    diverged: str | None = None
    distinct_4grams: float | None = None  # the share of the sample's 4-grams that are distinct
    grad_norms: dict[str, float] = field(default_factory=dict)  # by layer, mean of logged steps
    evidence: str = ""  # what was measured, in words (train/ablation.evidence)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_event(cls, ev: dict) -> VariantResult | None:
        """The result an event (or a --json entry) holds; None without a variant's name."""
        name = text(ev, "variant")
        if name is None:
            return None
        return cls(variant=name, description=text(ev, "description") or "",
                   train_loss=number(ev, "train_loss"), val_loss=number(ev, "val_loss"),
                   val_loss_delta=number(ev, "val_loss_delta"),
                   tokens_per_s=number(ev, "tokens_per_s"), seconds=number(ev, "seconds"),
                   params=whole(ev, "params"), steps=whole(ev, "steps"),
                   sample=text(ev, "sample") or "", diverged=text(ev, "diverged"),
                   distinct_4grams=number(ev, "distinct_4grams"),
                   grad_norms=by_layer(ev, "grad_norms"), evidence=text(ev, "evidence") or "")


FIELDS = tuple(f.name for f in fields(VariantResult))


def by_layer(ev: dict, key: str) -> dict[str, float]:
    """ev[key] as {layer name: number} (a step's grad_norms, update_ratios); entries of another
    kind are left out, and anything but an object is {}."""
    value = ev.get(key)
    if not isinstance(value, dict):
        return {}
    return {name: number(value, name) for name in value
            if isinstance(name, str) and number(value, name) is not None}
