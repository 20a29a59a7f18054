"""Ablations: change one part of the model and retrain it, to see what that part was doing.

Every variant trains with the baseline's data, tokenizer, seeds and budget, one after another, so
the differences in loss come from the switch alone. The budget is equal steps (`--steps`), or an
equal wall-clock time (`--time`), where a faster variant takes more steps. With several seeds
(`--seeds N`), each variant's loss is a mean with its spread, and its difference from the
baseline comes with a 95% interval (train/stats.py): a difference inside it is noise, and is
said so. A size sweep fits a scaling law (train/scaling.py).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path

from minigpt.errors import ConfigError, TrainingDiverged
from minigpt.model.switches import COMBINATIONS, KINDS, SWITCHES, Switch, Variant
from minigpt.runs.results import SeedRun, VariantResult
from minigpt.train import stats
from minigpt.train.config import TrainConfig
from minigpt.train.scaling import fit

# The scaling sweep: the same recipe at other depths and widths (the cpu preset's 4 x 128 is the
# baseline among them), enough points for a power law to mean something.
SIZES = tuple(
    Variant(f"size-{layers}x{dims}", f"{layers} layer{'s' * (layers > 1)}, {heads} heads, {dims} dims",
            {"n_layer": layers, "n_head": heads, "n_embd": dims}, kind="size", group="size")
    for layers, heads, dims in ((1, 2, 32), (2, 2, 64), (3, 3, 96), (6, 6, 192), (8, 8, 256)))

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


def by_kind(known: dict[str, list[Variant]] | None = None) -> dict[str, list[str]]:
    """The names ablate is asked for, by what their variants do (model/switches.KINDS, in its
    order: remove a part, add a modern part, the questions, another size): the headings under
    which `ablate --help` and the TUI's Ablate pane list them."""
    known = VARIANTS if known is None else known
    found: dict[str, list[str]] = {kind: [] for kind in KINDS}
    for name, variants in known.items():
        found[variants[0].kind].append(name)
    return {kind: names for kind, names in found.items() if names}


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


def ablation_config(base: TrainConfig, steps: int, seed: int,
                    time_budget: float | None = None) -> TrainConfig:
    """The baseline recipe on a fixed budget, evaluated at the end: `steps` steps, warming up
    over a tenth of them; or `time_budget` seconds of the preset's own schedule, on the clock."""
    if time_budget is not None:
        return base.with_overrides(time_budget=time_budget, seed=seed, eval_interval=10**9,
                                   sample_tokens=120)
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
    """Trains the baseline and each variant at each seed; run() yields their events, each
    tagged "variant" (and "seed", the seed's index), then a result per variant."""

    def __init__(self, variant_names: list[str], data, base: TrainConfig, steps: int = STEPS,
                 seed: int = 1337, device=None, run_dir=None, seeds: int = 1,
                 time_budget: float | None = None):
        self.variants = expand_variants(variant_names)
        self.data = data  # PreparedData: one tokenizer and split for every variant
        self.cfg = ablation_config(base, steps, seed, time_budget)
        self.seeds = [seed + i for i in range(seeds)]
        self.device = device
        self.run_dir = run_dir
        self.bytes_per_token = bytes_per_token(data)
        self.results: list[VariantResult] = []
        self.scaling: dict | None = None  # the size sweep's power laws, when there was one
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
                    kinds={v.name: v.kind for v in self.variants},
                    max_steps=self.cfg.max_steps, time_budget=self.cfg.time_budget,
                    seeds=len(self.seeds), step=0, data=self.data.description,
                    config=self.cfg.to_dict(), pid=os.getpid())
        for index, variant in enumerate(self.variants):
            runs = []
            for seed_index in range(len(self.seeds)):
                if self._cancelled:
                    break
                run = yield from self._train(variant, index, seed_index)
                if run is not None:  # None: cancelled
                    runs.append(run)
            if self._cancelled:
                break
            result = summarize(variant, runs, self.results[0] if self.results else None)
            self.results.append(result)
            yield event("result", **result.to_dict())
        self.scaling = scaling_laws(self.results, self.cfg.tokens_per_step)
        yield event("ablation_done", reason="cancelled" if self._cancelled else "finished",
                    results=[r.to_dict() for r in self.results], scaling=self.scaling)

    def _train(self, variant: Variant, index: int, seed_index: int):
        """Train one variant at one seed, passing its events on (tagged); returns its _Trained,
        or None when it was cancelled (in its final evaluation too: its loop then ends
        "finished" with no loss, and is dropped all the same)."""
        from minigpt.runs.events import event
        from minigpt.train.trainer import Trainer

        seed = self.seeds[seed_index]
        cfg = self.cfg.with_overrides(seed=seed, **variant.settings_for(self.cfg.model))
        if seed_index == 0:
            yield event("variant", variant=variant.name, description=variant.description,
                        index=index, count=len(self.variants), max_steps=cfg.max_steps,
                        seeds=len(self.seeds))
        started = time.perf_counter()
        trainer = self._trainer = Trainer(cfg, self.data, device=self.device)
        trained = _Trained(seed)
        try:
            for ev in trainer.run():
                trained.take(ev)
                yield {**ev, "variant": variant.name, "seed": seed_index}
        except TrainingDiverged as e:  # a finding about this variant, not the end of the study
            trained.run.diverged = str(e)
            yield event("note", step=trainer.step, variant=variant.name, message=str(e))
            trained.done = {"reason": "finished", "step": trainer.step, "tokens_per_s": 0.0}
        self._trainer = None
        if trained.done.get("reason") != "finished" or self._cancelled:
            return None
        return trained.finish(trainer, time.perf_counter() - started, self.bytes_per_token)


