"""Training: AdamW or Muon, warmup then a cosine or WSD decay, gradient clipping and accumulation,
evaluation.

A run is as long as its steps (cfg.max_steps) or its time (cfg.time_budget, `--time 5m`). A timed
run's learning-rate schedule follows the wall clock: it warms up over the same share of its time
as warmup_steps is of max_steps, and decays to min_lr as the time runs out; max_steps then only
maps the clock onto the schedule, and is no limit. Its time counts the evaluations and the final
one (it keeps as long as the last evaluation took for it), not pauses, and adds up over resumes.

`Trainer.run()` is a generator of events (see events.py for their fields). The command line,
the TUI and the tests all consume it; with a run directory it also appends every event to
events.jsonl and keeps model.pt there, saved atomically at each evaluation and at the end.

Reproducible: with the same seed, data and device, two runs give the same losses, and a run
resumed from a checkpoint continues exactly where the uninterrupted run would be, because the
checkpoint carries the optimizer state and every random generator the loop draws from.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable, Iterator
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.backends.compiling import CompiledOrEager
from minigpt.backends.hardware import (
    allow_tf32,
    autocast_for,
    describe_device,
    measured_matmul_flops,
    peak_flops,
    pick_device,
    resolve_precision,
)
from minigpt.checkpoint import Checkpoint, save_checkpoint
from minigpt.data.batches import TokenData, get_batch
from minigpt.data.prepare import prepare
from minigpt.data.sources import Source
from minigpt.data.tokenizer import Tokenizer
from minigpt.errors import CheckpointError, ConfigError, DataError, TrainingDiverged
from minigpt.infer.sampling import SamplingConfig, generate
from minigpt.model.gpt import GPT, check_fits_in_memory
from minigpt.runs.events import event
from minigpt.runs.files import run_files
from minigpt.runs.log import logged
from minigpt.train import distributed
from minigpt.train.config import TrainConfig
from minigpt.train.gradflow import GradientFlow
from minigpt.train.muon import muon_optimizer


def lr_at(step: float, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then the decay to cfg.min_lr at max_steps that cfg.schedule names
    (decay_shape). A floor above the peak (--lr below a preset's min_lr) is the peak: the rate
    never rises after warmup.
    A timed run is at a fractional step: max_steps times the share of its time spent
    (Trainer.schedule_step)."""
    min_lr = min(cfg.min_lr, cfg.lr)
    if step < cfg.warmup_steps:
        return cfg.lr * min(step + 1, cfg.warmup_steps) / cfg.warmup_steps
    if step >= cfg.max_steps:
        return min_lr
    progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
    return min_lr + decay_shape(progress, cfg) * (cfg.lr - min_lr)


def decay_shape(progress: float, cfg: TrainConfig) -> float:
    """After warmup, where the rate is between min_lr (0) and the peak (1), `progress` (0 to 1)
    of the way to the end of the run: cfg.schedule "cosine", or "wsd" (warmup-stable-decay): the
    peak, then a straight line down over the last cfg.decay_fraction of the way."""
    if cfg.schedule == "wsd":
        return min(1.0, (1.0 - progress) / cfg.decay_fraction)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


@dataclass
class PreparedData:
    """What a run trains on: the tokenizer, the tokens split in two, and where they came from."""

    tokenizer: Tokenizer
    tokens: TokenData
    source: str  # what the user named: "builtin", a path, a URL
    description: str  # for people
    key: str | None = None  # the prepared data's cache key (prepare.py); None for text in memory


def load_prepared(source: Source, cfg: TrainConfig, tokenizer: Tokenizer | None = None,
                  on_event=None) -> PreparedData:
    """A source's prepared data (made once, then found in the cache), memory-mapped and split."""
    prepared = prepare(source, cfg.tokenizer, cfg.bpe_vocab_size, tokenizer, on_event)
    return PreparedData(prepared.tokenizer,
                        prepared.tokens(cfg.val_fraction, cfg.model.block_size),
                        source.name, source.description, prepared.key)


