"""Smaller weights for faster decoding: bf16, or int8 weight-only quantization.

Decoding one token at batch 1 reads every weight once and does two FLOPs with each, so its speed
is bounded by memory bandwidth, not arithmetic: GPT-2 small reads 497 MB of fp32 weights per token.
bf16 weights halve that. int8 weights quarter it (gpt-fast's weight-only int8): each output
channel of a Linear keeps one scale, w ~= w_int8 * scale, and the activations stay bf16.

How the bytes are read matters as much as how many: PyTorch's own kernels read weights at
about half this CPU's bandwidth at batch 1, and oneDNN's read them at about two thirds once each
weight is laid out for them ahead of time (PackedLinear: fp32 decoding 1.8x faster, bf16 1.5x).

Both are for inference (generate, chat); training keeps fp32 weights. The price is a small loss
of quality, measured by `benchmarks/bench_weights.py` as the change in validation perplexity, and
logits rounded to bf16 (so top-k may keep a token more where two logits round to a tie).
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt.errors import ConfigError

WEIGHT_FORMATS = ("fp32", "bf16", "int8")
HAS_INT8_KERNEL = hasattr(torch.ops.aten, "_weight_int8pack_mm")  # torch 2.3 and later


class PackedLinear(nn.Module):
    """nn.Linear with its weight laid out ahead of time for oneDNN's CPU kernels (what Inductor's
    weight freezing does): the same numbers, read up to 2x faster at batch 1, where decoding is
    bound by reading the weights. The packed weight is opaque (no storage to save or slice), so
    this is for inference only; the model's state dict no longer holds it."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach()
        self.weight = torch.ops.mkldnn._reorder_linear_weight(weight, 1)  # laid out for 1 row
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # under torch.compile, the same product as an operator of its own (see packed_op); in
        # eager code, the call itself, without the operator's few microseconds of dispatch
        product = packed_op if torch.compiler.is_compiling() else packed_product
        return product(x, self.weight, self.bias)


def packed_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias, with weight laid out for oneDNN."""
    return torch.ops.mkldnn._linear_pointwise(x.contiguous(), weight, bias, "none", [], "")


# An operator of its own, which compiled code (generate --compile) calls as it is: Inductor's
# lowering of the oneDNN call expects weights it laid out itself, and refused these, so the decode
# step was not compiled.
packed_op = torch.library.custom_op("minigpt::packed_linear", packed_product, mutates_args=())


@packed_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], weight.size(0))  # a packed weight keeps its [out, in] size


@functools.cache
def packed_dtypes() -> tuple[torch.dtype, ...]:
    """The weight dtypes oneDNN packs on this CPU, where it was measured faster: fp32 on x86 with
    AVX2 or AVX-512, bf16 too where it has AVX-512 (oneDNN's bf16 path needs AVX-512 BW, VL and
    DQ; on an AVX2-only CPU it refuses). None elsewhere (ARM, MPS, GPUs)."""
    if not (torch.backends.mkldnn.is_available()
            and torch.backends.cpu.get_cpu_capability().startswith("AVX")):
        return ()
    if torch.cpu._is_avx512_supported():
        return (torch.float32, torch.bfloat16)
    return (torch.float32,)


def can_pack(linear: nn.Linear) -> bool:
    """A Linear on the CPU whose weights' dtype oneDNN packs here; elsewhere it stays as it is."""
    weight = linear.weight
    return weight.device.type == "cpu" and weight.dtype in packed_dtypes()


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
        if x.device.type == "cpu" and self.in_features % 16 == 0 and HAS_INT8_KERNEL:
            # one kernel that reads the int8 rows and scales as it goes (it reads rows in blocks
            # of 16: other widths give wrong results, so they take the general path below)
            y = torch.ops.aten._weight_int8pack_mm(x2d, self.weight, self.scale)
        else:  # dequantize, then multiply (torch.compile fuses the two)
            y = F.linear(x2d, self.weight.to(x2d.dtype)) * self.scale
        if self.bias is not None:
            y = y + self.bias
        return y.view(*x.shape[:-1], self.out_features)


def convert_weights(model: nn.Module, weights: str) -> nn.Module:
    """Convert a model in place for decoding with weights in fp32, bf16 or int8.

    int8 covers every Linear, the LM head included (the largest, with GPT-2's vocabulary); the
    token embedding, which decoding reads one row of, stays bf16, so the head is no longer tied.
    fp32 and bf16 Linears are packed for oneDNN where this CPU allows it (PackedLinear,
    packed_dtypes), the head too, which then keeps a packed copy of the embedding.
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
                elif can_pack(child):
                    setattr(parent, name, PackedLinear(child))
    return model
