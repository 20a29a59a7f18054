"""Ablations: remove one part of the model and retrain it to see what that part was doing.

Every variant trains with the baseline's data, tokenizer, seed and step budget, one after another,
so the differences in loss come from the switch alone.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from minigpt.errors import ConfigError, TrainingDiverged
from minigpt.model.switches import COMBINATIONS, SWITCHES, Switch, Variant
from minigpt.runs.results import VariantResult
from minigpt.train.config import TrainConfig

# The seed's scaling experiment: the same recipe at other widths and depths.
SIZES = (
    Variant("size-1x32", "1 layer, 2 heads, 32 dims", {"n_layer": 1, "n_head": 2, "n_embd": 32},
            kind="size", group="size"),
    Variant("size-2x64", "2 layers, 2 heads, 64 dims", {"n_layer": 2, "n_head": 2, "n_embd": 64},
            kind="size", group="size"),
    Variant("size-6x192", "6 layers, 6 heads, 192 dims",
            {"n_layer": 6, "n_head": 6, "n_embd": 192}, kind="size", group="size"),
)

BASELINE = Variant("baseline", "GPT-2 as designed", {})
STEPS = 300  # each model's training steps when none are given (the command line's and the TUI's)


def catalogue(switches: tuple[Switch, ...] = SWITCHES) -> dict[str, list[Variant]]:
    """Every variant ablate knows, by the name it is asked for: each switch's variants (a
    switch's table entry), the modern models' sets of switches, then the size sweep; a group is
    asked for by its name."""
    found: dict[str, list[Variant]] = {}
    for variant in (*(v for s in switches for v in s.variants), *COMBINATIONS, *SIZES):
        found.setdefault(variant.group or variant.name, []).append(variant)
    return found


VARIANTS = catalogue()


def variant_named(name: str) -> Variant:
    """One variant by its own name (`train --variant`): a switch's, a set of switches (llama,
    modern) or one of a sweep (size-2x64, mlp-ratio-8)."""
    every = {v.name: v for variants in VARIANTS.values() for v in variants}
    if name in every:
        return every[name]
    if name in VARIANTS:
        raise ConfigError(f"{name} is a sweep of {len(VARIANTS[name])} variants: name one of "
                          f"{', '.join(v.name for v in VARIANTS[name])}")
    raise ConfigError(f"unknown variant {name!r}; choose from: {', '.join(every)}")


def expand_variants(names: list[str], known: dict[str, list[Variant]] | None = None) -> list[Variant]:
    """The baseline, then each named variant once, in the order given."""
    known = VARIANTS if known is None else known
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            f"unknown variant(s): {', '.join(unknown)}; choose from: {', '.join(known)}"
        )
    runs = [BASELINE]
    for name in dict.fromkeys(names):
        runs.extend(known[name])
    return runs


def ablation_config(base: TrainConfig, steps: int, seed: int) -> TrainConfig:
    """The baseline recipe on a fixed budget: evaluate at the end, warm up over a tenth of it."""
    return base.with_overrides(
        max_steps=steps, seed=seed, eval_interval=steps,
        warmup_steps=max(1, min(base.warmup_steps, steps // 10)),
        log_interval=max(1, min(base.log_interval, steps // 50)), sample_tokens=120,
    )


def new_ablation_dir(root: str | os.PathLike | None = None) -> Path:
    """A fresh run directory for an ablation under root (default: the runs' root):
    ablate-<date>-<time>, as `minigpt ablate` and the TUI's Ablate pane both name theirs."""
    from minigpt.runs.files import DEFAULT_RUNS_ROOT, new_run_dir

    return new_run_dir(root or DEFAULT_RUNS_ROOT, f"ablate-{datetime.now():%Y%m%d-%H%M%S}")


class AblationRunner:
    """Trains the baseline and each variant; run() yields their events, each tagged "variant"."""

    def __init__(self, variant_names: list[str], data, base: TrainConfig, steps: int,
                 seed: int = 1337, device=None, run_dir=None):
        self.variants = expand_variants(variant_names)
        self.data = data  # train.PreparedData: one tokenizer and split for every variant
        self.cfg = ablation_config(base, steps, seed)
        self.device = device
        self.run_dir = run_dir
        self.results: list[VariantResult] = []
        self._trainer = None
        self._cancelled = False

    def request_stop(self, reason: str = "stopped", why: str | None = None) -> None:
        """Cancel: stop the variant in training (its result is dropped); finished ones stay."""
        self._cancelled = True
        if self._trainer is not None:
            self._trainer.request_stop(reason, why)

    def run(self) -> Iterator[dict]:
        """The events of every variant; with a run directory, also appended to its events.jsonl."""
        from minigpt.runs.log import logged

        yield from logged(self._run(), self.run_dir)

    def _run(self) -> Iterator[dict]:
        from minigpt.runs.events import event

        yield event("ablation_start", variants=[v.name for v in self.variants],
                    descriptions={v.name: v.description for v in self.variants},
                    max_steps=self.cfg.max_steps, step=0, data=self.data.description,
                    config=self.cfg.to_dict(), pid=os.getpid())
        for index, variant in enumerate(self.variants):
            if self._cancelled:
                break
            result = yield from self._train(variant, index)
            if result is None:  # cancelled
                break
            self.results.append(result)
            yield event("result", **result.to_dict())
        yield event("ablation_done", reason="cancelled" if self._cancelled else "finished",
                    results=[r.to_dict() for r in self.results])

    def _train(self, variant: Variant, index: int):
        """Train one variant, passing its events on (tagged); returns its result, or None when
        it was cancelled (a variant cancelled in its final evaluation too: its loop ends
        "finished" with no loss, and is dropped all the same)."""
        from minigpt.runs.events import event
        from minigpt.train.trainer import Trainer

        cfg = self.cfg.with_overrides(**variant.settings_for(self.cfg.model))
        yield event("variant", variant=variant.name, description=variant.description,
                    index=index, count=len(self.variants), max_steps=cfg.max_steps)
        started = time.perf_counter()
        trainer = self._trainer = Trainer(cfg, self.data, device=self.device)
        sample, done, diverged = "", {}, None
        flow: dict[str, list[float]] = {}  # each layer's gradient norms over the logged steps
        try:
            for ev in trainer.run():
                sample = ev["text"] if ev["type"] == "sample" else sample
                for layer, norm in ev.get("grad_norms", {}).items():
                    flow.setdefault(layer, []).append(norm)
                done = ev if ev["type"] == "done" else done
                yield {**ev, "variant": variant.name}
        except TrainingDiverged as e:  # a finding about this variant, not the end of the study
            diverged = str(e)
            yield event("note", step=trainer.step, variant=variant.name, message=diverged)
            done = {"reason": "finished", "step": trainer.step, "tokens_per_s": 0.0}
        self._trainer = None
        if done.get("reason") != "finished" or self._cancelled:
            return None
        baseline = self.results[0] if self.results else None
        result = VariantResult(
            variant.name, variant.description, train_loss=done.get("train_loss"),
            val_loss=done.get("val_loss"), tokens_per_s=done["tokens_per_s"],
            seconds=time.perf_counter() - started, params=trainer.model.num_params(),
            steps=done["step"], sample=sample,
            diverged=diverged,  # None, or what happened: the loss became NaN at step N
            distinct_4grams=distinct_ngrams(sample, 4),
            grad_norms={layer: sum(norms) / len(norms) for layer, norms in flow.items()})
        against = baseline or result  # the baseline's difference from itself: 0
        if None not in (result.val_loss, against.val_loss):
            result.val_loss_delta = result.val_loss - against.val_loss
        result.evidence = evidence(result, baseline)
        return result


def distinct_ngrams(units: str | Sequence, n: int = 4) -> float:
    """The share of a text's n-grams that are distinct: a measure of repetition in samples.

    A string counts in characters ("たたたたたたたた", what a model without attention writes, holds
    5 4-grams, all the same: 0.2), a sequence in its items (token ids, words). 1.0 where nothing
    repeats, also for a text too short to hold an n-gram.
    """
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    grams = [tuple(units[i:i + n]) for i in range(len(units) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


def _against_baseline(ratio: float) -> str:
    """A ratio to the baseline's measure, as people say it: "1/40 of the baseline's", "0.8x the
    baseline's", "12x the baseline's"."""
    if ratio <= 0:
        return "none against the baseline's"
    if ratio < 0.5:
        return f"1/{1 / ratio:.0f} of the baseline's"
    return f"{ratio:.1f}x the baseline's" if ratio < 10 else f"{ratio:.0f}x the baseline's"


def _layer_name(layer: str) -> str:
    return f"layer {layer}" if layer.isdigit() else layer


def evidence(result: VariantResult, baseline: VariantResult | None) -> str:
    """One line of what was measured for a variant, against the baseline (None: this is the
    baseline), from the numbers alone: the layer whose gradient norm differs most from the
    baseline's (by ratio), the samples' distinct 4-grams, and the validation loss."""
    name = result.description or result.variant
    parts = []
    if result.diverged:
        parts.append(f"diverged at step {result.steps}")
    if baseline is None or baseline is result:
        if result.val_loss is not None:
            parts.append(f"val loss {result.val_loss:.2f}")
        if result.distinct_4grams is not None:
            parts.append(f"distinct 4-grams in samples {result.distinct_4grams:.0%}")
        return f"{name}: " + "; ".join(parts)
    ours, theirs = result.grad_norms, baseline.grad_norms
    ratios = {layer: ours[layer] / theirs[layer] for layer in ours
              if layer in theirs and theirs[layer] > 0 and math.isfinite(ours[layer])}
    if ratios:  # the layer furthest from the baseline's, either way
        layer = max(ratios, key=lambda k: abs(math.log(ratios[k])) if ratios[k] > 0 else math.inf)
        parts.append(f"{_layer_name(layer)} gradient norm {_against_baseline(ratios[layer])}")
    ours_d, theirs_d = result.distinct_4grams, baseline.distinct_4grams
    if ours_d is not None and theirs_d is not None:
        parts.append(f"distinct 4-grams in samples {ours_d:.0%} against {theirs_d:.0%}")
    if result.val_loss_delta is not None:
        parts.append(f"val loss {result.val_loss_delta:+.2f}")
    return f"{name}: " + ("; ".join(parts) or "nothing measured")
