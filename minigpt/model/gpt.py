"""GPT-2, top to bottom.

    tokens -> token embedding (wte) + position embedding (wpe)
           -> n_layer x Block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
           -> final LayerNorm (ln_f) -> LM head (the transpose of wte) -> logits

Parameter names are GPT-2's own (transformer.wte, transformer.h.0.attn.c_attn, ...), so pretrained
weights map one to one. Every ablation switch in GPTConfig is an `if` you can find below.
"""

from __future__ import annotations

import math
import os

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from minigpt.backends.kernels import attend_in_fp32
from minigpt.model.config import GPTConfig
from minigpt.model.kv_cache import KVCache


def causal_mask(n_queries: int, n_keys: int, device: torch.device) -> torch.Tensor:
    """True where attention is allowed: query i (the last n_queries positions) sees keys 0..its own.

    With a KV cache the queries are the newest n_queries of n_keys positions, so the diagonal
    is shifted right by n_keys - n_queries.
    """
    ones = torch.ones(n_queries, n_keys, dtype=torch.bool, device=device)
    return ones.tril(diagonal=n_keys - n_queries)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_embd = config.n_embd
        self.attn_impl = config.attn_impl
        self.dropout = config.dropout
        # q, k and v for all heads in one matrix multiply
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.kv_cache: KVCache | None = None
        # Set by GPT.attention_maps: keep the softmax weights of the last forward pass.
        self.record_attention = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, input_pos: int | None = None) -> torch.Tensor:
        B, T, C = x.size()
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)
        # [B, T, C] -> [B, n_head, T, head_dim]: each head attends with its own slice of channels
        q = q.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        k = k.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)
        v = v.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)

        if self.kv_cache is not None:
            k, v = self.kv_cache.update(input_pos, k, v)
            q = q.to(k.dtype)  # attend in the cache's precision (fp32 on a CPU: setup_kv_cache)

        if self.attn_impl == "explicit" or self.record_attention:
            y = self.explicit_attention(q, k, v)
        else:
            y = self.fused_attention(q, k, v)

        y = y.transpose(1, 2).contiguous().view(B, T, C).to(x.dtype)  # heads side by side again
        return self.resid_dropout(self.c_proj(y))

    def explicit_attention(self, q, k, v):
        """softmax(q k^T / sqrt(d), causal) v, spelled out so the weights can be looked at."""
        n_queries, n_keys = q.size(2), k.size(2)
        scores = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        scores = scores.masked_fill(~causal_mask(n_queries, n_keys, q.device), float("-inf"))
        weights = F.softmax(scores, dim=-1)
        if self.record_attention:
            self.last_attention = weights.detach()
        weights = self.attn_dropout(weights)
        return weights @ v

    def fused_attention(self, q, k, v):
        """The same computation through PyTorch's fused kernel (flash attention where available)."""
        if attend_in_fp32(q):  # fast path: a CPU's flash kernel is slower in bf16 (backends)
            with torch.autocast("cpu", enabled=False):
                return self.fused_attention(q.float(), k.float(), v.float()).to(q.dtype)
        n_queries, n_keys = q.size(2), k.size(2)
        dropout_p = self.dropout if self.training else 0.0
        if n_queries == n_keys:  # the whole sequence: the usual lower-triangular mask
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
        if n_queries == 1:  # one new token after cached ones: it may see every key
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        mask = causal_mask(n_queries, n_keys, q.device)
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    """GPT-2's GELU: the tanh approximation ("gelu_new"), not the exact erf form.

    Fast path: under torch.compile the same function is written with a sigmoid,
    0.5 x (1 + tanh(u)) = x sigmoid(2u), which compiles to one kernel faster on a CPU than
    PyTorch's own (benchmarks/RESULTS.md, "What got training there, and what bounds it"); run
    eagerly, PyTorch's own kernel is the faster one.
    """
    if torch.compiler.is_compiling():
        u = math.sqrt(2 / math.pi) * (x + 0.044715 * x * x * x)
        return x * torch.sigmoid(2 * u)
    return F.gelu(x, approximate="tanh")


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(self.c_proj(gelu_tanh(self.c_fc(x))))


