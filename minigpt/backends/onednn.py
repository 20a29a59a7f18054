"""oneDNN's kernels for a process that decodes, chosen before torch loads (no torch here).

At batch 1, decoding multiplies each weight matrix by one vector, so its speed is how fast the
weights are read. On a CPU with AMX, oneDNN runs that product on the AMX tiles, which read bf16
weights at under half the machine's bandwidth: GPT-2 small's 49 matrices at 9.7 GB/s of the
21.3 a plain sum reads, on a 2-core Intel Xeon. Its AVX-512 BF16 kernels read them at 15.0 GB/s,
and GPT-2 small decodes at 43.2 tokens/s instead of 28.9 (benchmarks/RESULTS.md). The price: AMX
multiplies whole matrices faster, so a prompt's first pass is slower (256 tokens of GPT-2 small
0.17 s -> 0.5-0.65 s, about what 40 tokens of reply save). fp32 weights never use AMX; CPUs
without AMX are unchanged.

oneDNN reads its limit, the ONEDNN_MAX_CPU_ISA variable, once, at its first multiply: so the
commands that decode (generate, chat, tui) call limit_for_decoding() before they import torch,
and the training runs the TUI starts get an environment without it (environment_for_training),
so that they keep AMX. A limit the user set is left as it is.
"""

from __future__ import annotations

import os
import sys

VARIABLE = "ONEDNN_MAX_CPU_ISA"
FOR_DECODING = "AVX512_CORE_BF16"  # oneDNN's name: AVX-512 with its bf16 dot products, no AMX
SAID = "AVX-512 BF16 kernels, not AMX"

_limited_here = False  # whether this process set VARIABLE (and so its children must not inherit it)


def cpu_flags(path: str = "/proc/cpuinfo") -> set[str]:
    """The CPU's feature flags as Linux lists them; empty elsewhere."""
    try:
        with open(path, encoding="utf-8") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


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