def check_resume_data(checkpoint: Checkpoint, data: PreparedData) -> None:
    """--resume continues on the data the run trained on: refused when the prepared data differs
    (another corpus, or the same file changed since). Checkpoints from before keys were kept pass."""
    recorded = checkpoint.meta.get("data_key")
    if recorded and data.key and recorded != data.key:
        was = checkpoint.meta.get("data") or checkpoint.meta.get("data_source") or "other data"
        raise DataError(f"--resume: {checkpoint.path} trained on {was}, and {data.source} is not "
                        "that data (or it changed since); resume on that data, or start a new "
                        "run with --init")


class Throughput:
    """The steps since the last logged one: their summed loss, how many there were, their tokens,
    and when the window opened; a logged step reads it and opens the next window. The losses stay
    on the device until then: reading a number off a GPU waits for it, and doing that every step
    would stall the queue of kernels."""

    def __init__(self, clock: Callable[[], float] = time.perf_counter) -> None:
        self.clock = clock
        self.restart(clock())

    def restart(self, now: float) -> None:
        self.loss, self.steps, self.tokens, self.start = 0.0, 0, 0, now

    def restart_clock(self) -> None:
        """Count tokens/s from now (after an evaluation, a save or a pause, which are not
        slowness); the losses stay in the window."""
        self.tokens, self.start = 0, self.clock()

    def add(self, loss: torch.Tensor, tokens: int) -> None:
        self.loss += loss
        self.steps += 1
        self.tokens += tokens

    def mean_loss(self) -> float:
        return float(self.loss) / self.steps

    def tokens_per_s(self, now: float) -> float:
        return self.tokens / max(now - self.start, 1e-9)


