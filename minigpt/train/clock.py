"""A run's time: how long it has trained, what a timed run's schedule and end go by, and the
pace of its steps.

A run is as long as its steps (cfg.max_steps) or its time (cfg.time_budget, `--time 5m`). A timed
run's time counts the evaluations and the final one (it keeps as long as the last evaluation took
for it), not pauses, and adds up over resumes; max_steps then only maps the clock onto the
learning-rate schedule (schedule.lr_at), and is no limit.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from minigpt.train import distributed


class RunClock:
    """The time a run has spent training, read from `clock` (a fake one in tests)."""

    def __init__(self, budget: float | None, clock: Callable[[], float] = time.perf_counter):
        self.budget = budget  # a timed run's seconds in all; None: it ends at max_steps
        self.clock = clock
        self.spent_before = 0.0  # in the runs this one resumes
        self.eval_seconds = 0.0  # the last evaluation's (and its save's): kept for the final one
        self.schedule_time = 0.0  # the spent time a timed run's schedule is at (read())
        self._started: float | None = None
        self._paused = 0.0

    @property
    def timed(self) -> bool:
        return self.budget is not None

    def start(self) -> float:
        self._started, self._paused = self.clock(), 0.0
        return self._started

    def spent(self) -> float:
        """Seconds trained since the run's first start (each resume adds its own): evaluations
        and saving count, pauses do not."""
        if self._started is None:
            return self.spent_before
        return self.spent_before + self.clock() - self._started - self._paused

    def paused_for(self, seconds: float) -> None:
        self._paused += seconds  # a pause spends none of a timed run's time

    def for_steps(self) -> float:
        """A timed run's time for training steps: its budget less the final evaluation's time
        (as long as the last evaluation took, at most half the budget)."""
        return self.budget - min(self.eval_seconds, self.budget / 2)

    def read(self) -> None:
        """Once a step, the time a timed run's schedule and end go by: the processes' mean spent
        time, so that all set the same learning rate and stop at the same step."""
        if self.timed:
            self.schedule_time = distributed.all_reduce_mean(self.spent())

    def schedule_step(self, step: int, max_steps: int) -> float:
        """Where the run is in its schedule, in steps: the step, or for a timed run max_steps
        times the share of its steps' time spent."""
        if not self.timed:
            return step
        return max_steps * min(self.schedule_time / self.for_steps(), 1.0)

    def reached_end(self, step: int, max_steps: int) -> bool:
        if self.timed:
            return self.schedule_time >= self.for_steps()
        return step >= max_steps


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
        self.metrics: dict = {}  # the objective's other measures, summed like the loss

    def restart_clock(self) -> None:
        """Count tokens/s from now (after an evaluation, a save or a pause, which are not
        slowness); the losses stay in the window."""
        self.tokens, self.start = 0, self.clock()

    def add(self, loss, tokens: int, metrics: dict | None = None) -> None:
        self.loss += loss
        self.steps += 1
        self.tokens += tokens
        for name, value in (metrics or {}).items():
            self.metrics[name] = self.metrics.get(name, 0.0) + value

    def mean_loss(self) -> float:
        return float(self.loss) / self.steps

    def mean_metrics(self) -> dict[str, float]:
        return {name: float(total) / self.steps for name, total in self.metrics.items()}

    def tokens_per_s(self, now: float) -> float:
        return self.tokens / max(now - self.start, 1e-9)
