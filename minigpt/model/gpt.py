"""GPT-2, top to bottom, and the modern parts its switches put in place of GPT-2's.

    tokens -> token embedding (wte) + position embedding (wpe)
           -> n_layer x Block:  x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
           -> final LayerNorm (ln_f) -> LM head (the transpose of wte) -> logits

Parameter names are GPT-2's own (transformer.wte, transformer.h.0.attn.c_attn, ...), so pretrained
weights map one to one. Every switch of model/switches.py is an `if` you can find below:

    position     learned wpe (GPT-2) | rope: q and k rotated by position (rotate, in attention)
    norm         LayerNorm (GPT-2) | RMSNorm (make_norm); layer_norm: where it goes (Block)
    qk_norm      queries and keys normalized per head before their product (attention)
    activation   GELU (GPT-2) | SwiGLU | ReLU squared (MLP); mlp_ratio: the MLP's width
    n_kv_head    key/value heads shared by groups of query heads: GQA (attention)
    causal       the causal mask (attention); residual, attention, mlp: take a part out (Block)
"""

from __future__ import annotations

import math
import os
from contextlib import contextmanager

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


def rope_angles(head_dim: int, start: int, length: int, device,
                theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of RoPE's angles for positions start.., [length, head_dim]: position p turns
    channel pair i by p / theta^(2i / head_dim), fast turns in the first pairs, slow in the last.
    Hugging Face Llama's layout: channel i pairs with channel i + head_dim / 2."""
    inv_freq = 1.0 / theta ** (torch.arange(0, head_dim, 2, device=device).float() / head_dim)
    positions = torch.arange(start, start + length, device=device).float()
    angles = torch.outer(positions, inv_freq).repeat(1, 2)
    return angles.cos(), angles.sin()


def rotate(x: torch.Tensor, rope: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x [B, heads, T, head_dim] rotated by position (RoPE): a query at position i and a key at j
    then score by their distance i - j alone, not where they are."""
    cos, sin = (t.to(x.dtype) for t in rope)
    first, second = x.chunk(2, dim=-1)
    return x * cos + torch.cat([-second, first], dim=-1) * sin


class RMSNorm(nn.RMSNorm):
    """x / rms(x) * w, in float32 as autocast computes LayerNorm: under bf16 autocast x comes
    in bf16 and w is float32, which PyTorch's fused kernel refuses (with a warning)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return super().forward(x.float()).type_as(x)


def make_norm(config: GPTConfig, dim: int | None = None) -> nn.Module:
    """GPT-2's LayerNorm (x - mean) / std * w + b, or RMSNorm x / rms * w (switch "norm")."""
    dim = dim or config.n_embd
    if config.norm == "rmsnorm":
        return RMSNorm(dim, eps=config.layer_norm_epsilon)
    return nn.LayerNorm(dim, eps=config.layer_norm_epsilon, bias=config.bias)


def block_norm(config: GPTConfig) -> nn.Module:
    """The norm of a block's sublayers and of the end, or none (switch "layer_norm": "none")."""
    return nn.Identity() if config.layer_norm == "none" else make_norm(config)


class CausalSelfAttention(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.n_kv_head or config.n_head  # GPT-2: one key/value head per query
        self.head_dim = config.n_embd // config.n_head
        self.attn_impl = config.attn_impl
        self.dropout = config.dropout
        self.causal = config.causal  # switch "causal": off, a token sees the whole sequence
        # q, k and v for all heads in one matrix multiply
        kv = self.n_kv_head * self.head_dim
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * kv, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        if config.qk_norm:  # switch "qk_norm": each head's queries and keys normalized
            self.q_norm = make_norm(config, self.head_dim)
            self.k_norm = make_norm(config, self.head_dim)
        self.qk_norm = config.qk_norm
        self.attn_dropout = nn.Dropout(config.dropout)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.kv_cache: KVCache | None = None
        # Set by GPT.attention_maps: keep the softmax weights of the last forward pass.
        self.record_attention = False
        self.last_attention: torch.Tensor | None = None

    def forward(self, x: torch.Tensor, input_pos: int | None = None,
                rope: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        B, T, C = x.size()
        kv = self.n_kv_head * self.head_dim
        q, k, v = self.c_attn(x).split([C, kv, kv], dim=2)
        # [B, T, C] -> [B, heads, T, head_dim]: each head attends with its own slice of channels
        q = q.view(B, T, self.n_head, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_head, self.head_dim).transpose(1, 2)
        if self.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        if rope is not None:  # switch "position": "rope"
            q, k = rotate(q, rope), rotate(k, rope)

        if self.kv_cache is not None:
            k, v = self.kv_cache.update(input_pos, k, v)
            q = q.to(k.dtype)  # attend in the cache's precision (fp32 on a CPU: setup_kv_cache)
        if self.n_kv_head < self.n_head:  # switch "n_kv_head": each k, v head serves a group
            group = self.n_head // self.n_kv_head
            k, v = k.repeat_interleave(group, dim=1), v.repeat_interleave(group, dim=1)

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
        if self.causal:
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
        if not self.causal or n_queries == 1:  # no mask, or one new token that sees every key
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p)
        if n_queries == n_keys:  # the whole sequence: the usual lower-triangular mask
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, is_causal=True)
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


def mlp_width(config: GPTConfig) -> int:
    """The MLP's hidden width: mlp_ratio x n_embd (GPT-2: 4)."""
    return round(config.mlp_ratio * config.n_embd)


class MLP(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        hidden = mlp_width(config)
        self.activation = config.activation
        # SwiGLU's gate and its up projection in one matrix multiply, as q, k and v are
        up = 2 * hidden if config.activation == "swiglu" else hidden
        self.c_fc = nn.Linear(config.n_embd, up, bias=config.bias)
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.activation == "swiglu":  # Shazeer 2020: silu(gate) times the up projection
            gate, up = h.chunk(2, dim=-1)
            h = F.silu(gate) * up
        elif self.activation == "relu2":  # ReLU squared (Primer, So et al. 2021)
            h = F.relu(h).square()
        else:
            h = gelu_tanh(h)
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.residual = config.residual
        self.layer_norm = config.layer_norm
        self.ln_1 = block_norm(config)
        self.attn = CausalSelfAttention(config) if config.attention else None
        self.ln_2 = block_norm(config)
        self.mlp = MLP(config) if config.mlp else None

    def forward(self, x: torch.Tensor, input_pos: int | None = None, rope=None) -> torch.Tensor:
        if self.attn is not None:  # ablation "attention": without it no token sees another
            x = self.sublayer(x, self.ln_1, lambda h: self.attn(h, input_pos, rope))
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
        if config.position == "learned":  # GPT-2; "rope" turns q and k instead; "none": neither
            modules["wpe"] = nn.Embedding(config.block_size, config.n_embd)
        modules["drop"] = nn.Dropout(config.dropout)
        modules["h"] = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        # Pre-LN needs a final LayerNorm; post-LN blocks already end with one.
        modules["ln_f"] = block_norm(config) if config.layer_norm == "pre" else nn.Identity()
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
        Targets of -1 are left out of the loss (a fine-tuning run's masked tokens).
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
        rope = None
        if self.config.position == "learned":
            pos = torch.arange(start, start + T, dtype=torch.long, device=idx.device)
            x = x + self.transformer.wpe(pos)
        elif self.config.position == "rope":  # the angles of these positions, for every layer
            rope = rope_angles(self.config.n_embd // self.config.n_head, start, T, idx.device,
                               self.config.rope_theta)
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x, input_pos, rope)
        x = self.transformer.ln_f(x)
        logits = self.lm_head(x[:, -1:] if last_only else x)

        loss = None
        if targets is not None:
            # in fp32 whatever the logits are (bf16 weights give bf16 logits): a bf16 loss is
            # rounded to about 0.4%
            loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets.reshape(-1),
                                   ignore_index=-1)
        return logits, loss

    @contextmanager
    def mask_on(self):
        """Attention with the causal mask for the block, whatever switch "causal" says: how a
        model trained without it would have to generate (ablate's no-mask is judged so)."""
        layers = self.attention_layers()
        was = [attn.causal for attn in layers]
        for attn in layers:
            attn.causal = True
        try:
            yield self
        finally:
            for attn, causal in zip(layers, was, strict=True):
                attn.causal = causal

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
        weight = self.transformer.wte.weight
        # on a CPU attention runs in fp32 (see fused_attention), so the cache holds fp32: cast
        # once when stored instead of the whole cache upcast for every new token
        dtype = torch.float32 if weight.device.type == "cpu" else weight.dtype
        for attn in self.attention_layers():  # with GQA, only the key/value heads are kept
            attn.kv_cache = KVCache(batch_size, attn.n_kv_head, max_len, attn.head_dim,
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
        """AdamW that decays matrices (2-D weights) only: not biases, LayerNorms or gains, nor a
        matrix of which only some rows train (LoRA's new tokens, model/lora.py)."""
        params = {name: p for name, p in self.named_parameters() if p.requires_grad}
        decay = [p for p in params.values() if p.dim() >= 2 and not hasattr(p, "trainable_rows")]
        no_decay = [p for p in params.values() if p.dim() < 2 or hasattr(p, "trainable_rows")]
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
    E, b, hd = config.n_embd, int(config.bias), config.n_embd // config.n_head

    def norm(dim: int) -> int:  # a weight, and a LayerNorm's bias if any
        return dim if config.norm == "rmsnorm" else dim * (1 + b)

    ln = 0 if config.layer_norm == "none" else norm(E)
    block = 2 * ln  # ln_1 and ln_2, whatever the block holds
    if config.attention:
        qkv = E + 2 * (config.n_kv_head or config.n_head) * hd
        block += E * qkv + b * qkv + E * E + b * E  # c_attn, c_proj
        block += 2 * norm(hd) if config.qk_norm else 0
    if config.mlp:
        hidden = round(config.mlp_ratio * E)
        up = 2 * hidden if config.activation == "swiglu" else hidden
        block += E * up + b * up + hidden * E + b * E  # c_fc, c_proj
    n = config.vocab_size * E + config.n_layer * block  # wte, the blocks
    if config.position == "learned":
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