def layer_norm(config: GPTConfig) -> nn.Module:
    if config.layer_norm == "none":
        return nn.Identity()
    return nn.LayerNorm(config.n_embd, eps=config.layer_norm_epsilon, bias=config.bias)


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.residual = config.residual
        self.layer_norm = config.layer_norm
        self.ln_1 = layer_norm(config)
        self.attn = CausalSelfAttention(config) if config.attention else None
        self.ln_2 = layer_norm(config)
        self.mlp = MLP(config) if config.mlp else None

    def forward(self, x: torch.Tensor, input_pos: int | None = None) -> torch.Tensor:
        if self.attn is not None:  # ablation "attention": without it no token sees another
            x = self.sublayer(x, self.ln_1, lambda h: self.attn(h, input_pos))
        if self.mlp is not None:  # ablation "mlp"
            x = self.sublayer(x, self.ln_2, self.mlp)
        return x

    def sublayer(self, x: torch.Tensor, norm: nn.Module, layer) -> torch.Tensor:
        """GPT-2's x + layer(norm(x)), or the variant the ablation switches ask for."""
        if self.layer_norm == "pre":
            out = layer(norm(x))
        else:
            out = layer(x)
        if self.residual:
            x = x + out
        else:  # ablation "residual": the sublayer's output replaces the stream
            x = out
        if self.layer_norm == "post":  # ablation "post-ln": normalize after the addition
            x = norm(x)
        return x


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        modules = {"wte": nn.Embedding(config.vocab_size, config.n_embd)}
        if config.position_embedding:  # ablation "pos-emb": without it, order is invisible
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        modules["drop"] = nn.Dropout(config.dropout)
        modules["h"] = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        # Pre-LN needs a final LayerNorm; post-LN blocks already end with one.
        modules["ln_f"] = layer_norm(config) if config.layer_norm == "pre" else nn.Identity()
        self.transformer = nn.ModuleDict(modules)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:  # ablation "tying": GPT-2 reads tokens out with the embedding matrix
            self.lm_head.weight = self.transformer.wte.weight

        self.apply(self._init_weights)
        # GPT-2 scales the init of layers that write into the residual stream by 1/sqrt(2 n_layer)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, non_embedding: bool = False) -> int:
        """Parameters counted once (the tied head shares wte's); optionally without wpe, as GPT-2 counts."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and "wpe" in self.transformer:
            n -= self.transformer.wpe.weight.numel()
        return n

    def flops_per_token(self) -> int:
        """FLOPs one training token costs (forward and backward) at full context, as PaLM counts
        them: 6 per weight (2 forward, 4 backward) plus the attention scores and their use."""
        cfg = self.config
        # every weight in a matmul: with a tied head, wte counts once (as the head's matmul);
        # untied, wte is a lookup and costs nothing, while lm_head has its own matrix
        n_weights = self.num_params(non_embedding=True)
        if not cfg.tie_weights:
            n_weights -= self.transformer.wte.weight.numel()
        attention = 0
        if cfg.attention:  # q k^T and weights @ v: 2 x 2 x T x n_embd per layer forward, x3 with backward
            attention = 12 * cfg.n_layer * cfg.n_embd * cfg.block_size
        return 6 * n_weights + attention

    def forward(self, idx: torch.Tensor, targets: torch.Tensor | None = None,
                input_pos: int | None = None, last_only: bool = False):
        """Logits for every position of idx [B, T]; the mean cross-entropy too if targets are given.

        input_pos: with a KV cache set up (setup_kv_cache), the position of idx's first token.
        last_only: logits for the last position alone, all that sampling the next token needs (a
        long prompt's other rows through the LM head would be most of its cost with 50k tokens).
        """
        B, T = idx.size()
        start = 0 if input_pos is None else input_pos
        if start + T > self.config.block_size:
            raise ValueError(
                f"sequence of {start + T} tokens exceeds the context of {self.config.block_size}"
            )
        if input_pos is not None and self.config.attention and not self.has_kv_cache:
            raise RuntimeError("input_pos needs a KV cache: call setup_kv_cache first")

        x = self.transformer.wte(idx)
        if self.config.position_embedding:
            pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
            x = x + self.transformer.wpe(pos)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, input_pos)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x[:, -1:] if last_only else x)

        loss = None
        if targets is not None:
            # in fp32 whatever the logits are (bf16 weights give bf16 logits): a bf16 loss is
            # rounded to about 0.4%
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                   ignore_index=-1)
        return logits, loss

    # --- KV cache -------------------------------------------------------------------------------

    def attention_layers(self) -> list[CausalSelfAttention]:
        return [block.attn for block in self.transformer.h if block.attn is not None]

    @property
    def has_kv_cache(self) -> bool:
        layers = self.attention_layers()
        return bool(layers) and layers[0].kv_cache is not None

    def setup_kv_cache(self, batch_size: int, max_len: int | None = None) -> None:
        """Allocate a cache for sequences of up to max_len tokens (default: the whole context)."""
        max_len = min(max_len or self.config.block_size, self.config.block_size)
        head_dim = self.config.n_embd // self.config.n_head
        weight = self.transformer.wte.weight
        # on a CPU attention runs in fp32 (see fused_attention), so the cache holds fp32: cast
        # once when stored instead of the whole cache upcast for every new token
        dtype = torch.float32 if weight.device.type == "cpu" else weight.dtype
        for attn in self.attention_layers():
            attn.kv_cache = KVCache(batch_size, self.config.n_head, max_len, head_dim,
                                    dtype, weight.device)

    def clear_kv_cache(self) -> None:
        for attn in self.attention_layers():
            attn.kv_cache = None

    # --- looking inside ---------------------------------------------------------------------------

    @torch.no_grad()
    def attention_maps(self, idx: torch.Tensor) -> list[torch.Tensor]:
        """The attention weights of every layer, each [B, n_head, T, T], for visualization."""
        layers = self.attention_layers()
        for attn in layers:
            attn.record_attention = True
        try:
            self(idx)
        finally:
            for attn in layers:
                attn.record_attention = False
        return [attn.last_attention for attn in layers]

    # --- training ---------------------------------------------------------------------------------

    def configure_optimizer(self, weight_decay: float, lr: float, betas: tuple[float, float],
                            device_type: str) -> torch.optim.AdamW:
        """AdamW that decays matrices (2-D weights) only: not biases, LayerNorms or gains."""
        params = {name: p for name, p in self.named_parameters() if p.requires_grad}
        decay = [p for p in params.values() if p.dim() >= 2]
        no_decay = [p for p in params.values() if p.dim() < 2]
        groups = [
            {"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ]
        # The fused kernel is a single launch per step on GPUs; on CPU the default is fine.
        fused = device_type == "cuda"
        return torch.optim.AdamW(groups, lr=lr, betas=betas, fused=fused)


def empty_model(config: GPTConfig, device: str | torch.device = "cpu") -> GPT:
    """A model with allocated but unset weights, for loading saved ones into: built on the meta
    device with nn.init skipped, so no time goes into a random initialization that the load
    overwrites (for GPT-2 small, about half of loading it). device "meta": weights that are only
    shapes, to compare with or to load_state_dict(assign=True) into."""
    with torch.device("meta"), _SkipInit():
        model = GPT(config)
    if torch.device(device).type == "meta":
        return model
    model = model.to_empty(device=device)
    if config.tie_weights:  # to_empty gives every parameter its own storage: tie the head again
        model.lm_head.weight = model.transformer.wte.weight
    return model


class _SkipInit(TorchFunctionMode):
    """nn.init's functions do nothing while it is on (in this thread only). On the meta device
    they fill nothing anyway, but are not free: the first one imports torch._dynamo, a second
    on a small CPU, which loading a model otherwise never needs."""

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if getattr(func, "__module__", None) == "torch.nn.init":
            return kwargs["tensor"] if "tensor" in kwargs else args[0]
        return func(*args, **kwargs)


def count_params(config: GPTConfig) -> int:
    """GPT(config).num_params(), by arithmetic: nothing is built, so it is instant for any size."""
    E, b = config.n_embd, int(config.bias)
    ln = 0 if config.layer_norm == "none" else E * (1 + b)  # weight, and bias if any
    block = 2 * ln  # ln_1 and ln_2, whatever the block holds
    if config.attention:
        block += E * 3 * E + b * 3 * E + E * E + b * E  # c_attn, c_proj
    if config.mlp:
        block += E * 4 * E + b * 4 * E + 4 * E * E + b * E  # c_fc, c_proj
    n = config.vocab_size * E + config.n_layer * block  # wte, the blocks
    if config.position_embedding:
        n += config.block_size * E
    if config.layer_norm == "pre":
        n += ln  # ln_f
    if not config.tie_weights:
        n += config.vocab_size * E  # the head's own matrix
    return n


def check_fits_in_memory(config: GPTConfig, device: torch.device) -> None:
    """Refuse a model whose training state alone (fp32 weights, gradients and AdamW's two
    moments: 16 bytes a parameter) exceeds the device's memory, before allocating any of it.
    A lower bound, activations not counted: it refuses only what cannot possibly fit."""
    from minigpt.errors import ConfigError

    if device.type == "cuda":
        total = torch.cuda.get_device_properties(device).total_memory
    elif device.type == "cpu" and hasattr(os, "sysconf"):
        try:
            total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (ValueError, OSError):
            return
    else:
        return
    n = count_params(config)
    if 16 * n > total:
        shown = f"{n:,}" if n < 10**15 else f"{n:.2e}"
        raise ConfigError(f"a model of {shown} parameters needs at least {16 * n / 1e9:,.4g} GB to "
                          f"train (weights, gradients, AdamW's moments), more than the "
                          f"{total / 1e9:,.1f} GB of {device.type} memory here; use a smaller "
                          "--n-layer, --n-embd or --block-size")
