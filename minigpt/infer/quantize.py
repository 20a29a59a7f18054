"""Smaller weights for faster decoding: bf16, or int8 weight-only quantization.

Decoding one token at batch 1 reads every weight once and does two FLOPs with each, so its speed
is bounded by memory bandwidth, not arithmetic: GPT-2 small reads 497 MB of fp32 weights per token.
bf16 weights halve that. int8 weights quarter it (gpt-fast's weight-only int8): each output
channel of a Linear keeps one scale, w ~= w_int8 * scale, and the activations stay bf16.

How the bytes are read matters as much as how many: at batch 1, PyTorch's own kernels read
weights well below the memory's bandwidth, and oneDNN's read them faster once each weight is laid
out for them ahead of time (PackedLinear; see benchmarks/RESULTS.md, "Fast by default on a CPU
without AMX").

Both are for inference (generate, chat); training keeps fp32 weights. The price is a small loss
of quality, measured by `benchmarks/bench_weights.py` as the change in validation perplexity, and
logits rounded to bf16 (so top-k may keep a token more where two logits round to a tie).
"""

from __future__ import annotations

import torch
import torch.nn as nn

from minigpt.backends.kernels import int8_matmul, packed
from minigpt.errors import ConfigError

WEIGHT_FORMATS = ("fp32", "bf16", "int8")


class Int8Linear(nn.Module):
    """nn.Linear with int8 weights and one bf16 scale per output channel (symmetric, absmax)."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        w = linear.weight.detach().float()
        scale = w.abs().amax(dim=1).clamp(min=1e-8) / 127  # the largest |w| of a row maps to 127
        self.register_buffer("weight", (w / scale[:, None]).round().to(torch.int8))
        self.register_buffer("scale", scale.to(torch.bfloat16))
        self.bias = None
        if linear.bias is not None:
            self.bias = nn.Parameter(linear.bias.detach().to(torch.bfloat16), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x2d = x.reshape(-1, self.in_features).to(self.scale.dtype)
        y = int8_matmul(x2d, self.weight, self.scale)
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)


def convert_weights(model: nn.Module, weights: str) -> nn.Module:
    """Convert a model in place for decoding with weights in fp32, bf16 or int8.

    int8 covers every Linear, the LM head included (the largest, with GPT-2's vocabulary); the
    token embedding, which decoding reads one row of, stays bf16, so the head is no longer tied.
    fp32 and bf16 Linears are packed for oneDNN where this CPU allows it (PackedLinear,
    backends/kernels.py), the head too, which then keeps a packed copy of the embedding.
    """
    if weights not in WEIGHT_FORMATS:
        raise ConfigError(f"unknown weight format {weights!r}; use {', '.join(WEIGHT_FORMATS)}")
    model.eval()
    if weights != "fp32":
        model.to(torch.bfloat16)  # weights, LayerNorms, embeddings; the KV cache follows
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, nn.Linear):
                if weights == "int8":
                    setattr(parent, name, Int8Linear(child))
                else:
                    setattr(parent, name, packed(child))
    return model
