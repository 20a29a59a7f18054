"""What this CPU can do, and the decisions that follow from it, made before torch loads (no torch
here): which oneDNN kernels a decoding process gets, and how many threads a reply decodes with.

At batch 1, decoding multiplies each weight matrix by one vector, so its speed is how fast the
weights are read. On a CPU with AMX, oneDNN runs that product on the AMX tiles, which read bf16
weights more slowly than its AVX-512 BF16 kernels do (benchmarks/RESULTS.md, "The Intel Xeon
with AMX again"). The price: AMX multiplies whole matrices faster, so a long prompt's first pass is
slower. fp32 weights never use AMX; CPUs without AMX are unchanged.

oneDNN reads its limit, the ONEDNN_MAX_CPU_ISA variable, once, at its first multiply: so the
commands that decode (generate, chat, tui) call limit_for_decoding() before they import torch,
and the training runs the TUI starts get an environment without it (environment_for_training),
so that they keep AMX. A limit the user set is left as it is.
"""

from __future__ import annotations

import functools
import os
import platform
import sys

VARIABLE = "ONEDNN_MAX_CPU_ISA"
FOR_DECODING = "AVX512_CORE_BF16"  # oneDNN's name: AVX-512 with its bf16 dot products, no AMX
SAID = "AVX-512 BF16 kernels, not AMX"

_limited_here = False  # whether this process set VARIABLE (and so its children must not inherit it)


def cpuinfo(path: str = "/proc/cpuinfo") -> dict[str, str]:
    """The first processor's fields as Linux lists them ('model name', 'flags', ...); empty
    elsewhere."""
    fields: dict[str, str] = {}
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    break  # the first processor's block ends
                key, _, value = line.partition(":")
                fields[key.strip()] = value.strip()
    except OSError:
        pass
    return fields


@functools.cache
def _this_cpu() -> dict[str, str]:
    return cpuinfo()


def cpu_flags(path: str | None = None) -> set[str]:
    """The CPU's feature flags (avx2, avx512_bf16, amx_bf16, ...)."""
    return set((cpuinfo(path) if path else _this_cpu()).get("flags", "").split())


def cpu_name() -> str:
    """The CPU's model name ('AMD EPYC', 'Intel(R) Xeon(R) ...'), for figures that depend on it."""
    return _this_cpu().get("model name") or platform.processor() or platform.machine() or "unknown CPU"


def decoding_limit(environ, flags: set[str], torch_loaded: bool) -> str | None:
    """The limit to set for a decoding process: FOR_DECODING on a CPU with AMX for bf16, unless
    a limit is set already or torch has loaded (too late to be sure oneDNN has not read it)."""
    if VARIABLE in environ or torch_loaded or "amx_bf16" not in flags:
        return None
    return FOR_DECODING


def limit_for_decoding() -> bool:
    """Set oneDNN's limit in this process where decoding gains by it; True if it was set."""
    global _limited_here
    limit = decoding_limit(os.environ, cpu_flags(), "torch" in sys.modules)
    if limit is not None:
        os.environ[VARIABLE] = limit
        _limited_here = True
    return _limited_here


def limited_here() -> bool:
    return _limited_here


def environment_for_training() -> dict[str, str]:
    """This process's environment for a child that trains: without the limit set here."""
    env = dict(os.environ)
    if _limited_here:
        env.pop(VARIABLE, None)
    return env


def decode_threads(training_beside: bool) -> int:
    """The threads a reply decodes with: every core, unless a training run or an ablation is
    under way beside it; it uses every core too, and two thread pools spinning on the same
    cores slow both many times over, so decoding then takes half of them."""
    cores = os.cpu_count() or 2
    return max(1, cores // 2) if training_beside else cores
