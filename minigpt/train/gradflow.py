"""Gradient flow: how strongly each layer of the model is trained, measured on logged steps.

For each layer (the embeddings, every transformer block, the head) two numbers: the norm of its
gradients, and how far the optimizer step moved its weights against their size (the
update-to-weight ratio, ||w_new - w_old|| / ||w_old||). A model without residual connections
shows the first: the early layers' gradients are a small fraction of the baseline's.

Only the steps that are logged are measured, and the numbers stay on the device until the step
is logged, where one .tolist() reads them all: the cost on other steps is nothing.
"""

from __future__ import annotations

import torch
from torch import nn


def layer_groups(model: nn.Module) -> dict[str, list[nn.Parameter]]:
    """The model's parameters by layer, in the order the tokens flow: "embedding" (wte, wpe),
    the blocks "1" to "n_layer", "head" (the final LayerNorm and an untied LM head; a tied
    head's matrix is wte's, counted once, with the embeddings). A layer with no parameters is
    left out."""
    transformer = model.transformer
    groups = {"embedding": [m.weight for name, m in transformer.items() if name in ("wte", "wpe")]}
    for i, block in enumerate(transformer.h):
        groups[str(i + 1)] = list(block.parameters())
    seen = {id(p) for params in groups.values() for p in params}
    head = list(transformer.ln_f.parameters()) + list(model.lm_head.parameters())
    groups["head"] = [p for p in head if id(p) not in seen]
    return {name: params for name, params in groups.items() if params}


def layer_order(measures) -> list[str]:
    """Every layer named in any of the measures (dicts by layer name), in the order the tokens
    flow: a deeper variant's extra blocks fall among the others."""
    names = {name for by_layer in measures for name in by_layer}
    blocks = sorted((n for n in names if n.isdigit()), key=int)
    return [n for n in ("embedding", *blocks, "head") if n in names]


def _norm(tensors: list[torch.Tensor]) -> torch.Tensor:
    """The norm of the tensors taken together, as one flat vector."""
    return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(t.float())
                                                 for t in tensors]))


class GradientFlow:
    """Measures one optimizer step: grads() after backward (before clipping), then before() and
    after() around optimizer.step(); read() gives both measures by layer, read off the device
    once."""

    def __init__(self, model: nn.Module):
        self.groups = layer_groups(model)
        self._norms: torch.Tensor | None = None
        self._old: dict[str, list[torch.Tensor]] = {}
        self._ratios: torch.Tensor | None = None

    def grads(self) -> None:
        zero = torch.zeros(())
        self._norms = torch.stack([
            _norm([p.grad for p in params if p.grad is not None] or [zero.to(params[0].device)])
            for params in self.groups.values()])

    def before(self) -> None:
        self._old = {name: [p.detach().clone() for p in params]
                     for name, params in self.groups.items()}

    def after(self) -> None:
        ratios = []
        for name, params in self.groups.items():
            old = self._old[name]
            moved = _norm([p.detach() - o for p, o in zip(params, old, strict=True)])
            ratios.append(moved / _norm(old).clamp_min(1e-12))
        self._ratios = torch.stack(ratios)
        self._old = {}

    def read(self) -> tuple[dict[str, float], dict[str, float]] | None:
        """(gradient norms, update ratios) by layer name, or None if no step was measured since
        the last read."""
        if self._norms is None or self._ratios is None:
            return None
        values = torch.cat([self._norms, self._ratios.to(self._norms.device)]).tolist()
        self._norms = self._ratios = None
        n = len(self.groups)
        return dict(zip(self.groups, values[:n], strict=True)), dict(zip(self.groups, values[n:], strict=True))
