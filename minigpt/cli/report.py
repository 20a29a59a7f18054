"""What the command line reports once a command is done: the ablation's tables, and a checkpoint
as `minigpt info` shows it (Rich)."""

from __future__ import annotations

from rich.table import Table

from minigpt.cli.console import console
from minigpt.model.switches import changed
from minigpt.runs.files import run_files, run_of_checkpoint
from minigpt.runs.results import VariantResult
from minigpt.train.gradflow import layer_order
from minigpt.units import format_duration, number


def results_table(results: list[VariantResult]) -> Table:
    table = Table(title="ablation: same data, seed and steps")
    for column in ("variant", "params", "train loss", "val loss", "vs baseline", "4-grams",
                   "tokens/s", "time"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in results:
        delta = "" if r.variant == "baseline" else number(r.val_loss_delta, "+.4f")
        if r.diverged:
            train_loss, val_loss = "diverged", f"at step {r.steps}"
        else:
            train_loss, val_loss = number(r.train_loss, ".4f"), number(r.val_loss, ".4f")
        params = number(r.params and r.params / 1e6, ".2f") + "M"
        table.add_row(r.variant, params, train_loss, val_loss, delta,
                      number(r.distinct_4grams, ".0%"),  # the samples' repetition
                      number(r.tokens_per_s, ",.0f"), number(r.seconds, ".1f") + " s")
    return table


def gradient_table(results: list[VariantResult]) -> Table | None:
    """Each variant's mean gradient norm by layer (rows), against the baseline's where it has
    that layer; None when no variant measured any."""
    norms = {r.variant: r.grad_norms for r in results}
    if not any(norms.values()):
        return None
    baseline = norms.get("baseline", {})
    table = Table(title="gradient norm by layer (mean over the logged steps; x the baseline's)")
    table.add_column("layer")
    for name in norms:
        table.add_column(name, justify="right")
    for layer in layer_order(norms.values()):
        cells = []
        for name, by_layer in norms.items():
            value = by_layer.get(layer)
            cell = "-" if value is None else f"{value:.3g}"
            if value is not None and name != "baseline" and baseline.get(layer):
                cell += f" ({value / baseline[layer]:.2g}x)"
            cells.append(cell)
        table.add_row(layer, *cells)
    return table


def print_info(ckpt) -> None:
    cfg = ckpt.model_config
    import torch

    from minigpt.model.gpt import GPT

    with torch.device("meta"):  # counted, not allocated: no memory, no random initialization
        n_params = GPT(cfg).num_params()
    table = Table(show_header=False, box=None, pad_edge=False)
    table.add_column(style="bold")
    table.add_column(overflow="fold")  # a long path folds onto more lines, never cut short
    table.add_row("checkpoint", str(ckpt.path))
    events = run_files(run_of_checkpoint(ckpt.path)).events if ckpt.path else None
    if events is not None and events.is_file():  # the history of the run that saved it
        table.add_row("events", str(events))
    if ckpt.meta.get("source"):  # imported from Hugging Face, or fine-tuned from another model
        table.add_row("source", ckpt.meta["source"])
    table.add_row("parameters", f"{n_params:,} ({n_params / 1e6:.2f}M)")
    table.add_row("shape", f"{cfg.n_layer} layers, {cfg.n_head} heads, {cfg.n_embd} dims, "
                           f"context {cfg.block_size}, vocabulary {cfg.vocab_size}")
    switches = [s.said(getattr(cfg, s.name)) for s in changed(cfg, cfg.switches)]
    table.add_row("switches", "\n".join(switches) or "none (GPT-2 as designed)")
    table.add_row("dropout", str(cfg.dropout))
    table.add_row("tokenizer", f"{ckpt.tokenizer.kind}, {ckpt.tokenizer.vocab_size} tokens")
    meta = ckpt.meta
    steps = f"{ckpt.step}"
    if ckpt.train_config and ckpt.train_config.time_budget is not None:
        spent = (ckpt.train_state or {}).get("time_spent", 0.0)
        steps += (f" after {format_duration(spent)} of its "
                  f"{format_duration(ckpt.train_config.time_budget)}")
    elif ckpt.train_config:
        steps += f" of {ckpt.train_config.max_steps}"
    table.add_row("step", steps)
    if "tokens_seen" in meta:
        table.add_row("tokens seen", f"{meta['tokens_seen']:,}")
    for key, label in (("train_loss", "train loss"), ("val_loss", "val loss")):
        if meta.get(key) is not None:
            table.add_row(label, f"{meta[key]:.4f}")
    if meta.get("data"):
        table.add_row("data", meta["data"])
    table.add_row("resumable", "yes" if ckpt.train_state else "no (weights only)")
    console.print(table)