class Trainer:
    """One training run. Trainer(cfg, data) trains a new model; Trainer.resume(checkpoint, data)
    continues a saved run exactly where it stopped; Trainer.finetune(start, cfg, data) trains a
    saved model further (cfg from finetune.py). run() is the loop, as a generator of events."""

    def __init__(self, cfg: TrainConfig, data: PreparedData, device: str | torch.device | None = None,
                 run_dir: str | os.PathLike | None = None,
                 checkpoint_path: str | os.PathLike | None = None,
                 dtype: str = "auto", compile: bool = False, *, weights: dict | None = None):
        """weights: a saved model's state dict to start from (Trainer.resume and Trainer.finetune
        pass it); without it the model starts from random weights."""
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.data = data
        # the model's vocabulary is the tokenizer's, whatever the preset said; a model that starts
        # from saved weights keeps its own (an imported GPT-2's may be padded past its tokenizer's)
        if weights is None:
            cfg = cfg.with_overrides(vocab_size=data.tokenizer.vocab_size)
        self.cfg = cfg

        # where the run is written: events.jsonl in run_dir, the checkpoint at checkpoint_path
        self.run_dir = Path(run_dir) if run_dir else None
        if checkpoint_path is not None:
            self.checkpoint_path = Path(checkpoint_path)
        else:
            self.checkpoint_path = run_files(self.run_dir).checkpoint if self.run_dir else None
        if not distributed.is_main():  # under DDP only rank 0 writes events and checkpoints
            self.run_dir, self.checkpoint_path = None, None
        # where the starting weights came from, kept in the run's checkpoints for `minigpt info`
        self.origin: str | None = None

        # the run's clock (a fake one in tests): the time a timed run has spent, and the events'
        # elapsed seconds; see time_spent below
        self.clock = time.perf_counter
        self.time_spent_before = 0.0  # in the runs this one resumes
        self._clock_started: float | None = None
        self._paused_seconds = 0.0
        self.schedule_time = 0.0  # the time_spent that a timed run's schedule is at (_read_clock)
        self.eval_seconds = 0.0  # the last evaluation's (and its save's): a timed run keeps as much
        self.finished = False  # the run reached its end (not stopped): a timed one spent its time

        # control from outside (see request_stop and the others below)
        self._stop_reason: str | None = None
        self._stop_why: str | None = None
        self._save_requested = False
        self._paused = False
        # True while a step or an evaluation runs: the only time a second Ctrl-C may interrupt
        # (a checkpoint write never is); an evaluation, which changes nothing, is cut short at once
        # by a stop request (see console.RunSignals)
        self.interruptible = False
        self.evaluating = False

        # the model, and what the training step runs
        torch.manual_seed(self.cfg.seed)
        check_fits_in_memory(self.cfg.model, self.device)  # a huge --n-layer: refused up front
        self.model = GPT(self.cfg.model).to(self.device)
        if weights is not None:
            self.model.load_state_dict(weights)
        # under DDP a wrapper that averages gradients over processes in backward; self.model stays
        # the plain module (evaluation, sampling, checkpoints: they keep GPT-2's names)
        self.train_model = distributed.wrap(self.model)
        if compile:
            self.train_model = CompiledOrEager(self.train_model)
        # the precision the matmuls run in (Muon's Newton-Schulz too)
        self.precision = resolve_precision(self.device, dtype)
        self.autocast = autocast_for(self.device, self.precision)
        self.optimizer = muon_optimizer(self.model, self.cfg, self.precision) \
            if self.cfg.optimizer == "muon" else \
            self.model.configure_optimizer(self.cfg.weight_decay, self.cfg.lr,
                                           (self.cfg.beta1, self.cfg.beta2), self.device.type)
        # each layer's gradient norm and update ratio, measured on the logged steps only
        self.gradient_flow = GradientFlow(self.model)
        self.measure_gradient_flow = True  # False: not measured (benchmarks/bench_gradflow.py)

        # the batches and the counts. Batches come from their own generator so that evaluation
        # and sampling, which use others, never change which batches training sees. Under DDP each
        # process draws its own, and the global batch is every process's micro-batches together.
        self.world = distributed.world()
        self.batch_generator = torch.Generator().manual_seed(self.cfg.seed + self.world.rank)
        self.tokens_per_step = self.cfg.tokens_per_step * self.world.size
        self.step = 0
        self.tokens_seen = 0
        self.last_eval: dict = {}
        self.last_eval_step: int | None = None  # the step last_eval's losses were measured at
        self.saved_step: int | None = None  # the step of the last checkpoint this run wrote
        # whether every loss and gradient norm so far was finite: a flag kept on the device and
        # read only when a step is logged or saved, so that checking costs no wait on a GPU
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)

        # the peak that MFU measures the steps' FLOP/s against
        allow_tf32(self.device)
        self.flops_per_token = self.model.flops_per_token()
        peak = peak_flops(self.device, self.precision)
        self.peak_flops = peak * self.world.size if peak else None

    @classmethod
    def resume(cls, checkpoint: Checkpoint, data: PreparedData, cfg: TrainConfig | None = None,
               **options) -> Trainer:
        """Continue the run saved in `checkpoint` where it stopped: its weights, optimizer state,
        step and random generators, so the losses are the uninterrupted run's. cfg: the run's own
        settings (the checkpoint's, by default; with another max_steps or eval_interval)."""
        check_resume_data(checkpoint, data)
        trainer = cls(cfg or checkpoint.train_config, data, weights=checkpoint.state_dict, **options)
        trainer.origin = checkpoint.meta.get("source")
        trainer._restore(checkpoint.train_state or {}, checkpoint.path)
        return trainer

    @classmethod
    def finetune(cls, start: Checkpoint, cfg: TrainConfig, data: PreparedData,
                 **options) -> Trainer:
        """A new run that trains the model saved in `start` further: cfg keeps its shape (see
        finetune.finetune_config and fit_to_context), the optimizer and the step start afresh."""
        trainer = cls(cfg, data, weights=start.state_dict, **options)
        trainer.origin = "; ".join(filter(None, [f"fine-tuned from {start.path}",
                                                 start.meta.get("source")]))
        return trainer

    # --- control from outside (signal handlers, the TUI) -------------------------------------------

    def request_stop(self, reason: str = "stopped", why: str | None = None) -> None:
        """Finish the current step, save a checkpoint and end the run. why: what asked, for the
        done event ("SIGTERM", "SIGHUP: the terminal closed")."""
        self._stop_reason = reason
        self._stop_why = why

    def request_save(self) -> None:
        """Save a checkpoint after the current step."""
        self._save_requested = True

    @property
    def paused(self) -> bool:
        return self._paused

    def request_pause(self, paused: bool) -> None:
        """Hold (or release) the run after the current step; a stop request still ends it."""
        self._paused = paused

    # --- the run's length: steps, or a time --------------------------------------------------------

    @property
    def timed(self) -> bool:
        return self.cfg.time_budget is not None

    def time_spent(self) -> float:
        """Seconds the run has trained since its first start (each resume adds its own):
        evaluations and saving count, pauses do not."""
        if self._clock_started is None:
            return self.time_spent_before
        return (self.time_spent_before + self.clock() - self._clock_started
                - self._paused_seconds)

    def time_for_steps(self) -> float:
        """A timed run's time for training steps: its budget less the final evaluation's time
        (as long as the last evaluation took, at most half the budget)."""
        budget = self.cfg.time_budget
        return budget - min(self.eval_seconds, budget / 2)

    def _read_clock(self) -> None:
        """Once a step, the time a timed run's schedule and end go by: the processes' mean
        time_spent, so that all set the same learning rate and stop at the same step."""
        if self.timed:
            self.schedule_time = distributed.all_reduce_mean(self.time_spent())

    def schedule_step(self) -> float:
        """Where the run is in its learning-rate schedule, in steps (lr_at): the step, or for a
        timed run max_steps times the share of its steps' time spent."""
        if not self.timed:
            return self.step
        return self.cfg.max_steps * min(self.schedule_time / self.time_for_steps(), 1.0)

    def reached_end(self) -> bool:
        if self.timed:
            return self.schedule_time >= self.time_for_steps()
        return self.step >= self.cfg.max_steps

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> Iterator[dict]:
        """The run's events; with a run directory, also appended to its events.jsonl."""
        yield from logged(self._loop(), self.run_dir)

    def _loop(self) -> Iterator[dict]:
        cfg = self.cfg
        started = self._clock_started = self.clock()
        self._paused_seconds = 0.0
        yield event("start", step=self.step, max_steps=cfg.max_steps,
                    time_budget=cfg.time_budget, time_spent=self.time_spent_before,
                    config=cfg.to_dict(),
                    device=describe_device(self.device), precision=self.precision,
                    peak_flops=self.peak_flops, params=self.model.num_params(),
                    data=self.data.description, data_source=self.data.source,
                    data_key=self.data.key,
                    tokenizer=self.data.tokenizer.kind, vocab_size=self.data.tokenizer.vocab_size,
                    train_tokens=len(self.data.tokens.train), val_tokens=len(self.data.tokens.val),
                    compiled=isinstance(self.train_model, CompiledOrEager),
                    run_dir=str(self.run_dir) if self.run_dir else None, pid=os.getpid(),
                    world_size=self.world.size)
        slow = self.slow_step_warning()
        if slow:
            yield event("note", step=self.step, message=slow)

        train_seconds = 0.0
        tokens_before = self.tokens_seen  # a resumed run's earlier tokens are not this start's
        window = Throughput(self.clock)
        reason = "finished"
        final_eval_seconds = None
        compile_failure_noted = False
        try:
            if self.step == 0:  # a new run: the untrained model's losses first
                began = self.clock()
                yield from self._evaluate()
                self.eval_seconds = distributed.all_reduce_mean(self.clock() - began)
                window.restart_clock()  # the first window's tokens/s leaves the evaluation out
            self._read_clock()
            last = self.step > 0 and self.reached_end()  # every run trains at least one step
            while not last:
                # every process stops at the same step, whichever one was asked to
                if distributed.any_rank(self._stop_reason is not None):
                    reason = self._stop_reason or "stopped"
                    break
                t0 = time.perf_counter()
                self.interruptible = True
                step_loss, grad_norm, lr = self._train_step()
                self.interruptible = False
                train_seconds += time.perf_counter() - t0
                self._finite &= torch.isfinite(step_loss) & torch.isfinite(grad_norm)
                failure = getattr(self.train_model, "failure", None)
                if failure and not compile_failure_noted:  # said once, at the step it happened
                    compile_failure_noted = True
                    yield event("note", step=self.step,
                                message=f"torch.compile failed, training without it: {failure}")
                window.add(step_loss, self.tokens_per_step)
                self._read_clock()
                last = self.finished = self.reached_end()

                if self.logs(self.step) or last:
                    yield self._step_event(window, lr, grad_norm, started)
                if self.step % cfg.eval_interval == 0 or last:
                    began = self.clock()
                    yield from self._evaluate()
                    yield self._save()
                    self.eval_seconds = distributed.all_reduce_mean(self.clock() - began)
                    if last:
                        final_eval_seconds = self.eval_seconds
                    window.restart_clock()
                elif self._save_requested:
                    yield self._save()
                    window.restart_clock()
                if self._paused and not self._stop_reason:
                    yield from self._wait_while_paused()
                    window.restart_clock()
        except KeyboardInterrupt:  # a second Ctrl-C, during a step or an evaluation
            reason = "interrupted"
        finally:
            self.interruptible = False

        if reason != "finished" and self.saved_step != self.step:  # not twice at one step
            yield self._save()
        losses = self.losses_now()
        tokens = self.tokens_seen - tokens_before
        yield event("done", step=self.step, reason=reason,
                    signal=self._stop_why if reason != "finished" else None,
                    train_loss=losses.get("train_loss"), val_loss=losses.get("val_loss"),
                    tokens_per_s=tokens / train_seconds if train_seconds else 0.0,
                    elapsed=self.clock() - started, time_spent=self.time_spent(),
                    final_eval_seconds=final_eval_seconds,
                    checkpoint=str(self.checkpoint_path) if self.checkpoint_path else None)

    def logs(self, step: int) -> bool:
        """Whether the step that ends at `step` is logged: every log_interval, and step 1 too,
        whatever log_interval says (a new run has a loss on screen at once), and the last."""
        return step % self.cfg.log_interval == 0 or step in (1, self.cfg.max_steps)

    def _step_event(self, window: Throughput, lr: float, grad_norm: torch.Tensor,
                    started: float) -> dict:
        """The logged step: the window's mean loss and speed; the next window opens."""
        cfg = self.cfg
        self._check_finite()
        # the loss of the global batch: the mean over processes of each one's mean
        # (reading it waits for the device, so the clock is read after)
        loss = distributed.all_reduce_mean(window.mean_loss())
        now = self.clock()
        elapsed = self.clock() - started
        tokens_per_s = window.tokens_per_s(now)
        flops_per_s = tokens_per_s * self.flops_per_token
        window.restart(now)
        flow = self.gradient_flow.read()  # measured in this step: one read off the device
        by_layer = {"grad_norms": flow[0], "update_ratios": flow[1]} if flow else {}
        return event("step", step=self.step, max_steps=cfg.max_steps,
                     loss=loss, lr=lr, grad_norm=float(grad_norm),
                     tokens_per_s=tokens_per_s, flops_per_s=flops_per_s,
                     mfu=flops_per_s / self.peak_flops if self.peak_flops else None,
                     elapsed=elapsed, time_spent=self.time_spent(), **by_layer)

    def _check_finite(self, what: str = "") -> None:
        """Stop the run, saving nothing, once a loss or a gradient norm was NaN or infinite."""
        if bool(self._finite):
            return
        if self.saved_step is not None:
            kept = f"the last good checkpoint, {self.checkpoint_path} at step {self.saved_step}, is kept"
        elif self.checkpoint_path is not None and self.checkpoint_path.exists():
            kept = f"{self.checkpoint_path} is kept as it was"
        else:
            kept = "nothing was saved"
        raise TrainingDiverged(
            f"training diverged by step {self.step}: {what or 'the loss or the gradients'} became "
            f"NaN or infinite (learning rate {self.optimizer.param_groups[0]['lr']:.3g}); {kept}. "
            "A lower --lr usually helps")

    def slow_step_warning(self, limit_s: float = 60.0) -> str | None:
        """A warning when one optimizer step would take minutes (a huge context or batch): the
        FLOPs it needs against what this device's matmuls measurably do (or its peak, on GPUs)."""
        flops = self.flops_per_token * self.cfg.tokens_per_step
        if flops < 1e12:  # under a second or so anywhere: not worth measuring
            return None
        rate = self.peak_flops / self.world.size * 0.5 if self.peak_flops else \
            measured_matmul_flops(self.device, self.precision)
        seconds = flops / rate
        if seconds < limit_s:
            return None
        return (f"one step of {self.cfg.tokens_per_step:,} tokens at context "
                f"{self.cfg.model.block_size:,} needs about {flops:.2g} FLOPs: about "
                f"{_duration(seconds)} per step at this device's {rate / 1e9:,.0f} GFLOP/s "
                "(a smaller --block-size or --batch-size is faster)")

    def _wait_while_paused(self) -> Iterator[dict]:
        began = self.clock()
        yield event("paused", step=self.step)
        while self._paused and not self._stop_reason:
            if self._save_requested:
                yield self._save()
            time.sleep(0.1)
        self._paused_seconds += self.clock() - began  # a pause spends none of a timed run's time
        yield event("resumed", step=self.step)

    def _train_step(self) -> tuple[torch.Tensor, torch.Tensor, float]:
        """One optimizer step: this process's mean loss and the gradient norm (both tensors, left
        on the device), and the learning rate."""
        cfg = self.cfg
        lr = lr_at(self.schedule_step(), cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        total = torch.zeros((), device=self.device)
        for micro_step in range(cfg.grad_accum):
            x, y = get_batch(self.data.tokens.train, cfg.batch_size, cfg.model.block_size,
                             self.batch_generator, self.device)
            # under DDP, gradients are averaged over processes once, in the last micro-step
            last = micro_step == cfg.grad_accum - 1
            with nullcontext() if last or self.world.size == 1 else self.train_model.no_sync():
                with self.autocast:
                    _, loss = self.train_model(x, y)
                # each micro-batch contributes its share of the mean over the whole step
                (loss / cfg.grad_accum).backward()
            total += loss.detach()
        measured = self.measure_gradient_flow and self.logs(self.step + 1)
        if measured:  # before clipping, as grad_norm is
            self.gradient_flow.grads()
            self.gradient_flow.before()
        # clip_grad_norm_ returns the norm before clipping; an infinite bound only measures it
        max_norm = cfg.grad_clip if cfg.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), max_norm)
        self.optimizer.step()
        if measured:
            self.gradient_flow.after()
        self.optimizer.zero_grad(set_to_none=True)
        self.step += 1
        self.tokens_seen += self.tokens_per_step
        return total / cfg.grad_accum, grad_norm, lr

    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float] | None:
        """Mean loss over eval_iters batches of each split; the same batches every time. None when
        a stop was asked for in the middle: a stop never waits for an evaluation."""
        cfg = self.cfg
        self.model.eval()
        losses = {}
        self.interruptible = self.evaluating = True
        try:
            for split, data in (("train", self.data.tokens.train), ("val", self.data.tokens.val)):
                generator = torch.Generator().manual_seed(cfg.seed + 1)
                total = 0.0
                for _ in range(cfg.eval_iters):
                    if self._stop_reason is not None:
                        return None
                    x, y = get_batch(data, cfg.batch_size, cfg.model.block_size, generator,
                                     self.device)
                    with self.autocast:
                        _, loss = self.model(x, y)
                    total += loss.item()
                losses[split] = total / cfg.eval_iters
        except KeyboardInterrupt:  # raised by a stop request's signal handler
            if self._stop_reason is None:
                raise
            return None
        finally:
            self.interruptible = self.evaluating = False
            self.model.train()
        return losses

    def _evaluate(self) -> Iterator[dict]:
        losses = self.estimate_loss()
        if losses is None:
            return
        if not all(math.isfinite(v) for v in losses.values()):
            self._finite.fill_(False)
            self._check_finite("the evaluation loss")
        self.last_eval = {"train_loss": losses["train"], "val_loss": losses["val"]}
        self.last_eval_step = self.step
        yield event("eval", step=self.step, **self.last_eval)
        if self.cfg.sample_tokens > 0:
            yield event("sample", step=self.step, text=self.sample_text(self.cfg.sample_tokens))

    def sample_text(self, n_tokens: int, seed: int | None = None) -> str:
        """A continuation of the validation text's first token, for watching the model learn."""
        prompt = self.data.tokens.val[:1].tolist()
        generator = torch.Generator(device=self.device).manual_seed(
            self.cfg.seed if seed is None else seed)
        cfg = SamplingConfig(strategy="top-k", temperature=0.8, top_k=40, max_new_tokens=n_tokens)
        ids = prompt + [t.id for t in generate(self.model, prompt, cfg, generator,
                                               vocab_size=self.data.tokenizer.vocab_size)]
        return self.data.tokenizer.decode(ids)

    # --- checkpoints ------------------------------------------------------------------------------

    def train_state(self) -> dict:
        spent = self.time_spent()
        if self.timed and self.finished:  # at its end a timed run has spent all its time
            spent = max(spent, self.cfg.time_budget)
        state = {
            "step": self.step,
            "tokens_seen": self.tokens_seen,
            "time_spent": spent,
            "eval_seconds": self.eval_seconds,
            "optimizer": self.optimizer.state_dict(),
            "batch_rng": self.batch_generator.get_state(),
            "torch_rng": torch.get_rng_state(),
        }
        if self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state(self.device)
        return state

    def _restore(self, state: dict, path=None) -> None:
        """The training state of a checkpoint (its types checked by load_checkpoint); one that
        does not fit this model is a CheckpointError naming the file, before any step."""
        self.step = int(state.get("step", 0))
        self.tokens_seen = int(state.get("tokens_seen", 0))
        self.time_spent_before = float(state.get("time_spent", 0.0))
        self.eval_seconds = float(state.get("eval_seconds", 0.0))
        if "optimizer" in state:
            try:
                self.optimizer.load_state_dict(state["optimizer"])
                for group in self.optimizer.param_groups:  # load_state_dict checks counts only
                    for p in group["params"]:
                        for name, value in self.optimizer.state.get(p, {}).items():
                            if name != "step" and (not isinstance(value, torch.Tensor)
                                                   or value.shape != p.shape):
                                raise ValueError(f"its {name} does not match a weight of shape "
                                                 f"{list(p.shape)}")
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                raise CheckpointError(f"{path}: its optimizer state does not fit the model "
                                      f"({str(e).strip().splitlines()[0]})") from None
        try:
            if "batch_rng" in state:
                self.batch_generator.set_state(state["batch_rng"].cpu())
                if self.world.rank > 0:  # the checkpoint holds rank 0's; the others draw afresh
                    self.batch_generator.manual_seed(self.cfg.seed + self.world.rank + 7919 * self.step)
            if "torch_rng" in state:
                torch.set_rng_state(state["torch_rng"].cpu())
            if "cuda_rng" in state and self.device.type == "cuda":
                torch.cuda.set_rng_state(state["cuda_rng"].cpu(), self.device)
        except RuntimeError:
            raise CheckpointError(f"{path}: its training state holds a random generator state "
                                  "of the wrong size") from None

    def losses_now(self) -> dict:
        """The last evaluation's losses where they are the model's as it is now (measured at
        this step), else none: a run stopped or saved between two evaluations, or during one,
        has no loss to report, and its step-0 losses said as its last ones were a model that
        looked untrained."""
        return self.last_eval if self.last_eval_step == self.step else {}

    def save(self, path: str | os.PathLike | None = None) -> Path:
        """Write a checkpoint; refused (TrainingDiverged) once the run has gone non-finite."""
        path = Path(path) if path else self.checkpoint_path
        if path is None:
            raise ConfigError("no run directory and no path to save the checkpoint to")
        self._check_finite()
        meta = {"step": self.step, "tokens_seen": self.tokens_seen,
                "data": self.data.description, "data_source": self.data.source,
                "data_key": self.data.key,
                **self.losses_now()}
        if self.origin:
            meta["source"] = self.origin
        saved = save_checkpoint(path, self.model, self.data.tokenizer, self.cfg,
                                self.train_state(), meta)
        if path == self.checkpoint_path:
            self.saved_step = self.step
        return saved

    def _save(self) -> dict:
        self._save_requested = False
        if self.checkpoint_path is None:
            return event("checkpoint", step=self.step, path=None)
        return event("checkpoint", step=self.step, path=str(self.save()))


def _duration(seconds: float) -> str:
    """'45 s', '12 min', '3.5 h'."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