class _Trained:
    """What one seed's training left, gathered from its events: the run's numbers, its sample
    and each layer's gradient norms."""

    def __init__(self, seed: int):
        self.run = SeedRun(seed)
        self.done: dict = {}
        self.sample = ""
        self.flow: dict[str, list[float]] = {}  # each layer's gradient norms over logged steps
        self.params = self.body_params = None

    def take(self, ev: dict) -> None:
        self.sample = ev["text"] if ev["type"] == "sample" else self.sample
        for layer, norm in ev.get("grad_norms", {}).items():
            self.flow.setdefault(layer, []).append(norm)
        self.done = ev if ev["type"] == "done" else self.done

    def finish(self, trainer, seconds: float, bytes_per_token: float | None) -> _Trained:
        run = self.run
        run.train_loss, run.val_loss = self.done.get("train_loss"), self.done.get("val_loss")
        run.steps, run.tokens_per_s = self.done["step"], self.done["tokens_per_s"]
        run.seconds = seconds
        if run.val_loss is not None and bytes_per_token:
            run.bits_per_byte = run.val_loss / math.log(2) / bytes_per_token
        if not trainer.cfg.model.causal and run.val_loss is not None:
            with trainer.model.mask_on():  # how it would have to generate: never the future
                run.masked_val_loss = (trainer.estimate_loss() or {}).get("val")
        self.params = trainer.model.num_params()
        self.body_params = sum(p.numel() for p in trainer.model.transformer.h.parameters())
        return self


def summarize(variant: Variant, trained: list[_Trained],
              baseline: VariantResult | None) -> VariantResult:
    """A variant's result: the mean of its seeds' numbers, the spread of their losses, and the
    difference from the baseline with its 95% interval (baseline None: this is the baseline)."""
    runs = [t.run for t in trained]
    kept = [r for r in runs if r.val_loss is not None]

    def average(name: str) -> float | None:
        values = [getattr(r, name) for r in kept if getattr(r, name) is not None]
        return stats.mean(values) if values else None

    first = trained[0]
    losses = [r.val_loss for r in kept]
    result = VariantResult(
        variant.name, variant.description, kind="baseline" if baseline is None else variant.kind,
        train_loss=average("train_loss"), val_loss=average("val_loss"),
        val_loss_std=stats.std(losses), bits_per_byte=average("bits_per_byte"),
        masked_val_loss=average("masked_val_loss"),
        tokens_per_s=stats.mean([r.tokens_per_s for r in runs]),
        seconds=stats.mean([r.seconds for r in runs]), params=first.params,
        body_params=first.body_params, steps=round(stats.mean([r.steps for r in runs])),
        sample=first.sample, diverged=next((r.diverged for r in runs if r.diverged), None),
        distinct_4grams=distinct_ngrams(first.sample, 4),
        grad_norms={layer: sum(v) / len(v) for layer, v in first.flow.items()}, runs=runs)
    theirs = [r.val_loss for r in (baseline.runs if baseline else runs) if r.val_loss is not None]
    if losses and theirs:
        d = stats.difference(theirs, losses)
        result.val_loss_delta, result.delta_half_width = d.value, d.half_width
        result.within_noise = d.within_noise if baseline is not None else None
    result.evidence = evidence(result, baseline)
    return result


