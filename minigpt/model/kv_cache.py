"""The KV cache: keys and values of the tokens seen so far, so decoding a new token costs one
position instead of the whole sequence (gpt-fast's layout)."""

from __future__ import annotations

import torch
import torch.nn as nn


class KVCache(nn.Module):
    """Keys and values of the tokens seen so far, so decoding a new token costs one position.

    The buffers are allocated once for the longest sequence (gpt-fast's layout) and written at
    `input_pos`; they are not part of the state dict.
    """

    def __init__(self, batch_size: int, n_head: int, max_len: int, head_dim: int,
                 dtype: torch.dtype, device: torch.device):
        super().__init__()
        # one slot more than needed: a view of the keys so far is then never the whole buffer,
        # which torch.compile would see as a new case and compile again (generate --compile)
        shape = (batch_size, n_head, max_len + 1, head_dim)
        self.register_buffer("k", torch.zeros(shape, dtype=dtype, device=device), persistent=False)
        self.register_buffer("v", torch.zeros(shape, dtype=dtype, device=device), persistent=False)

    def update(self, input_pos: int, k: torch.Tensor, v: torch.Tensor):
        """Store k, v for positions input_pos.. and return the keys and values of all positions so far."""
        end = input_pos + k.size(2)
        self.k[:, :, input_pos:end] = k
        self.v[:, :, input_pos:end] = v
        return self.k[:, :, :end], self.v[:, :, :end]
