"""Training: one run, a generator of events, assembled from parts built elsewhere.

    setup.py      the model, what the step runs (DDP, torch.compile), precision, the optimizer
    data/batches  the batches it draws (its own generator) and the evaluations' fixed ones
    clock.py      the time it has spent, a timed run's budget, the pace of its steps
    schedule.py   the learning rate at each step
    objective.py  what a step minimizes: the next token's loss, or DPO's against a reference
    gradflow.py   each layer's gradient norm and update ratio, on logged steps
    state.py      what a checkpoint carries to resume it exactly

`Trainer.run()` yields the run's events (runs/events.py has their fields). The command line, the
TUI and the tests all consume it; with a run directory it also appends every event to the run's
events file and keeps its checkpoint, saved atomically at each evaluation and at the end.

Reproducible: with the same seed, data and device, two runs give the same losses, and a run
resumed from a checkpoint continues exactly where the uninterrupted run would be, because the
checkpoint carries the optimizer state and every random generator the loop draws from.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path

import torch

from minigpt.backends.compiling import CompiledOrEager
from minigpt.backends.hardware import (
    allow_tf32,
    describe_device,
    measured_matmul_flops,
    peak_flops,
    pick_device,
)
from minigpt.checkpoint import Checkpoint, save_checkpoint
from minigpt.data.prepare import PreparedData
from minigpt.errors import ConfigError, TrainingDiverged
from minigpt.infer.sampling import SamplingConfig, generate
from minigpt.model.lora import trainable_params
from minigpt.runs.events import event
from minigpt.runs.files import run_files
from minigpt.runs.log import logged
from minigpt.train import distributed, state
from minigpt.train.clock import RunClock, Throughput
from minigpt.train.config import TrainConfig
from minigpt.train.gradflow import GradientFlow
from minigpt.train.objective import objective_for
from minigpt.train.schedule import lr_at
from minigpt.train.setup import build_model, build_optimizer
from minigpt.units import rough_duration


class Trainer:
    """One training run. Trainer(cfg, data) trains a new model; Trainer.resume(checkpoint, data)
    continues a saved run exactly where it stopped; Trainer.finetune(start, cfg, data) trains a
    saved model further (cfg from finetune.py). run() is the loop, as a generator of events."""

    def __init__(self, cfg: TrainConfig, data: PreparedData, device: str | torch.device | None = None,
                 run_dir: str | os.PathLike | None = None,
                 checkpoint_path: str | os.PathLike | None = None,
                 dtype: str = "auto", compile: bool = False, *, weights: dict | None = None,
                 adapters: dict | None = None):
        """weights: a saved model's state dict to start from (Trainer.resume and Trainer.finetune
        pass it); without it the model starts from random weights. adapters: a resumed LoRA
        run's (cfg.lora_r; without them its adapters start new). run_dir: the run (a run
        directory or a named run's events file, runs/files.py) its events go to; the checkpoint
        goes to checkpoint_path, else the run's own."""
        self.device = device if isinstance(device, torch.device) else pick_device(device)
        self.data = data
        # the model's vocabulary is the tokenizer's, whatever the preset said; a model that starts
        # from saved weights keeps its own (an imported GPT-2's may be padded past its tokenizer's)
        self.cfg = cfg if weights is not None else \
            cfg.with_overrides(vocab_size=data.tokenizer.vocab_size)
        self.world = distributed.world()
        self.run_dir, self.checkpoint_path = None, None
        if distributed.is_main():  # under DDP only rank 0 writes events and checkpoints
            self.run_dir = Path(run_dir) if run_dir else None
            self.checkpoint_path = Path(checkpoint_path) if checkpoint_path else \
                run_files(self.run_dir).checkpoint if self.run_dir else None
        self.origin: str | None = None  # where the starting weights came from (`minigpt info`)

        chat_tokens = getattr(data.tokenizer, "specials", {}).values()  # data/chat.py's
        built = build_model(self.cfg, self.device, weights, dtype, compile, adapters,
                            new_tokens=sorted(chat_tokens))
        self.model, self.step_model = built.model, built.step_model
        self.precision, self.autocast = built.precision, built.autocast
        self.optimizer = build_optimizer(self.model, self.cfg, self.precision, self.device)
        self.objective = objective_for(self.cfg, self.model)  # before any step: DPO's reference
        self.batches = data.batches(self.cfg.batch_size, self.cfg.model.block_size,
                                    self.cfg.seed, self.device, self.world.rank)
        self.time = RunClock(self.cfg.time_budget)
        self.gradient_flow = GradientFlow(self.model)  # measured on the logged steps only
        self.measure_gradient_flow = True  # False: not measured (benchmarks/bench_gradflow.py)

        # the global batch is every process's micro-batches together
        self.tokens_per_step = self.cfg.tokens_per_step * self.world.size
        self.step = self.tokens_seen = 0
        self.finished = False  # the run reached its end (not stopped): a timed one spent its time
        self.last_eval: dict = {}
        self.last_eval_step: int | None = None  # the step last_eval's losses were measured at
        self.saved_step: int | None = None  # the step of the last checkpoint this run wrote
        # whether every loss and gradient norm so far was finite: a flag kept on the device and
        # read only when a step is logged or saved, so that checking costs no wait on a GPU
        self._finite = torch.ones((), dtype=torch.bool, device=self.device)
        # control from outside (request_stop and the others below). interruptible: a step or an
        # evaluation runs, the only time a second Ctrl-C may cut short (a checkpoint write never
        # is); an evaluation, which changes nothing, is cut short at once by a stop
        # (runs/control.RunSignals)
        self._stop_reason: str | None = None
        self._stop_why: str | None = None
        self._save_requested = self._paused = False
        self.interruptible = self.evaluating = False

        allow_tf32(self.device)
        self.flops_per_token = self.model.flops_per_token()
        peak = peak_flops(self.device, self.precision)  # what MFU measures against
        self.peak_flops = peak * self.world.size if peak else None

    @classmethod
    def resume(cls, checkpoint: Checkpoint, data: PreparedData, cfg: TrainConfig | None = None,
               **options) -> Trainer:
        """Continue the run saved in `checkpoint` where it stopped: its weights, optimizer state,
        step and random generators, so the losses are the uninterrupted run's. cfg: the run's own
        settings (the checkpoint's, by default; with another max_steps or eval_interval)."""
        state.check_resume_data(checkpoint, data)
        trainer = cls(cfg or checkpoint.train_config, data, weights=checkpoint.state_dict,
                      adapters=checkpoint.adapters, **options)
        trainer.origin = checkpoint.meta.get("source")
        state.restore(trainer, checkpoint.train_state or {}, checkpoint.path)
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

    # --- parts named as they were before the Trainer was assembled from parts --------------------

    @property
    def clock(self):
        """The run's clock (RunClock reads it; a test sets a fake one)."""
        return self.time.clock

    @clock.setter
    def clock(self, clock) -> None:
        self.time.clock = clock

    @property
    def batch_generator(self) -> torch.Generator:
        return self.batches.generator

    @property
    def timed(self) -> bool:
        return self.time.timed

    def time_spent(self) -> float:
        return self.time.spent()

    def schedule_step(self) -> float:
        return self.time.schedule_step(self.step, self.cfg.max_steps)

    def reached_end(self) -> bool:
        return self.time.reached_end(self.step, self.cfg.max_steps)

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

    # --- the loop ---------------------------------------------------------------------------------

    def run(self) -> Iterator[dict]:
        """The run's events; with a run directory, also appended to its events file."""
        yield from logged(self._loop(), self.run_dir)

    def _loop(self) -> Iterator[dict]:
        started = self.time.start()
        yield self._start_event()
        slow = self.slow_step_warning()
        if slow:
            yield event("note", step=self.step, message=slow)
        end = _Ending(tokens_before=self.tokens_seen)  # a resumed run's tokens are not this start's
        window = Throughput(self.clock)
        try:
            if self.step == 0:  # a new run: the untrained model's losses first
                yield from self._timed_evaluation()
                window.restart_clock()  # the first window's tokens/s leaves the evaluation out
            self.time.read()
            last = self.step > 0 and self.reached_end()  # every run trains at least one step
            while not last:
                # every process stops at the same step, whichever one was asked to
                if distributed.any_rank(self._stop_reason is not None):
                    end.reason = self._stop_reason or "stopped"
                    break
                last = yield from self._step(window, started, end)
        except KeyboardInterrupt:  # a second Ctrl-C, during a step or an evaluation
            end.reason = "interrupted"
        finally:
            self.interruptible = False
        yield from self._end(end, started)

    def _step(self, window: Throughput, started: float, end: _Ending) -> Iterator[dict]:
        """One optimizer step and what follows it (its event, an evaluation or a requested save,
        a pause); returns whether it was the run's last."""
        t0 = time.perf_counter()
        self.interruptible = True
        step_loss, metrics, grad_norm, lr = self._train_step()
        self.interruptible = False
        end.train_seconds += time.perf_counter() - t0
        self._finite &= torch.isfinite(step_loss) & torch.isfinite(grad_norm)
        failure = getattr(self.step_model, "failure", None)
        if failure and not end.compile_noted:  # said once, at the step it happened
            end.compile_noted = True
            yield event("note", step=self.step,
                        message=f"torch.compile failed, training without it: {failure}")
        window.add(step_loss, self.tokens_per_step, metrics)
        self.time.read()
        last = self.finished = self.reached_end()
        if self.logs(self.step) or last:
            yield self._step_event(window, lr, grad_norm, started)
        if self.step % self.cfg.eval_interval == 0 or last:
            yield from self._timed_evaluation(save=True)
            if last:
                end.final_eval_seconds = self.time.eval_seconds
            window.restart_clock()
        elif self._save_requested:
            yield self._save()
            window.restart_clock()
        if self._paused and not self._stop_reason:
            yield from self._wait_while_paused()
            window.restart_clock()
        return last

    def _timed_evaluation(self, save: bool = False) -> Iterator[dict]:
        """An evaluation (and a save after it), timed: a timed run keeps as long for its final
        one."""
        began = self.clock()
        yield from self._evaluate()
        if save:
            yield self._save()
        self.time.eval_seconds = distributed.all_reduce_mean(self.clock() - began)

    def _start_event(self) -> dict:
        cfg, data = self.cfg, self.data
        return event("start", step=self.step, max_steps=cfg.max_steps,
                     time_budget=cfg.time_budget, time_spent=self.time.spent_before,
                     config=cfg.to_dict(),
                     device=describe_device(self.device), precision=self.precision,
                     peak_flops=self.peak_flops, params=self.model.num_params(),
                     trainable_params=trainable_params(self.model),
                     data=data.description, data_source=data.source, data_key=data.key,
                     tokenizer=data.tokenizer.kind, vocab_size=data.tokenizer.vocab_size,
                     train_tokens=data.sizes()[0], val_tokens=data.sizes()[1],
                     compiled=isinstance(self.step_model, CompiledOrEager),
                     run_dir=str(self.run_dir) if self.run_dir else None, pid=os.getpid(),
                     world_size=self.world.size)

    def _end(self, end: _Ending, started: float) -> Iterator[dict]:
        """A stopped run saves (once at its step); the done event says how it ended."""
        if end.reason != "finished" and self.saved_step != self.step:
            yield self._save()
        losses = self.losses_now()
        tokens = self.tokens_seen - end.tokens_before
        yield event("done", step=self.step, reason=end.reason,
                    signal=self._stop_why if end.reason != "finished" else None,
                    train_loss=losses.get("train_loss"), val_loss=losses.get("val_loss"),
                    tokens_per_s=tokens / end.train_seconds if end.train_seconds else 0.0,
                    elapsed=self.clock() - started, time_spent=self.time.spent(),
                    final_eval_seconds=end.final_eval_seconds,
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
        metrics = {name: distributed.all_reduce_mean(value)
                   for name, value in window.mean_metrics().items()}  # DPO's: margin, accuracy
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
                     elapsed=elapsed, time_spent=self.time_spent(), **by_layer, **metrics)

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
                f"{rough_duration(seconds)} per step at this device's {rate / 1e9:,.0f} GFLOP/s "
                "(a smaller --block-size or --batch-size is faster)")

    def _wait_while_paused(self) -> Iterator[dict]:
        began = self.clock()
        yield event("paused", step=self.step)
        while self._paused and not self._stop_reason:
            if self._save_requested:
                yield self._save()
            time.sleep(0.1)
        self.time.paused_for(self.clock() - began)
        yield event("resumed", step=self.step)

    def _train_step(self) -> tuple[torch.Tensor, dict, torch.Tensor, float]:
        """One optimizer step: this process's mean loss, the objective's other measures (DPO's)
        and the gradient norm (tensors, left on the device), and the learning rate."""
        cfg = self.cfg
        lr = lr_at(self.schedule_step(), cfg)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.model.train()
        total = torch.zeros((), device=self.device)
        measures: dict[str, torch.Tensor] = {}
        for micro_step in range(cfg.grad_accum):
            batch = self.batches.train()
            # under DDP, gradients are averaged over processes once, in the last micro-step
            last = micro_step == cfg.grad_accum - 1
            with nullcontext() if last or self.world.size == 1 else self.step_model.no_sync():
                with self.autocast:
                    loss, metrics = self.objective.loss(self.step_model, batch)
                # each micro-batch contributes its share of the mean over the whole step
                (loss / cfg.grad_accum).backward()
            total += loss.detach()
            for name, value in metrics.items():
                measures[name] = measures.get(name, 0) + value / cfg.grad_accum
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
        return total / cfg.grad_accum, measures, grad_norm, lr

    @torch.no_grad()
    def estimate_loss(self) -> dict[str, float] | None:
        """Mean loss over eval_iters batches of each split ("train", "val"), and the objective's
        other measures on the validation batches (DPO's "accuracy", "margin", "kl"); the same
        batches every time. None when a stop was asked for in the middle: a stop never waits for
        an evaluation."""
        self.model.eval()
        losses: dict[str, float] = {}
        self.interruptible = self.evaluating = True
        try:
            for split in ("train", "val"):
                total = 0.0
                for batch in self.batches.evaluation(split, self.cfg.eval_iters):
                    if self._stop_reason is not None:
                        return None
                    with self.autocast:
                        loss, metrics = self.objective.loss(self.model, batch)
                    total += loss.item()
                    if split == "val":
                        for name, value in metrics.items():
                            losses[name] = losses.get(name, 0.0) + value.item() / self.cfg.eval_iters
                losses[split] = total / self.cfg.eval_iters
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
        self.last_eval = {"train_loss": losses.pop("train"), "val_loss": losses.pop("val")}
        self.last_eval_step = self.step
        yield event("eval", step=self.step, **self.last_eval, **losses)
        if self.cfg.sample_tokens > 0:
            yield event("sample", step=self.step, text=self.sample_text(self.cfg.sample_tokens))

    def sample_text(self, n_tokens: int, seed: int | None = None) -> str:
        """What the model writes after the data's sample prompt (the validation text's first
        token; an instruction-tuned run's first validation question), to watch it learn; an
        answer ends at the chat template's <|end|>."""
        tokenizer = self.data.tokenizer
        prompt = self.data.sample_prompt()
        generator = torch.Generator(device=self.device).manual_seed(
            self.cfg.seed if seed is None else seed)
        cfg = SamplingConfig(strategy="top-k", temperature=0.8, top_k=40, max_new_tokens=n_tokens)
        ids = list(prompt)
        for token in generate(self.model, prompt, cfg, generator, vocab_size=tokenizer.vocab_size):
            ids.append(token.id)
            if token.id == getattr(tokenizer, "end", None):
                break
        return tokenizer.decode(ids)

    # --- checkpoints ------------------------------------------------------------------------------

    def train_state(self) -> dict:
        return state.capture(self)

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
        # a LoRA run saved merged has no adapters left to resume: its checkpoint is weights only
        resumable = self.cfg.lora_r is None or self.cfg.lora_keep
        saved = save_checkpoint(path, self.model, self.data.tokenizer, self.cfg,
                                self.train_state() if resumable else None, meta)
        if path == self.checkpoint_path:
            self.saved_step = self.step
        return saved

    def _save(self) -> dict:
        self._save_requested = False
        if self.checkpoint_path is None:
            return event("checkpoint", step=self.step, path=None)
        return event("checkpoint", step=self.step, path=str(self.save()))



class _Ending:
    """How the loop ended, gathered on its way: the reason, the steps' own time and tokens, the
    final evaluation's time."""

    def __init__(self, tokens_before: int):
        self.reason = "finished"
        self.tokens_before = tokens_before
        self.train_seconds = 0.0
        self.final_eval_seconds: float | None = None
        self.compile_noted = False