def scaling_laws(results: list[VariantResult], tokens_per_step: int) -> dict | None:
    """The power laws of a size sweep (the baseline and the size variants), against the blocks'
    parameters and against training compute (6 N D); None without a sweep to fit."""
    sizes = [r for r in results if r.kind in ("baseline", "size") and r.val_loss is not None
             and r.body_params]
    if sum(r.kind == "size" for r in sizes) < 2:
        return None
    losses = [r.val_loss for r in sizes]
    by_params = fit([r.body_params for r in sizes], losses, "parameters")
    by_compute = fit([6 * r.body_params * r.steps * tokens_per_step for r in sizes], losses,
                     "compute")
    if by_params is None:
        return None
    return {"parameters": by_params.to_dict(),
            "compute": by_compute.to_dict() if by_compute else None,
            "points": [{"variant": r.variant, "params": r.body_params, "val_loss": r.val_loss,
                        "compute": 6 * r.body_params * r.steps * tokens_per_step}
                       for r in sizes]}


def bytes_per_token(data, limit: int = 200_000) -> float | None:
    """The text's bytes per token, on the validation split's first tokens: what turns a loss in
    nats per token into bits per byte, comparable across tokenizers."""
    ids = [int(i) for i in data.tokens.val[:limit]]
    if not ids:
        return None
    return len(data.tokenizer.decode(ids).encode("utf-8")) / len(ids)


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
    baseline's (by ratio), the samples' distinct 4-grams, the validation loss and whether its
    difference is within the noise of the seeds, and for a model trained without the causal
    mask, its loss with the mask put back."""
    name = result.description or result.variant
    parts = []
    if result.diverged:
        parts.append(f"diverged at step {result.steps}")
    if baseline is None or baseline is result:
        if result.val_loss is not None:
            spread = f" +- {result.val_loss_std:.2f} over {len(result.runs)} seeds" \
                if result.val_loss_std is not None else ""
            parts.append(f"val loss {result.val_loss:.2f}{spread}")
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
        parts.append(f"val loss {_difference(result)}")
    if result.masked_val_loss is not None and baseline.val_loss is not None:
        parts.append(_masked(result, baseline))
    return f"{name}: " + ("; ".join(parts) or "nothing measured")


def _difference(result: VariantResult) -> str:
    """'+0.12 +- 0.03', and whether that is within the noise of the seeds."""
    said = f"{result.val_loss_delta:+.2f}"
    if result.delta_half_width is None:
        return said + " (one seed: no noise measured)"
    said += f" +- {result.delta_half_width:.2f}"
    if result.within_noise:
        return said + f", within the noise of {len(result.runs)} seeds"
    return said + ", outside the noise"


def _masked(result: VariantResult, baseline: VariantResult) -> str:
    """A no-mask model judged as it would have to generate: with the mask put back."""
    said = (f"with the mask put back, as it must generate, val loss "
            f"{result.masked_val_loss:.2f} against the baseline's {baseline.val_loss:.2f}")
    if result.masked_val_loss > baseline.val_loss + 0.5 and result.val_loss is not None \
            and result.val_loss < baseline.val_loss:
        said += (": its low training loss came from reading the next token in its input, and "
                 "it learned nothing it can use")
    return said
