"""What the command line shows: progress bars, tables and the plain chat loop (Rich).

The engine yields events; this module turns them into terminal output. The TUI is the other
consumer of the same events.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from minigpt.errors import TokenizerError
from minigpt.model.config import lora_summary
from minigpt.runs.events import PREPARE_STAGES
from minigpt.runs.state import RunState
from minigpt.units import format_duration, number

# Markup is asked for where it is meant (markup=True); everything else, file names and text
# from a model or a checkpoint among it, is printed as it is.
console = Console(highlight=False, markup=False)


def _progress(timed: bool = False) -> Progress:
    """Steps done of the run's; a timed run's bar is its seconds, with the step beside it."""
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[step]}") if timed else MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TextColumn("{task.fields[speed]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=not console.is_terminal,
    )


@contextmanager
def preparing(quiet: bool = False, also=None, announce: bool = True):
    """A progress bar for a preparation (bytes read, tokens, tokens/s, ETA): yields the on_event
    callback prepare() takes, which also passes each event to also (e.g. a run's event log)."""
    progress = Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TextColumn("{task.fields[tokens]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        console=console,
        disable=quiet or not console.is_terminal,
        transient=True,
    )
    tasks: dict[str, int] = {}

    def on_event(ev: dict) -> None:
        if also is not None:
            also(ev)
        if ev["type"] == "prepare":
            stage = ev["stage"]
            if stage not in tasks:
                tasks[stage] = progress.add_task(PREPARE_STAGES.get(stage, stage),
                                                 total=ev["bytes_total"], tokens="")
            tokens = (f"{ev['tokens']:,} tokens, {ev['tokens_per_s']:,.0f} tok/s"
                      if ev["tokens"] else "")
            progress.update(tasks[stage], completed=ev["bytes_done"], tokens=tokens)
        elif ev["type"] == "prepared" and announce and not quiet:
            how = "found in the cache" if ev["cached"] else f"prepared in {ev['seconds']:.1f} s"
            console.print(f"data    {ev['tokens']:,} {ev['tokenizer']} tokens {how}: "
                          f"{ev['path']}", highlight=False)
        elif ev["type"] == "note":  # a damaged cache entry, made again
            console.print(_note(ev["message"]), soft_wrap=True)  # a path whole, to copy

    with progress:
        yield on_event


def run_training(trainer, quiet: bool = False) -> str:
    """Consume the trainer's events, showing progress; the reason the run ended. The caller
    steers it (RunSignals)."""
    state = RunState()  # what the events mean, as every other reader of them folds them
    progress = _progress(timed=trainer.timed)
    if quiet:
        progress.disable = True
    with progress:
        task = None
        length = (f"for {format_duration(trainer.cfg.time_budget)}" if trainer.timed
                  else f"for {trainer.cfg.max_steps:,} steps")
        for ev in trainer.run():
            state.apply(ev)
            kind = ev["type"]
            if kind == "start":
                cfg = ev["config"]["model"]
                console.print(Text.assemble(
                    ("minigpt train", "bold"), f" {ev['params'] / 1e6:.2f}M parameters "
                    f"({cfg['n_layer']} layers, {cfg['n_head']} heads, {cfg['n_embd']} dims, "
                    f"context {cfg['block_size']}), {ev['tokenizer']} tokenizer of "
                    f"{ev['vocab_size']} tokens\n"
                    f"  data    {ev['data']}: {ev['train_tokens']:,} train / "
                    f"{ev['val_tokens']:,} val tokens\n"
                    f"  device  {ev['device']}, {ev.get('precision', 'fp32')}\n"
                    f"  run     {ev['run_dir']}, {length}" + _lora_line(ev)))
                task = progress.add_task("train", total=state.length, completed=state.progress,
                                         loss="-", speed="", step=f"step {state.step}")
            elif kind == "step":
                progress.update(task, completed=state.progress, loss=f"{ev['loss']:.3f}",
                                speed=f"{ev['tokens_per_s']:,.0f} tok/s",
                                step=f"step {state.step}")
            elif kind == "eval":
                console.print(_evaluation_line(ev))
            elif kind == "sample":
                console.print(_indent(ev["text"]), style="dim")
            elif kind in ("paused", "resumed"):
                console.print(f"{kind} at step {ev['step']}")
            elif kind == "note":
                console.print(_note(ev["message"]), soft_wrap=True)
            elif kind == "done":
                progress.update(task, completed=state.progress)  # a timed run's final evaluation
                where = ev["checkpoint"]
                verb = {"finished": "done", "interrupted": "interrupted",
                        "stopped": "stopped"}[state.status]
                val = f", val loss {ev['val_loss']:.4f}" if ev["val_loss"] is not None else ""
                if ev.get("signal") and state.status == "stopped":  # Ctrl-C's is known
                    verb += f" ({ev['signal']})"
                if trainer.timed:  # the time it took, and the final evaluation's share
                    final = ev["final_eval_seconds"]
                    val = (f" after {format_duration(ev['time_spent'])} of "
                           f"{format_duration(trainer.cfg.time_budget)}"
                           + (f" ({final:.1f} s of it the final evaluation)" if final else "")
                           + val)
                console.print(f"{verb} at step {ev['step']}{val}; "
                              f"{ev['tokens_per_s']:,.0f} tokens/s; checkpoint saved to {where}")
    return state.status


def say(message: str) -> None:
    """A line about the run itself (stopping, ...), in the warnings' colour."""
    console.print(Text(message, style="yellow"))


def _note(message: str) -> Text:
    return Text.assemble(("note:", "yellow"), " ", message)


def _lora_line(start: dict) -> str:
    """A LoRA run's line under the start: its adapters, and the share of the parameters that
    trains ('' for any other run)."""
    cfg = start["config"]
    if cfg.get("lora_r") is None:
        return ""
    trainable, params = start["trainable_params"], start["params"]
    saved = "kept apart" if cfg["lora_keep"] else "merged into the weights"
    adapters = lora_summary(cfg["lora_r"], cfg["lora_alpha"], cfg["lora_targets"])
    return (f"\n  lora    {adapters}: {trainable:,} of {params:,} parameters train "
            f"({trainable / params:.2%}); saved {saved}")


def _evaluation_line(ev: dict) -> str:
    """An evaluation's losses; a preference-tuning run's validation pairs too."""
    line = f"step {ev['step']:>6}: train loss {ev['train_loss']:.4f}, val loss {ev['val_loss']:.4f}"
    if "accuracy" in ev:
        line += (f", chosen preferred in {ev['accuracy']:.0%} of pairs (margin "
                 f"{ev['margin']:+.3f}, log-ratio to the start {ev['kl']:+.3f})")
    return line


def _indent(text: str, width: int = 400) -> str:
    text = text if len(text) <= width else text[:width] + "…"
    return "\n".join("  | " + line for line in text.splitlines())


def run_ablation(runner, quiet: bool = False) -> list:
    """Consume an ablation's events, a progress bar for each training; then its tables, each
    variant's evidence in words, the scaling law of a size sweep, and the samples."""
    progress = _progress(timed=runner.cfg.time_budget is not None)
    if quiet:
        progress.disable = True
    task = None
    with progress:  # a stop (RunSignals) cancels; the variants already finished are kept
        for ev in runner.run():
            kind = ev["type"]
            if kind == "start" and "variant" in ev:  # a variant's training at one seed
                label = ev["variant"] + (f" #{ev['seed'] + 1}" if len(runner.seeds) > 1 else "")
                task = progress.add_task(label, total=runner.cfg.time_budget or ev["max_steps"],
                                         loss="-", speed="", step="")
            elif kind == "step" and task is not None:
                progress.update(task, completed=ev["time_spent"] if runner.cfg.time_budget
                                else ev["step"], loss=f"{ev['loss']:.3f}",
                                speed=f"{ev['tokens_per_s']:,.0f} tok/s", step=f"step {ev['step']}")
            elif kind == "result" and quiet:
                console.print(f"{ev['variant']}: val loss {number(ev['val_loss'], '.4f')}")
            elif kind == "ablation_done" and ev["reason"] == "cancelled":
                console.print("[yellow]cancelled: showing the variants that finished",
                              markup=True)
    results = runner.results
    if results:
        _print_results(results, runner.scaling, timed=runner.cfg.time_budget is not None)
    return results


def _print_results(results: list, scaling: dict | None, timed: bool = False) -> None:
    from minigpt.cli.report import gradient_tables, results_tables, scaling_line

    for table in results_tables(results, console.width, timed):
        console.print(table)
    for table in gradient_tables(results, console.width):
        console.print(table)
    for r in results:  # what was measured, in words (ablation.evidence)
        if r.evidence:
            console.print(r.evidence)
    law = scaling_line(scaling)
    if law:
        console.print(law)
    for r in results:
        console.print(Text.assemble((r.variant, "bold"), " ", (f"({r.description})", "dim")))
        console.print(_indent(r.sample, 240), style="dim")


@contextmanager
def evaluation_progress(name: str, per_task: int):
    """A bar per task while a model answers its questions: yields progress(task, done)."""
    progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                        MofNCompleteColumn(), TimeElapsedColumn(), console=console,
                        disable=not console.is_terminal, transient=True)
    tasks: dict[str, int] = {}

    def advance(task: str, done: int) -> None:
        if task not in tasks:
            tasks[task] = progress.add_task(f"{name}: {task}", total=per_task)
        progress.update(tasks[task], completed=done)

    with progress:
        yield advance


def plain_chat(model, dialogue, cfg) -> None:
    """The seed's interactive mode: each line typed is continued by the model, or, for a model
    with a chat template, answered as a turn of the conversation so far (/reset forgets it)."""
    from minigpt.infer.sampling import stream_text

    turns = "/reset starts the conversation again, " if dialogue.templated else ""
    print(f"minigpt chat ({dialogue.said}): type a prompt and press Enter. Ctrl-C stops a "
          f"reply, {turns}Ctrl-D or /quit leaves.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return
        if line.strip() in ("/quit", "/exit"):
            return
        if line.strip() == "/reset":
            dialogue.reset()
            continue
        if not line:
            continue
        reply = []
        try:
            ids = dialogue.prompt(line)  # an unknown character is reported before any output
            if not dialogue.templated:
                sys.stdout.write(line)
            for piece in stream_text(model, dialogue.tokenizer, ids, cfg):
                reply.append(piece)
                sys.stdout.write(piece)
                sys.stdout.flush()
            dialogue.answered(line, "".join(reply))
        except TokenizerError as e:
            print(f"\nminigpt: {e}", file=sys.stderr)
        except KeyboardInterrupt:
            sys.stdout.write(" [stopped]")
        sys.stdout.write("\n")
