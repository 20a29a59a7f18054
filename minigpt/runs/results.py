"""A finished ablation variant, in one shape: what the runner makes, the "result" event carries,
`--json` writes, and the command line's tables, the TUI and the run state read.

A variant trains at one seed or several (`ablate --seeds N`): each seed's numbers are a SeedRun,
and the variant's are their mean, with the spread across seeds and the difference from the
baseline's mean with its 95% interval (train/stats.py).

from_event() reads one back from a file that may hold anything: a field of the wrong kind is
missing, never an error (runs/read.py's readers).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields

from minigpt.runs.read import number, text, whole


@dataclass
class SeedRun:
    """One training of a variant, at one seed."""

    seed: int
    train_loss: float | None = None
    val_loss: float | None = None
    bits_per_byte: float | None = None  # val_loss in bits, per byte of text: any tokenizer
    masked_val_loss: float | None = None  # with the causal mask put back (a no-mask variant)
    steps: int | None = None
    tokens_per_s: float | None = None
    seconds: float | None = None
    diverged: str | None = None

    @classmethod
    def from_dict(cls, d) -> SeedRun | None:
        if not isinstance(d, dict) or whole(d, "seed") is None:
            return None
        return cls(seed=whole(d, "seed"), train_loss=number(d, "train_loss"),
                   val_loss=number(d, "val_loss"), bits_per_byte=number(d, "bits_per_byte"),
                   masked_val_loss=number(d, "masked_val_loss"), steps=whole(d, "steps"),
                   tokens_per_s=number(d, "tokens_per_s"), seconds=number(d, "seconds"),
                   diverged=text(d, "diverged"))


@dataclass
class VariantResult:
    """A finished variant: the mean of its seeds' numbers. One whose training diverged (at any
    seed) says how in `diverged`; its losses are those of the seeds that did not."""

    variant: str
    description: str = ""
    kind: str = "remove"  # model/switches.KINDS, or "baseline"
    train_loss: float | None = None
    val_loss: float | None = None
    val_loss_std: float | None = None  # the spread across seeds; None with one seed
    val_loss_delta: float | None = None  # against the baseline's
    delta_half_width: float | None = None  # the 95% interval of the difference; None: one seed
    within_noise: bool | None = None  # the interval holds zero
    bits_per_byte: float | None = None
    masked_val_loss: float | None = None  # a no-mask variant's, with the mask put back
    tokens_per_s: float | None = None
    seconds: float | None = None  # each seed's, on average
    params: int | None = None
    body_params: int | None = None  # without the embeddings: what a scaling law counts
    steps: int | None = None  # each seed's, on average (a timed run's vary)
    sample: str = ""
    diverged: str | None = None
    distinct_4grams: float | None = None  # the share of the sample's 4-grams that are distinct
    grad_norms: dict[str, float] = field(default_factory=dict)  # by layer, mean of logged steps
    evidence: str = ""  # what was measured, in words (train/ablation.evidence)
    runs: list[SeedRun] = field(default_factory=list)  # each seed's numbers

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_event(cls, ev: dict) -> VariantResult | None:
        """The result an event (or a --json entry) holds; None without a variant's name."""
        name = text(ev, "variant")
        if name is None:
            return None
        within = ev.get("within_noise")
        runs = ev.get("runs") if isinstance(ev.get("runs"), list) else []
        return cls(
            variant=name, description=text(ev, "description") or "",
            kind=text(ev, "kind") or "remove",
            train_loss=number(ev, "train_loss"), val_loss=number(ev, "val_loss"),
            val_loss_std=number(ev, "val_loss_std"), val_loss_delta=number(ev, "val_loss_delta"),
            delta_half_width=number(ev, "delta_half_width"),
            within_noise=within if isinstance(within, bool) else None,
            bits_per_byte=number(ev, "bits_per_byte"),
            masked_val_loss=number(ev, "masked_val_loss"),
            tokens_per_s=number(ev, "tokens_per_s"), seconds=number(ev, "seconds"),
            params=whole(ev, "params"), body_params=whole(ev, "body_params"),
            steps=whole(ev, "steps"), sample=text(ev, "sample") or "",
            diverged=text(ev, "diverged"), distinct_4grams=number(ev, "distinct_4grams"),
            grad_norms=by_layer(ev, "grad_norms"), evidence=text(ev, "evidence") or "",
            runs=[r for r in map(SeedRun.from_dict, runs) if r is not None])


FIELDS = tuple(f.name for f in fields(VariantResult))


def by_layer(ev: dict, key: str) -> dict[str, float]:
    """ev[key] as {layer name: number} (a step's grad_norms, update_ratios); entries of another
    kind are left out, and anything but an object is {}."""
    value = ev.get(key)
    if not isinstance(value, dict):
        return {}
    return {name: number(value, name) for name in value
            if isinstance(name, str) and number(value, name) is not None}
