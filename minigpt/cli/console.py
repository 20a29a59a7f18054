"""What the command line shows: progress bars, tables and the plain chat loop (Rich).

The engine yields events; this module turns them into terminal output. The TUI is the other
consumer of the same events.
"""

from __future__ import annotations

import signal
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
from rich.table import Table
from rich.text import Text

from minigpt.config import format_duration
from minigpt.errors import TokenizerError
from minigpt.runs import control
from minigpt.runs.events import PREPARE_STAGES, run_files, run_of_checkpoint
from minigpt.runs.state import RunState
from minigpt.train.gradflow import layer_order

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
def signal_handlers(handlers: dict):
    """These signal handlers for the duration of the block; the previous ones come back after."""
    previous = {sig: signal.signal(sig, handler) for sig, handler in handlers.items()}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


class RunSignals:
    """How other processes, the terminal and Ctrl-C steer a run (minigpt.runs.control has the map; the
    TUI sends these to its children). Installed from a command's start, before its data is
    prepared; `run` is set once there is a Trainer or an AblationRunner to stop cleanly.

    INTERRUPT (Ctrl-C), STOP,  before `run`: Stopped at once (nothing to save yet). Then: stop
    HANGUP                     after the current step and save (an ablation: cancel); a second
                               Ctrl-C interrupts the step (or evaluation) itself, and the trainer
                               still saves before it ends; a checkpoint being written is never
                               interrupted. HANGUP also sends what would be printed nowhere.
    SAVE_NOW                   save a checkpoint now
    TOGGLE_PAUSE               pause, or resume a paused run

    `received` is the signal that ended the run (the first one), for its exit status.
    """

    def __init__(self, run=None):
        self.run = run
        self.received: int | None = None

    def handlers(self) -> dict:
        handlers = {sig: self._on_ending for sig in control.ENDING
                    if not control.ignored(sig)}  # `nohup minigpt train`: hangups are not stops
        if control.SAVE_NOW is not None:  # POSIX only
            handlers[control.SAVE_NOW] = self._on_save_now
        if control.TOGGLE_PAUSE is not None:
            handlers[control.TOGGLE_PAUSE] = self._on_toggle_pause
        return handlers

    def _on_ending(self, signum, frame):
        if signum == control.HANGUP:
            control.detach_from_terminal()
        again, self.received = self.received is not None, self.received or signum
        if self.run is None:  # preparing the data, building the model: nothing to save yet
            raise control.Stopped(signum)
        if again:
            # only a step or an evaluation is cut short; elsewhere (saving, printing) the run is
            # already on its way out, and an exception there would lose the checkpoint
            if signum == control.INTERRUPT and getattr(self.run, "interruptible", False):
                raise KeyboardInterrupt
            return
        reason = "interrupted" if signum == control.INTERRUPT else "stopped"
        self.run.request_stop(reason, control.why_stopped(signum))
        if hasattr(self.run, "evaluating"):  # a trainer: say what happens next
            again = " (Ctrl-C again to interrupt the step)" if signum == control.INTERRUPT else ""
            console.print(f"[yellow]stopping ({control.signal_name(signum)}): finishing this step "
                          f"and saving a checkpoint{again}", markup=True)
            if self.run.evaluating:  # an evaluation changes nothing: no need to wait for it
                raise KeyboardInterrupt

    def _on_save_now(self, signum, frame):
        if self.run is not None and hasattr(self.run, "request_save"):
            self.run.request_save()

    def _on_toggle_pause(self, signum, frame):
        if self.run is not None and hasattr(self.run, "request_pause"):
            self.run.request_pause(not self.run.paused)


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
                    f"  run     {ev['run_dir']}, {length}"))
                task = progress.add_task("train", total=state.length, completed=state.progress,
                                         loss="-", speed="", step=f"step {state.step}")
            elif kind == "step":
                progress.update(task, completed=state.progress, loss=f"{ev['loss']:.3f}",
                                speed=f"{ev['tokens_per_s']:,.0f} tok/s",
                                step=f"step {state.step}")
            elif kind == "eval":
                console.print(f"step {ev['step']:>6}: train loss {ev['train_loss']:.4f}, "
                              f"val loss {ev['val_loss']:.4f}")
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


