"""What the hardware can do: native bf16, and the peak FLOP/s that MFU is measured against.

MFU (model FLOPs utilization, PaLM's appendix B) is the FLOP/s a training step needs in theory,
divided by the device's peak for the precision the matmuls run in. It says how much of the
machine the run uses, whatever the model's size: 40-50% is good for GPT-2 on one GPU.
"""

from __future__ import annotations

import torch

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


def has_native_bf16(device: torch.device) -> bool:
    """Whether bf16 matrix multiplies run in hardware: GPUs from Ampere on, CPUs with AVX-512 BF16
    or AMX. Elsewhere bf16 is emulated and slower than fp32."""
    if device.type == "cuda":
        try:  # not counting emulation, which older GPUs (V100, T4) offer
            return torch.cuda.is_bf16_supported(including_emulation=False)
        except TypeError:  # torch before 2.4 does not emulate
            return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        cpu = torch.cpu
        return any(getattr(cpu, probe, lambda: False)()
                   for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"))
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


def measured_matmul_flops(device: torch.device, precision: str = "fp32", n: int = 512) -> float:
    """The FLOP/s this device's n x n matmuls reach now, best of a few (tens of milliseconds): for
    estimates where no peak is known, as on CPUs."""
    import time

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
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
