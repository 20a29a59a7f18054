"""A saved model ready to sample from: loaded once onto a device, its weights held as asked.

`minigpt generate`, `minigpt chat` and the TUI's Chat pane all load models through
load_for_inference; sampling.py then turns the model's logits into text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.checkpoint import load_checkpoint
from minigpt.errors import ConfigError
from minigpt.hardware import describe_device, pick_device
from minigpt.model import GPT
from minigpt.quantize import WEIGHT_FORMATS, convert_weights
from minigpt.tokenizer import Tokenizer


@dataclass
class InferenceModel:
    model: GPT  # in eval mode, its weights converted to `weights` (see quantize.py)
    tokenizer: Tokenizer
    path: Path  # the checkpoint file
    device: torch.device
    weights: str  # fp32, bf16 or int8
    params: int  # counted before int8 turns weights into buffers
    step: int  # the training step the checkpoint was saved at

    def describe(self) -> str:
        """'0.21M params, char 65 tokens, context 64, step 40, cpu (2 threads), fp32 weights'."""
        return (f"{self.params / 1e6:.2f}M params, {self.tokenizer.kind} "
                f"{self.tokenizer.vocab_size} tokens, context {self.model.config.block_size}, "
                f"step {self.step}, {describe_device(self.device)}, {self.weights} weights")


def check_weight_format(weights: str) -> None:
    if weights not in WEIGHT_FORMATS:
        raise ConfigError(f"--weights must be one of {', '.join(WEIGHT_FORMATS)}, got {weights!r}")


def load_for_inference(path: str | os.PathLike, device: str | None = None,
                       weights: str = "fp32") -> InferenceModel:
    """The checkpoint at path (a file or a run directory) on `device` (the best available when
    None), in eval mode, with its weights in fp32, bf16 or int8."""
    check_weight_format(weights)
    torch_device = pick_device(device)
    checkpoint = load_checkpoint(path, map_location=torch_device)  # (refuses NaN weights)
    model = checkpoint.build_model(torch_device).eval()
    params = model.num_params()
    return InferenceModel(convert_weights(model, weights), checkpoint.tokenizer, checkpoint.path,
                          torch_device, weights, params, checkpoint.step)
