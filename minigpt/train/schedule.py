"""The learning rate over a run: linear warmup, then a cosine or warmup-stable-decay (WSD) decay.

A timed run is at a fractional step of its schedule: max_steps times the share of its time spent
(train/clock.py), so its rate warms up and decays on the clock.
"""

from __future__ import annotations

import math

from minigpt.train.config import TrainConfig


def lr_at(step: float, cfg: TrainConfig) -> float:
    """Linear warmup to cfg.lr, then the decay to cfg.min_lr at max_steps that cfg.schedule names
    (decay_shape). A floor above the peak (--lr below a preset's min_lr) is the peak: the rate
    never rises after warmup."""
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