def _note(message: str) -> Text:
    return Text.assemble(("note:", "yellow"), " ", message)


def _indent(text: str, width: int = 400) -> str:
    text = text if len(text) <= width else text[:width] + "…"
    return "\n".join("  | " + line for line in text.splitlines())


def run_ablation(runner, quiet: bool = False) -> list[dict]:
    progress = _progress()
    if quiet:
        progress.disable = True
    tasks = {}
    with progress:  # a stop (RunSignals) cancels; the variants already finished are kept
        for ev in runner.run():
            kind = ev["type"]
            if kind == "variant":
                tasks[ev["variant"]] = progress.add_task(ev["variant"], total=ev["max_steps"],
                                                         loss="-", speed="")
            elif kind == "step":
                progress.update(tasks[ev["variant"]], completed=ev["step"],
                                loss=f"{ev['loss']:.3f}", speed=f"{ev['tokens_per_s']:,.0f} tok/s")
            elif kind == "result" and quiet:
                console.print(f"{ev['variant']}: val loss {_number(ev['val_loss'], '.4f')}")
            elif kind == "ablation_done" and ev["reason"] == "cancelled":
                console.print("[yellow]cancelled: showing the variants that finished",
                              markup=True)
    results = runner.results
    if not results:
        return results
    console.print(results_table(results))
    gradients = gradient_table(results)
    if gradients is not None:
        console.print(gradients)
    for r in results:  # what was measured, in words (ablation.evidence)
        if r.get("evidence"):
            console.print(r["evidence"])
    for r in results:
        console.print(Text.assemble((r["variant"], "bold"), " ", (f"({r['description']})", "dim")))
        console.print(_indent(r["sample"], 240), style="dim")
    return results


def results_table(results: list[dict]) -> Table:
    table = Table(title="ablation: same data, seed and steps")
    for column in ("variant", "params", "train loss", "val loss", "vs baseline", "4-grams",
                   "tokens/s", "time"):
        table.add_column(column, justify="left" if column == "variant" else "right")
    for r in results:
        delta = "" if r["variant"] == "baseline" else _number(r["val_loss_delta"], "+.4f")
        if r.get("diverged"):
            train_loss, val_loss = "diverged", f"at step {r['steps']}"
        else:
            train_loss, val_loss = _number(r["train_loss"], ".4f"), _number(r["val_loss"], ".4f")
        distinct = r.get("distinct_4grams")  # the samples' distinct 4-grams: repetition
        table.add_row(r["variant"], f"{r['params'] / 1e6:.2f}M", train_loss, val_loss, delta,
                      _number(distinct, ".0%"), f"{r['tokens_per_s']:,.0f}",
                      f"{r['seconds']:.1f} s")
    return table


def gradient_table(results: list[dict]) -> Table | None:
    """Each variant's mean gradient norm by layer (rows), against the baseline's where it has
    that layer; None when no variant measured any."""
    norms = {r["variant"]: r.get("grad_norms") or {} for r in results}
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


def _number(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


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
    switches = [f"{name}={getattr(cfg, name)}" for name, default in
                (("residual", True), ("attention", True), ("mlp", True),
                 ("position_embedding", True), ("layer_norm", "pre"), ("tie_weights", True))
                if getattr(cfg, name) != default]
    table.add_row("ablations", ", ".join(switches) or "none (GPT-2 as designed)")
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


def plain_chat(model, tokenizer, cfg) -> None:
    """The seed's interactive mode: each line typed is continued by the model."""
    from minigpt.infer.sampling import stream_text

    print("minigpt chat: type a prompt and press Enter; the model continues it. "
          "Ctrl-C stops a reply, Ctrl-D or /quit leaves.", file=sys.stderr)
    while True:
        try:
            line = input("> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return
        if line.strip() in ("/quit", "/exit"):
            return
        if not line:
            continue
        try:
            tokenizer.encode(line)  # an unknown character is reported before any output
            sys.stdout.write(line)
            for piece in stream_text(model, tokenizer, line, cfg):
                sys.stdout.write(piece)
                sys.stdout.flush()
        except TokenizerError as e:
            print(f"\nminigpt: {e}", file=sys.stderr)
        except KeyboardInterrupt:
            sys.stdout.write(" [stopped]")
        sys.stdout.write("\n")
