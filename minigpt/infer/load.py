"""A saved model ready to sample from: loaded once onto a device, its weights held as asked.

`minigpt generate`, `minigpt chat` and the TUI's Chat pane all load models through
load_for_inference; sampling.py then turns the model's logits into text.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import torch

from minigpt.backends import cpu, kernels
from minigpt.backends.hardware import describe_device, has_native_bf16, pick_device
from minigpt.checkpoint import load_checkpoint
from minigpt.data.tokenizer import Tokenizer
from minigpt.errors import ConfigError
from minigpt.infer.quantize import WEIGHT_FORMATS, convert_weights
from minigpt.model.gpt import GPT


@dataclass
class InferenceModel:
    model: GPT  # in eval mode, its weights converted to `weights` (see quantize.py)
    tokenizer: Tokenizer
    path: Path  # the checkpoint file
    device: torch.device
    weights: str  # fp32, bf16 or int8
    params: int  # counted before int8 turns weights into buffers
    step: int  # the training step the checkpoint was saved at
    asked: str = ""  # the weights asked for: "auto" where this device decided them

    def describe(self) -> str:
        """'0.21M params, char 65 tokens, context 64, step 40, cpu (2 threads), fp32 weights'."""
        return (f"{self.params / 1e6:.2f}M params, {self.tokenizer.kind} "
                f"{self.tokenizer.vocab_size} tokens, context {self.model.config.block_size}, "
                f"step {self.step}, {describe_device(self.device)}, {self.weights_said()}")

    def weights_said(self) -> str:
        """'bf16 weights (auto)': the format, whether the device chose it, and the kernels where
        they are not oneDNN's own choice (onednn.py): 'bf16 weights (auto; AVX-512 BF16 kernels,
        not AMX)'."""
        notes = ["auto"] if self.asked == AUTO else []
        if self.weights == "bf16" and self.device.type == "cpu" and cpu.limited_here():
            notes.append(cpu.SAID)
        notes += kernels.fallbacks()  # a kernel this torch lacks: the plain path runs
        return f"{self.weights} weights" + (f" ({'; '.join(notes)})" if notes else "")


# the default: the fastest format whose cost is negligible, decided by the device (weights_for)
AUTO = "auto"
WEIGHT_CHOICES = (AUTO, *WEIGHT_FORMATS)


def check_weight_format(weights: str) -> None:
    if weights not in WEIGHT_CHOICES:
        raise ConfigError(f"--weights must be one of {', '.join(WEIGHT_CHOICES)}, got {weights!r}")


def weights_for(weights: str, device: torch.device) -> str:
    """The format to hold the weights in: as asked, or for auto, bf16 where the device multiplies
    bf16 natively (GPUs from Ampere on, CPUs with AVX-512 BF16 or AMX) and fp32 elsewhere, where
    bf16 is emulated (on an AVX2-only CPU, bf16 decodes faster but reads a prompt several times
    slower: benchmarks/RESULTS.md, "A third kind of CPU: AVX2 only"). Where it is native, bf16
    decodes faster than fp32 for a perplexity barely changed (with oneDNN's AVX-512 BF16 kernels
    on a CPU with AMX: backends/cpu.py); benchmarks/RESULTS.md has both, by machine. int8 is
    faster still but less exact: a choice, never the default."""
    if weights != AUTO:
        return weights
    return "bf16" if has_native_bf16(device) else "fp32"


def load_for_inference(path: str | os.PathLike, device: str | None = None,
                       weights: str = AUTO) -> InferenceModel:
    """The checkpoint at path (a file or a run directory) on `device` (the best available when
    None), in eval mode, with its weights in fp32, bf16 or int8, or as the device suits (auto)."""
    check_weight_format(weights)
    torch_device = pick_device(device)
    held = weights_for(weights, torch_device)
    checkpoint = load_checkpoint(path, map_location=torch_device)  # (refuses NaN weights)
    model = checkpoint.build_model(torch_device).eval()
    params = model.num_params()
    return InferenceModel(convert_weights(model, held), checkpoint.tokenizer, checkpoint.path,
                          torch_device, held, params, checkpoint.step, asked=weights)
