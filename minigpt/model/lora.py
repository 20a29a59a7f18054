"""LoRA (Hu et al. 2021): fine-tune a model by training a small low-rank correction beside some of
its matrices, while every weight it already has stays frozen.

Where it plugs in: in every block (model/gpt.py), each linear layer named by the targets,

    y = W x + b                becomes       y = W x + b + (alpha / r) * B (A x)

with A [r, in] and B [out, r], r (the rank) far smaller than in and out. The targets, by the
names --lora-targets takes (LORA_TARGETS in model/config.py):

    c_attn        attention's q, k and v, one matrix [n_embd + 2 kv, n_embd]   (the default)
    attn.c_proj   attention's output projection
    c_fc          the MLP's up projection (SwiGLU's gate and up, one matrix)
    mlp.c_proj    the MLP's down projection

c_attn by default: the LoRA paper adapts attention's W_q and W_v and finds them the best pair
for a fixed budget of parameters; minigpt keeps q, k and v in one matrix, so adapting c_attn
adapts all three (k too, which the paper leaves alone: a few more parameters, one module).

- Only A and B train. W, b and the rest of the model (embeddings, LayerNorms, the head) are
  frozen: the optimizer holds two small matrices a layer and their moments, nothing else.
- B starts at zero, so B A = 0: a new adapter changes nothing and training starts exactly at
  the base model (a DPO run's reference is this same model with its adapters off: adapters_off).
  A starts random (Kaiming-uniform, as nn.Linear's weights do; PEFT's default), else B's
  gradient, dL/dy (A x)^T, would be zero as well and nothing would ever move.
- alpha / r scales the correction. Adam moves each entry of B by about the learning rate a step,
  so B A x grows with r; dividing by r keeps a step's effect on y about the same whatever r is,
  and alpha, fixed, is not tuned again when r changes (the paper sets alpha once, "to the first
  r we try"). The default (TrainConfig.lora_alpha), 16, is 2 r at the usual r = 8.
- Parameters: an adapted [out, in] matrix gains r (in + out). GPT-2 small's c_attn (768 in,
  2304 out) at r = 8: 24,576 a layer, 294,912 in its 12 layers, 0.24% of its 124M.
- Merging: W' = W + (alpha / r) B A is a plain matrix of W's shape, so a merged model is an
  ordinary GPT (merge_lora, merge_state): as fast as the base and read by every command.

- New tokens: instruction tuning (--sft) adds the chat template's tokens, whose embedding rows
  start as one mean row (train/finetune.py). Frozen, <|user|> and <|end|> would stay the same
  vector, read in and written out alike, and a tuned model could not say when its answer ends.
  So those rows train too (train_token_rows): those rows only, of the embedding (and of an
  untied head), the rest of the matrix as frozen as before.

The adapters keep PEFT's names: a layer's are <layer>.lora_A.weight and <layer>.lora_B.weight
beside its own weight and bias, whose names do not change; hf/folder.py writes them as a PEFT
adapter folder.
"""

from __future__ import annotations

import math
from contextlib import contextmanager

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt.model.config import LORA_TARGETS

ADAPTER_NAMES = (".lora_A.weight", ".lora_B.weight")  # how an adapter's tensors are named


def delta(A: torch.Tensor, B: torch.Tensor, alpha: float) -> torch.Tensor:
    """What an adapter adds to its layer's weight: (alpha / r) B A, [out, in]."""
    return (alpha / A.size(0)) * (B @ A)


class LoRALinear(nn.Module):
    """A linear layer with a low-rank adapter beside it: W x + b + (alpha / r) B (A x).

    It takes over the nn.Linear's own weight and bias, frozen, under their own names (a layer's
    base tensors keep their places in the state dict); A and B are small nn.Linears without bias,
    lora_A (in -> r) and lora_B (r -> out)."""

    def __init__(self, linear: nn.Linear, r: int, alpha: float):
        super().__init__()
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.r, self.alpha = r, alpha
        self.register_parameter("weight", linear.weight)
        self.register_parameter("bias", linear.bias)
        self.weight.requires_grad_(False)
        if self.bias is not None:
            self.bias.requires_grad_(False)
        like = dict(device=linear.weight.device, dtype=linear.weight.dtype)
        self.lora_A = nn.Linear(self.in_features, r, bias=False, **like)
        self.lora_B = nn.Linear(r, self.out_features, bias=False, **like)
        nn.init.kaiming_uniform_(self.lora_A.weight, a=math.sqrt(5))
        nn.init.zeros_(self.lora_B.weight)
        self.enabled = True  # False: the base layer alone (adapters_off)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(x, self.weight, self.bias)
        if not self.enabled:
            return y
        # two thin products, r wide, instead of one with a merged [out, in] matrix: their
        # gradients go to A and B alone
        return y + (self.alpha / self.r) * self.lora_B(self.lora_A(x))

    def merged(self) -> nn.Linear:
        """A plain nn.Linear computing what this layer computes: W + (alpha / r) B A, and b."""
        with torch.device("meta"):  # allocated once, below, not initialized first
            linear = nn.Linear(self.in_features, self.out_features, bias=self.bias is not None)
        with torch.no_grad():
            weight = self.weight + delta(self.lora_A.weight, self.lora_B.weight, self.alpha)
        linear.weight = nn.Parameter(weight, requires_grad=self.weight.requires_grad)
        if self.bias is not None:
            linear.bias = nn.Parameter(self.bias.detach().clone(),
                                       requires_grad=self.bias.requires_grad)
        return linear

    def extra_repr(self) -> str:
        return f"in={self.in_features}, out={self.out_features}, r={self.r}, alpha={self.alpha:g}"


