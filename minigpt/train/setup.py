"""What a training run is made of, each built here: the model and what the step runs (DDP,
torch.compile), the precision its matmuls run in, and the optimizer."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from minigpt.backends.compiling import CompiledOrEager
from minigpt.backends.hardware import autocast_for, resolve_precision
from minigpt.model.gpt import GPT, check_fits_in_memory
from minigpt.model.lora import add_lora, split_state, train_token_rows
from minigpt.train import distributed
from minigpt.train.config import TrainConfig
from minigpt.train.muon import muon_optimizer


@dataclass
class TrainedModel:
    model: GPT  # the plain module: evaluation, sampling and checkpoints keep GPT-2's names
    step_model: Any  # what a training step runs: DDP's wrapper, torch.compile's, or the model
    precision: str  # "bf16" or "fp32": the matmuls' (Muon's Newton-Schulz too)
    autocast: Any  # the context forward passes run in


def build_model(cfg: TrainConfig, device: torch.device, weights: dict | None, dtype: str,
                compile: bool, adapters: dict | None = None,
                new_tokens: list[int] | None = None) -> TrainedModel:
    """A new model (random, seeded by cfg.seed) or one holding saved weights; refused up front
    when its training state cannot fit in the device's memory (a huge --n-layer). With
    cfg.lora_r, LoRA adapters beside the target layers, all else frozen (model/lora.py): new
    ones, which change nothing yet, or a resumed run's `adapters`; on conversations (objective
    sft) the embedding rows of new_tokens, the chat template's, train too."""
    torch.manual_seed(cfg.seed)
    check_fits_in_memory(cfg.model, device)
    model = GPT(cfg.model).to(device)
    if weights is not None:
        model.load_state_dict(weights)
    if cfg.lora_r is not None:
        add_lora(model, cfg.lora_r, cfg.lora_alpha, cfg.lora_targets)
        if adapters is not None:
            base, _ = split_state(model)
            model.load_state_dict({**base, **adapters})
        if cfg.objective == "sft" and new_tokens:
            train_token_rows(model, new_tokens)
    # under DDP a wrapper that averages gradients over processes in backward
    step_model = distributed.wrap(model)
    if compile:
        step_model = CompiledOrEager(step_model)
    precision = resolve_precision(device, dtype)
    return TrainedModel(model, step_model, precision, autocast_for(device, precision))


def build_optimizer(model: GPT, cfg: TrainConfig, precision: str,
                    device: torch.device) -> torch.optim.Optimizer:
    """Muon for the blocks' matrices and AdamW for the rest (cfg.optimizer "muon"), or AdamW
    for all, decaying matrices only. Either holds only the parameters that train: a LoRA run's
    adapters, with AdamW (TrainConfig refuses Muon for them: Muon is made for a network's full
    hidden matrices, untried on LoRA's thin factors, and AdamW on a few thousand parameters
    costs nothing)."""
    if cfg.optimizer == "muon":
        return muon_optimizer(model, cfg, precision)
    return model.configure_optimizer(cfg.weight_decay, cfg.lr, (cfg.beta1, cfg.beta2),
                                     device.type)
