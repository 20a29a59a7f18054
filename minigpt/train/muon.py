"""Muon (Keller Jordan, 2024): momentum, then each update orthogonalized, for the matrices inside
the blocks; AdamW for the rest (the embeddings, which the LM head shares, and the LayerNorms' gains
and the biases). The optimizer of the NanoGPT speedrun records; TrainConfig.optimizer = "muon".

Orthogonalizing a matrix's update sets all its singular values to about 1: every direction the
gradient points in moves by the same amount, rather than the few strongest ones by most.
"""

from __future__ import annotations

import torch

from minigpt.backends.hardware import torch_dtype
from minigpt.train.config import TrainConfig


def orthogonalize(G: torch.Tensor, steps: int = 5,
                  dtype: torch.dtype = torch.bfloat16) -> torch.Tensor:
    """About U V^T of G = U S V^T, by Jordan's quintic Newton-Schulz iteration: singular values
    between about 0.7 and 1.2 instead of exactly 1, which trains as well. G is one matrix or a
    stack of matrices of one shape ([k, rows, cols]), each orthogonalized on its own: a stack
    takes a few large multiplies instead of many small ones (benchmarks/RESULTS.md, "Figures
    first written elsewhere": Muon's stacks). In bf16 where the device multiplies bf16 natively
    (fast); in fp32 elsewhere, where emulated bf16 matmuls are several times slower."""
    a, b, c = 3.4445, -4.7750, 2.0315
    X = G.to(dtype).reshape(-1, *G.shape[-2:])
    tall = X.size(-2) > X.size(-1)
    if tall:  # X X^T is the smaller square
        X = X.mT
    X = X / (X.norm(dim=(-2, -1), keepdim=True) + 1e-7)  # singular values at most 1
    for _ in range(steps):
        A = X @ X.mT
        B = torch.baddbmm(A, A, A, beta=b, alpha=c)  # b A + c A A
        X = torch.baddbmm(X, B, X, beta=a)  # a X + B X
    return (X.mT if tall else X).reshape(G.shape)


class Muon(torch.optim.Optimizer):
    """Muon for the param groups marked muon=True (2-D matrices), AdamW for the others.

    The trainer sets every group's lr from the schedule (cfg.lr at the peak); a Muon group steps by
    lr times its lr_scale, so that the schedule moves both optimizers together. Newton-Schulz
    runs in `dtype`: the precision the model's matmuls train in."""

    def __init__(self, groups: list[dict], lr: float, betas: tuple[float, float],
                 momentum: float = 0.95, eps: float = 1e-8, dtype: torch.dtype = torch.bfloat16):
        defaults = dict(lr=lr, betas=betas, momentum=momentum, eps=eps, weight_decay=0.0,
                        muon=False, lr_scale=1.0)
        super().__init__(groups, defaults)
        self.dtype = dtype  # not in the groups: a checkpoint's optimizer state stays plain numbers

    @torch.no_grad()
    def step(self) -> None:
        for group in self.param_groups:
            lr = group["lr"] * group["lr_scale"]
            params = [p for p in group["params"] if p.grad is not None]
            for p in params:
                p.mul_(1 - lr * group["weight_decay"])
            if group["muon"]:
                self._muon(params, group, lr)
            else:
                for p in params:
                    self._adamw(p, group, lr)

    def _muon(self, params: list[torch.Tensor], group: dict, lr: float) -> None:
        """Momentum for each matrix, then the Nesterov updates of all matrices of one shape
        orthogonalized together (one stack: see orthogonalize)."""
        by_shape: dict[torch.Size, list[torch.Tensor]] = {}
        for p in params:
            by_shape.setdefault(p.shape, []).append(p)
        for shape, same in by_shape.items():
            nesterov = []
            for p in same:
                state = self.state[p]
                if not state:
                    state["momentum"] = torch.zeros_like(p)
                momentum = state["momentum"].lerp_(p.grad, 1 - group["momentum"])
                nesterov.append(p.grad.lerp(momentum, group["momentum"]))
            updates = orthogonalize(torch.stack(nesterov), dtype=self.dtype)
            # a tall matrix's orthogonal update has smaller entries: scaled up to match a square's
            scale = max(1.0, shape[0] / shape[1]) ** 0.5
            for p, update in zip(same, updates, strict=True):
                p.add_(update.to(p.dtype), alpha=-lr * scale)

    def _adamw(self, p: torch.Tensor, group: dict, lr: float) -> None:
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        beta1, beta2 = group["betas"]
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        mean = state["exp_avg"] / (1 - beta1 ** state["step"])
        rms = (state["exp_avg_sq"] / (1 - beta2 ** state["step"])).sqrt_().add_(group["eps"])
        p.addcdiv_(mean, rms, value=-lr)


def muon_optimizer(model: torch.nn.Module, cfg: TrainConfig, precision: str = "bf16") -> Muon:
    """Muon at cfg.muon_lr for the blocks' matrices (no weight decay: the orthogonal updates keep
    them in scale), AdamW at cfg.lr for the rest, decaying the embedding matrices only; its
    Newton-Schulz in the training's precision ("bf16" or "fp32")."""
    matrices = [p for p in model.transformer.h.parameters() if p.dim() == 2 and p.requires_grad]
    chosen = {id(p) for p in matrices}
    rest = [p for p in model.parameters() if id(p) not in chosen and p.requires_grad]
    return Muon([
        {"params": matrices, "muon": True, "lr_scale": cfg.muon_lr / cfg.lr},
        {"params": [p for p in rest if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in rest if p.dim() < 2]},
    ], lr=cfg.lr, betas=(cfg.beta1, cfg.beta2),
       dtype=torch_dtype(precision))
