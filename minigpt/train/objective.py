"""What a training step minimizes, asked of the objective the run's settings name: a batch in,
the loss and what else to log out. The Trainer runs every objective the same way; only this
differs.

    "lm", "sft"  the next token's cross-entropy on the targets (the model's own loss); instruction
                 tuning's data sets the targets of everything but the assistant's turns to -1
    "dpo"        preference tuning against the starting model, frozen (train/dpo.py)
"""

from __future__ import annotations

import torch


class NextToken:
    """The language model's loss: cross-entropy of each target (-1: none) given what precedes."""

    def loss(self, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        _, loss = model(x, y)
        return loss, {}


def objective_for(cfg, model: torch.nn.Module):
    """The objective cfg.objective names; DPO's reference is `model` as it is now, before any
    step (the model the run starts from)."""
    if cfg.objective == "dpo":
        from minigpt.train.dpo import DPO

        return DPO.from_model(model, cfg.beta)
    return NextToken()
