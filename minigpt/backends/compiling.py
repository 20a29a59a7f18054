"""torch.compile with a way out: where compiling fails, the plain module runs instead.

torch.compile turns a module's forward into fused kernels (Inductor: Triton on GPUs, C++ on CPUs).
It compiles at the first call, and it can fail there: no C++ compiler, a platform Inductor does
not support. A slower run beats a crashed one, so training (`--compile`) and decoding
(`generate --compile`) go through CompiledOrEager and say why they fell back.
"""

from __future__ import annotations

import torch


class CompiledOrEager:
    """A module through torch.compile, or as it is once compiling has failed (`failure` says why)."""

    def __init__(self, module: torch.nn.Module):
        self.eager = module
        self.compiled = torch.compile(module)
        self.failure: str | None = None

    def __call__(self, *args, **kwargs):
        if self.failure is None:
            try:
                return self.compiled(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - whatever the compiler raised
                # A real error (bad input, out of memory) raises again here, as itself; only
                # what compiling alone broke falls back.
                result = self.eager(*args, **kwargs)
                first_line = (str(e).strip().splitlines() or [""])[0]
                self.failure = f"{type(e).__name__}: {first_line}"[:200]
                return result
        return self.eager(*args, **kwargs)

    def no_sync(self):  # DDP's, for the inner steps of gradient accumulation
        return self.eager.no_sync()
