"""The kernels minigpt chooses for itself, and every private torch call it makes, in one place.

    native_bf16_cpu()        does this CPU multiply bf16 in hardware (AVX-512 BF16 or AMX)
    packed_dtypes()          which weight dtypes oneDNN lays out ahead of time here (what to pack)
    PackedLinear(linear)     a Linear whose weight is laid out for oneDNN's kernels
    int8_matmul(x, w, s)     x @ (w * s).T for int8 weights with one scale per row
    attend_in_fp32(q)        whether attention runs in fp32 under bf16 autocast (on a CPU)

Each private call (torch.ops.mkldnn, torch.ops.aten._weight_int8pack_mm, torch.cpu._is_*) is
asked for by name and guarded: a torch that lacks it, or one whose call fails, gets the plain
path, and fallbacks() says so in a line (generate --stats, the Chat pane), never a crash.
"""

from __future__ import annotations

import functools

import torch
import torch.nn as nn
import torch.nn.functional as F

_fallbacks: list[str] = []


def fallbacks() -> list[str]:
    """What fell back to the plain path in this process, a line each."""
    return list(dict.fromkeys(_fallbacks))


def _fell_back(what: str, error: BaseException | None = None) -> None:
    reason = f": {str(error).strip().splitlines()[0][:80]}" if error and str(error).strip() else ""
    _fallbacks.append(f"{what} unavailable in torch {torch.__version__}{reason}; plain kernels")


def _op(namespace: str, name: str):
    """torch.ops.<namespace>.<name>, or None where this torch has no such operator."""
    try:
        return getattr(getattr(torch.ops, namespace), name)
    except (AttributeError, RuntimeError):
        return None


def _cpu_probe(name: str) -> bool:
    """torch.cpu's private feature probes (_is_avx512_supported, ...); False where missing."""
    probe = getattr(torch.cpu, name, None)
    try:
        return bool(probe()) if probe is not None else False
    except RuntimeError:
        return False


# --- what the CPU does in hardware -------------------------------------------------------------


def native_bf16_cpu() -> bool:
    """Whether this CPU multiplies bf16 in hardware: AVX-512 BF16 or AMX. Elsewhere bf16 is
    emulated and slower than fp32."""
    return _cpu_probe("_is_avx512_bf16_supported") or _cpu_probe("_is_amx_tile_supported")


def attend_in_fp32(q: torch.Tensor) -> bool:
    """Whether attention should run in fp32 for bf16 queries: on a CPU, whose flash-attention
    kernel runs slower in bf16 than in fp32 (benchmarks/RESULTS.md, "What got training there,
    and what bounds it"); on GPUs bf16 is the fast one."""
    return q.device.type == "cpu" and q.dtype == torch.bfloat16


# --- weights laid out for oneDNN ---------------------------------------------------------------

_REORDER = _op("mkldnn", "_reorder_linear_weight")
_LINEAR = _op("mkldnn", "_linear_pointwise")


@functools.cache
def packed_dtypes() -> tuple[torch.dtype, ...]:
    """The weight dtypes oneDNN packs on this CPU, where it was measured faster: fp32 on x86 with
    AVX2 or AVX-512, bf16 too where it has AVX-512 (oneDNN's bf16 path needs AVX-512 BW, VL and
    DQ; on an AVX2-only CPU it refuses). None elsewhere (ARM, MPS, GPUs), nor where this torch
    lacks the operators."""
    if _REORDER is None or _LINEAR is None:
        _fell_back("oneDNN weight packing (torch.ops.mkldnn)")
        return ()
    if not (torch.backends.mkldnn.is_available()
            and torch.backends.cpu.get_cpu_capability().startswith("AVX")):
        return ()
    if _cpu_probe("_is_avx512_supported"):
        return (torch.float32, torch.bfloat16)
    return (torch.float32,)


def can_pack(linear: nn.Linear) -> bool:
    """A Linear on the CPU whose weights' dtype oneDNN packs here; elsewhere it stays as it is."""
    weight = linear.weight
    return weight.device.type == "cpu" and weight.dtype in packed_dtypes()


def packed(linear: nn.Linear) -> nn.Module:
    """The Linear with its weight laid out for oneDNN (PackedLinear) where it can be, else as it
    is: a layout this torch refuses is a note, not an error."""
    if not can_pack(linear):
        return linear
    try:
        return PackedLinear(linear)
    except RuntimeError as e:
        _fell_back("oneDNN weight packing", e)
        return linear


class PackedLinear(nn.Module):
    """nn.Linear with its weight laid out ahead of time for oneDNN's CPU kernels (what Inductor's
    weight freezing does): the same numbers, read faster at batch 1, where decoding is bound by
    reading the weights (benchmarks/RESULTS.md, "Fast by default on a CPU without AMX"). The
    packed weight is opaque (no storage to save or slice), so this is for inference only; the
    model's state dict no longer holds it."""

    def __init__(self, linear: nn.Linear):
        super().__init__()
        weight = linear.weight.detach()
        self.weight = _REORDER(weight, 1)  # laid out for 1 row
        self.bias = None if linear.bias is None else linear.bias.detach()
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # under torch.compile, the same product as an operator of its own (see packed_op); in
        # eager code, the call itself, without the operator's few microseconds of dispatch
        product = packed_op if torch.compiler.is_compiling() else packed_product
        return product(x, self.weight, self.bias)


def packed_product(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """x @ weight.T + bias, with weight laid out for oneDNN."""
    return _LINEAR(x.contiguous(), weight, bias, "none", [], "")


# An operator of its own, which compiled code (generate --compile) calls as it is: Inductor's
# lowering of the oneDNN call expects weights it laid out itself, and refused these, so the decode
# step was not compiled.
packed_op = torch.library.custom_op("minigpt::packed_linear", packed_product, mutates_args=())


@packed_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    return x.new_empty(*x.shape[:-1], weight.size(0))  # a packed weight keeps its [out, in] size


# --- int8 weights ------------------------------------------------------------------------------

_INT8_MM = _op("aten", "_weight_int8pack_mm")  # torch 2.3 and later


def int8_matmul(x2d: torch.Tensor, weight: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """x2d @ (weight * scale[:, None]).T for int8 weights, one scale per output row. On a CPU,
    one kernel that reads the int8 rows and scales as it goes (it reads rows in blocks of 16:
    other widths give wrong results, so they take the general path); elsewhere, and where this
    torch lacks it, dequantize then multiply (torch.compile fuses the two)."""
    if x2d.device.type == "cpu" and weight.size(1) % 16 == 0 and _INT8_MM is not None:
        try:
            return _INT8_MM(x2d, weight, scale)
        except RuntimeError as e:
            _fell_back("int8 matmul (torch.ops.aten._weight_int8pack_mm)", e)
    return F.linear(x2d, weight.to(x2d.dtype)) * scale
