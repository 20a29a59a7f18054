"""The hardware: which device to run on, the precision to train in, and what the device can do
(native bf16, the peak FLOP/s that MFU is measured against).

MFU (model FLOPs utilization, PaLM's appendix B) is the FLOP/s a training step needs in theory,
divided by the device's peak for the precision the matmuls run in. It says how much of the
machine the run uses, whatever the model's size: 40-50% is good for GPT-2 on one GPU.
"""

from __future__ import annotations

from contextlib import nullcontext

import torch

from minigpt.backends.kernels import native_bf16_cpu
from minigpt.errors import ConfigError

# Dense (not sparse) tensor-core peaks from the vendors' data sheets, in FLOP/s: bf16 and TF32
# (what fp32 matmuls use once TF32 is allowed). The first entry whose name is in
# torch.cuda.get_device_name() wins, so more specific names come first ("L40S" before "L40"
# before "L4").
GPU_PEAK_FLOPS = [
    # (name fragment, bf16, tf32)
    ("H200", 989e12, 494e12),
    ("H100 NVL", 835e12, 418e12),
    ("H100 PCIe", 756e12, 378e12),
    ("H100", 989e12, 494e12),  # SXM
    ("A100", 312e12, 156e12),
    ("L40S", 362e12, 183e12),
    ("L40", 181e12, 90e12),
    ("L4", 121e12, 60e12),
    ("A10G", 70e12, 35e12),
    ("RTX 4090", 165e12, 83e12),
    ("RTX 3090", 71e12, 36e12),
]


def pick_device(requested: str | None = None) -> torch.device:
    """cuda > mps > cpu when not told; a named device that is not there is an error."""
    if requested in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError:
        raise ConfigError(f"unknown device {requested!r}; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA GPU is available here")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps: Apple's MPS backend is not available here")
    return device


def describe_device(device: torch.device) -> str:
    """'cpu (2 threads)', 'cuda: NVIDIA H100 80GB HBM3', 'mps'."""
    if device.type == "cuda":
        return f"cuda: {torch.cuda.get_device_name(device)}"
    if device.type == "cpu":
        threads = torch.get_num_threads()
        return f"cpu ({threads} thread{'s' if threads > 1 else ''})"
    return device.type


DTYPES = ("auto", "fp32", "bf16")


def resolve_precision(device: torch.device, dtype: str = "auto") -> str:
    """"bf16" or "fp32": what --dtype asks for, "auto" being bf16 where the hardware has it."""
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype {dtype!r}; use {', '.join(DTYPES)}")
    if dtype == "auto":
        return "bf16" if has_native_bf16(device) else "fp32"
    return dtype


def torch_dtype(precision: str) -> torch.dtype:
    """The torch dtype of a precision: "bf16" or "fp32"."""
    return torch.bfloat16 if precision == "bf16" else torch.float32


def autocast_for(device: torch.device, precision: str):
    """The precision of forward passes: bf16 autocast (matmuls in bf16, weights, gradients and
    optimizer state in fp32) or plain fp32. On tinyshakespeare bf16 ends at the validation loss
    fp32 does, in less time (benchmarks/RESULTS.md, "Current figures (2026-11-22)", "Time to
    quality")."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return nullcontext()


def allow_tf32(device: torch.device) -> None:
    """On a GPU, fp32 matmuls on tensor cores (TF32): ~8x, and fine for training; process-wide,
    as nanoGPT does (--dtype fp32 on a GPU means TF32 matmuls)."""
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True


def has_native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix multiplies run in hardware: GPUs from Ampere on, CPUs with AVX-512 BF16
    or AMX. Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        try:  # not counting emulation, which older GPUs (V100, T4) offer
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.4 does not emulate
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        return native_bf16_cpu()
    return False


def peak_flops(device: torch.device, precision: str) -> float | None:
    """The device's peak matmul FLOP/s at this precision, or None where we do not know it (CPUs,
    whose peak depends on clock, cores and vector units; GPUs missing from the table)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for fragment, bf16, tf32 in GPU_PEAK_FLOPS:
        if fragment in name:
            return bf16 if precision == "bf16" else tf32
    return None


def measured_matmul_flops(device: torch.device, precision: str = "fp32", n: int = 1024) -> float:
    """The FLOP/s this device's n x n matmuls reach now, best of a few (a fraction of a second):
    the limit where no peak is known, as on CPUs."""
    import time

    dtype = torch_dtype(precision)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    best = float("inf")
    for _ in range(4):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        a @ b
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / max(best, 1e-9)