def parse_targets(targets: str) -> list[str]:
    """"c_attn,c_fc" as the list of targets (checked by TrainConfig's rule beforehand)."""
    return targets.split(",")


def add_lora(model: nn.Module, r: int, alpha: float, targets: str = "c_attn") -> nn.Module:
    """Freeze every parameter of the model and put a LoRALinear in place of each target layer of
    every block (a block without attention or MLP, an ablation, has none of theirs); the model,
    changed in place. Its trainable parameters are then the adapters' alone."""
    for p in model.parameters():
        p.requires_grad_(False)
    for block in model.transformer.h:
        for target in parse_targets(targets):
            part, name = LORA_TARGETS[target].split(".")
            holder = getattr(block, part)  # block.attn or block.mlp
            if holder is not None:
                setattr(holder, name, LoRALinear(getattr(holder, name), r, alpha))
    return model


def train_token_rows(model: nn.Module, rows: list[int]) -> nn.Module:
    """Let the embedding rows of these tokens train beside the adapters, and an untied head's
    rows for them: every other row of those matrices stays frozen, its gradient zeroed as it is
    computed (a hook). Such a matrix is marked with its rows (trainable_rows): AdamW then moves
    the others by exactly nothing (zero gradient, zero moments), and configure_optimizer leaves
    it out of weight decay, which would shrink every row."""
    mask = torch.zeros(model.config.vocab_size, 1, device=model.transformer.wte.weight.device)
    mask[rows] = 1.0
    for weight in {model.transformer.wte.weight, model.lm_head.weight}:  # one matrix when tied
        weight.requires_grad_(True)
        weight.trainable_rows = list(rows)
        weight.register_hook(lambda grad: grad * mask.to(grad.dtype))
    return model


def lora_layers(model: nn.Module) -> dict[str, LoRALinear]:
    """The model's adapted layers by name (transformer.h.0.attn.c_attn, ...); empty without LoRA."""
    return {name: m for name, m in model.named_modules() if isinstance(m, LoRALinear)}


def merge_lora(model: nn.Module) -> nn.Module:
    """Fold every adapter into its layer's weight, W + (alpha / r) B A, and put back a plain
    nn.Linear: the model, changed in place, an ordinary GPT again (its parameters still frozen)."""
    for name, layer in lora_layers(model).items():
        parent, child = name.rsplit(".", 1)
        setattr(model.get_submodule(parent), child, layer.merged())
    return model


@contextmanager
def adapters_off(model: nn.Module):
    """The model as its base computes it, for the block: every adapter left out."""
    layers = lora_layers(model).values()
    for layer in layers:
        layer.enabled = False
    try:
        yield model
    finally:
        for layer in layers:
            layer.enabled = True


def trainable_params(model: nn.Module) -> int:
    """The parameters the optimizer moves (each counted once): a LoRA model's adapters, and the
    rows that train of a matrix marked by train_token_rows."""
    return sum(len(p.trainable_rows) * p.size(1) if hasattr(p, "trainable_rows") else p.numel()
               for p in model.parameters() if p.requires_grad)


# --- state dicts: what a checkpoint saves ----------------------------------------------------------


def is_adapter(name: str) -> bool:
    return name.endswith(ADAPTER_NAMES)


def split_state(model: nn.Module) -> tuple[dict, dict]:
    """The model's tensors in two: the base's, named as a model without adapters names them, and
    the adapters' (<layer>.lora_A.weight, <layer>.lora_B.weight)."""
    state = model.state_dict()
    base = {name: t for name, t in state.items() if not is_adapter(name)}
    return base, {name: t for name, t in state.items() if is_adapter(name)}


def merge_state(base: dict, adapters: dict, alpha: float) -> dict:
    """The base's state dict with each adapter folded into its layer's weight: the state dict of
    the merged model, for a model that is only tensors (a checkpoint's)."""
    merged = dict(base)
    for name, A in adapters.items():
        if name.endswith(".lora_A.weight"):
            layer = name.removesuffix(".lora_A.weight")
            B = adapters[layer + ".lora_B.weight"]
            weight = merged[layer + ".weight"]
            merged[layer + ".weight"] = weight + delta(A.to(weight.dtype), B.to(weight.dtype),
                                                       alpha)
    return merged


def saved_state(model: nn.Module, keep: bool) -> tuple[dict, dict | None]:
    """The weights a checkpoint of the model holds, and its adapters kept apart: for a model
    with adapters, merged into the weights (keep False: an ordinary model) or the base's weights
    and the adapters; for any other, its state dict and None."""
    layers = lora_layers(model)
    if not layers:
        return model.state_dict(), None
    base, adapters = split_state(model)
    if keep:
        return base, adapters
    alpha = next(iter(layers.values())).alpha
    return merge_state(base, adapters, alpha), None
