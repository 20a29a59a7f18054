"""What the command line reports once a command is done: the ablation's tables, and a checkpoint
as `minigpt info` shows it (Rich)."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text

from minigpt.cli.console import console
from minigpt.model.config import lora_summary
from minigpt.model.switches import changed
from minigpt.runs.columns import column_width, pack, result_rows
from minigpt.runs.files import run_files, run_of_checkpoint
from minigpt.runs.results import VariantResult
from minigpt.train.gradflow import layer_order
from minigpt.units import format_duration


def results_tables(results: list[VariantResult], width: int = 80,
                   timed: bool = False) -> list[Table]:
    """The results as tables that fit `width` columns, the variant's name whole in each: what
    does not fit in the first goes to a second (runs/columns.py). A diverged variant says so in
    its losses; a column no variant has a number for (masked, noise with one seed) is left out.
    timed: an ablation on equal time, whose steps and tokens/s come early."""
    headers, rows = result_rows(results, timed=timed)
    name_width = max(len("variant"), *(len(name) for name in rows))
    # a column's width with its padding and border; the name's with the table's edges
    groups = pack({h: column_width(h, rows) + 3 for h in headers}, width - name_width - 4)
    tables = []
    for chosen in groups:
        title = "ablation: same data, seeds and budget" if not tables else None
        table = Table(title=title)
        table.add_column("variant", no_wrap=True, min_width=name_width)
        for header in chosen:
            table.add_column(header, justify="right", no_wrap=True)
        for name, row in rows.items():
            table.add_row(name, *(row[h] for h in chosen))
        tables.append(table)
    return tables


def scaling_line(scaling: dict | None) -> str | None:
    """The size sweep's law in words: alpha, c and how well the curve fits."""
    if not scaling or not scaling.get("parameters"):
        return None
    law = scaling["parameters"]
    said = (f"scaling law, L(N) = a N^-alpha + c over {law['points']} sizes (N the blocks' "
            f"parameters): alpha {law['alpha']:.3f}, c {law['c']:.3f}, R^2 {law['r2']:.3f}")
    compute = scaling.get("compute")
    if compute:
        said += f"; against training compute (6 N D): alpha {compute['alpha']:.3f}"
    return said


def gradient_tables(results: list[VariantResult], width: int = 80) -> list[Table]:
    """Each variant's mean gradient norm by layer (rows), against the baseline's where it has
    that layer, in tables that fit `width` columns, each variant's name whole: the variants that
    do not fit in the first go to a second. None measured any: no table."""
    norms = {r.variant: r.grad_norms for r in results}
    if not any(norms.values()):
        return []
    baseline = norms.get("baseline", {})
    layers = layer_order(norms.values())
    cells = {name: {layer: _norm_cell(by_layer.get(layer), baseline.get(layer),
                                      name == "baseline") for layer in layers}
             for name, by_layer in norms.items()}
    layer_width = max(len("layer"), *(len(layer) for layer in layers))
    costs = {name: max(len(name), *(len(c) for c in column.values())) + 3
             for name, column in cells.items()}
    tables = []
    for chosen in pack(costs, width - layer_width - 4):
        title = None if tables else "gradient norm by layer (mean over the logged steps; x the " \
                                    "baseline's)"
        table = Table(title=title)
        table.add_column("layer", no_wrap=True, min_width=layer_width)
        for name in chosen:
            table.add_column(name, justify="right", no_wrap=True)
        for layer in layers:
            table.add_row(layer, *(cells[name][layer] for name in chosen))
        tables.append(table)
    return tables


def _norm_cell(value: float | None, baseline: float | None, is_baseline: bool) -> str:
    if value is None:
        return "-"
    if is_baseline or not baseline:
        return f"{value:.3g}"
    return f"{value:.3g} ({value / baseline:.2g}x)"


def print_info(ckpt) -> None:
    cfg = ckpt.model_config
    import torch

    from minigpt.data.chat import has_template
    from minigpt.model.gpt import GPT
    from minigpt.train.config import OBJECTIVES

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
    template = " (4 of them the chat template's: <|system|> <|user|> <|assistant|> <|end|>)" \
        if has_template(ckpt.tokenizer) else ""
    table.add_row("tokenizer", f"{ckpt.tokenizer.kind}, {ckpt.tokenizer.vocab_size} tokens{template}")
    if ckpt.train_config is not None:
        tuning = ckpt.train_config
        learned = OBJECTIVES[tuning.objective]
        table.add_row("learned", learned + (f", beta {tuning.beta:g}" if tuning.objective == "dpo"
                                            else ""))
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
    tuned = ckpt.train_config
    if tuned and tuned.lora_r:
        if ckpt.adapters is not None:
            n = sum(t.numel() for t in ckpt.adapters.values())
            kept = f"adapters kept apart ({n:,} parameters), merged when the model runs"
        else:
            kept = "merged into the weights"
        table.add_row("LoRA", f"{lora_summary(tuned.lora_r, tuned.lora_alpha, tuned.lora_targets)}"
                              f": {kept}")
    table.add_row("resumable", "yes" if ckpt.train_state else "no (weights only)")
    console.print(table)




def print_task_scores(scores: dict, models: dict) -> None:
    """Each task's accuracy, a column a model; then a wrong reply of the last model's, each
    task, so a reader sees what it does."""
    from minigpt.data.chat import has_template

    table = Table(title="built-in tasks: accuracy on held-out questions")
    table.add_column("task", no_wrap=True)
    for name, model in models.items():
        asked = "chat" if has_template(model.tokenizer) else "continuation"
        table.add_column(f"{name} ({asked})", justify="right")
    tasks = [s.task for s in next(iter(scores.values()))]
    for i, task in enumerate(tasks):
        table.add_row(task, *(f"{found[i].accuracy:.0%}" for found in scores.values()))
    table.add_row("all", *(f"{sum(s.correct for s in found) / sum(s.total for s in found):.0%}"
                           for found in scores.values()), style="bold")
    console.print(table)
    last = list(scores.values())[-1]
    for score in last:
        if score.unreadable:
            console.print(f"{score.task}: {score.unreadable} question(s) hold characters the "
                          "model's vocabulary lacks")
        wrong = next(((e, r) for e, r in score.replies if e.answer != r.strip().split("\n")[0]),
                     None)
        if wrong:
            example, reply = wrong
            console.print(Text.assemble((f"{score.task}: ", "bold"), f"{example.question} -> ",
                                        (repr(reply.strip()[:40]), "dim"),
                                        f" (the answer: {example.answer})"))
