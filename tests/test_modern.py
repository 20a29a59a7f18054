"""The switches that add a modern part: each computes what its paper says, and cached decoding
equals recomputing the whole sequence with it on."""

from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT, CausalSelfAttention, count_params, make_norm, rope_angles, rotate
from minigpt.model.switches import COMBINATIONS

TINY = GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32)
LLAMA, MODERN = (v.settings for v in COMBINATIONS)


def make(**changes) -> GPT:
    torch.manual_seed(0)
    return GPT(replace(TINY, **changes)).eval()


def tokens(T=16, seed=1):
    return torch.randint(TINY.vocab_size, (1, T), generator=torch.Generator().manual_seed(seed))


# --- each switch against its definition ----------------------------------------------------------

def test_rope_scores_depend_only_on_the_distance():
    """Su et al. 2021: with q and k rotated by their positions, q_i . k_j is a function of i - j."""
    torch.manual_seed(0)
    head_dim = 8
    q, k = torch.randn(head_dim), torch.randn(head_dim)

    def score(i: int, j: int) -> float:
        cos, sin = rope_angles(head_dim, 0, 32, q.device, theta=10000.0)
        at = lambda x, p: rotate(x.view(1, 1, 1, -1), (cos[p:p + 1], sin[p:p + 1])).flatten()  # noqa: E731
        return float(at(q, i) @ at(k, j))

    for shift in (1, 5, 13):
        assert score(7, 3) == pytest.approx(score(7 + shift, 3 + shift), abs=1e-5)
    assert score(7, 3) != pytest.approx(score(7, 5), abs=1e-3)  # another distance: another score
    cos, sin = rope_angles(head_dim, 0, 1, q.device, theta=10000.0)  # position 0: no turn at all
    torch.testing.assert_close(rotate(q.view(1, 1, 1, -1), (cos, sin)).flatten(), q)


def test_rope_replaces_the_position_embedding_and_still_tells_order():
    model = make(position="rope")
    assert "wpe" not in model.transformer
    idx = tokens()
    swapped = idx.clone()
    swapped[0, 2], swapped[0, 3] = idx[0, 3], idx[0, 2]
    assert not torch.allclose(model(idx)[0][0, -1], model(swapped)[0][0, -1], atol=1e-4)


def test_rmsnorm_is_x_over_its_root_mean_square_times_the_weight():
    norm = make_norm(replace(TINY, norm="rmsnorm"))
    torch.manual_seed(0)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(TINY.n_embd))
    x = torch.randn(3, TINY.n_embd) * 5 + 2
    expected = x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + TINY.layer_norm_epsilon) * norm.weight
    torch.testing.assert_close(norm(x), expected)
    assert not hasattr(norm, "bias") or norm.bias is None  # no mean subtracted, no bias


def test_rmsnorm_under_bf16_autocast_is_computed_in_float32_like_layernorm():
    """Autocast gives it bf16 activations and a float32 weight, which PyTorch's fused kernel
    refuses with a warning in every run; it takes float32 as autocast gives LayerNorm, and
    returns the input's dtype."""
    import warnings

    norm = make_norm(replace(TINY, norm="rmsnorm"))
    x = torch.randn(3, TINY.n_embd).bfloat16()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with torch.autocast("cpu", dtype=torch.bfloat16):
            y = norm(x)
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y, norm(x.float()).bfloat16())


def test_qk_norm_makes_attention_blind_to_the_input_s_scale():
    """Queries and keys normalized per head: scaling the input (no biases) changes no attention
    weight; without QK-norm the scores grow with its square."""
    x = torch.randn(1, 8, TINY.n_embd, generator=torch.Generator().manual_seed(2))

    def weights(**changes) -> list[torch.Tensor]:
        torch.manual_seed(0)
        attn = CausalSelfAttention(replace(TINY, bias=False, attn_impl="explicit", **changes))
        attn.record_attention = True
        found = []
        for scale in (1.0, 30.0):
            attn(x * scale)
            found.append(attn.last_attention)
        return found

    normed = weights(qk_norm=True)
    torch.testing.assert_close(normed[0], normed[1], atol=1e-5, rtol=1e-4)
    plain = weights()
    assert not torch.allclose(plain[0], plain[1], atol=1e-3)


def _mlp_by_hand(model: GPT, x: torch.Tensor, activation) -> torch.Tensor:
    mlp = model.transformer.h[0].mlp
    return F.linear(activation(F.linear(x, mlp.c_fc.weight, mlp.c_fc.bias)), mlp.c_proj.weight,
                    mlp.c_proj.bias)


def test_swiglu_is_silu_of_the_gate_times_the_up_projection():
    """Shazeer 2020: down(silu(gate(x)) * up(x)), gate and up side by side in c_fc."""
    model = make(activation="swiglu", mlp_ratio=8 / 3)
    hidden = round(8 / 3 * TINY.n_embd)
    assert model.transformer.h[0].mlp.c_fc.out_features == 2 * hidden
    x = torch.randn(2, 5, TINY.n_embd)

    def swiglu(h):
        gate, up = h[..., :hidden], h[..., hidden:]
        return F.silu(gate) * up

    torch.testing.assert_close(model.transformer.h[0].mlp(x), _mlp_by_hand(model, x, swiglu))


def test_relu2_is_relu_squared():
    model = make(activation="relu2")
    x = torch.randn(2, 5, TINY.n_embd)
    torch.testing.assert_close(model.transformer.h[0].mlp(x),
                               _mlp_by_hand(model, x, lambda h: torch.relu(h) ** 2))


@pytest.mark.parametrize("ratio", [1, 2, 8, 2.5])
def test_mlp_ratio_sets_the_mlp_s_width(ratio):
    model = make(mlp_ratio=ratio)
    assert model.transformer.h[0].mlp.c_fc.out_features == round(ratio * TINY.n_embd)
    assert model.transformer.h[0].mlp.c_proj.in_features == round(ratio * TINY.n_embd)


@pytest.mark.parametrize("n_kv_head", [1, 2])
def test_grouped_query_attention_is_attention_with_shared_keys_and_values(n_kv_head):
    """GQA equals multi-head attention whose heads in a group have the same key and value
    weights: copied into a GPT-2 attention layer, the outputs are the same."""
    grouped = make(n_kv_head=n_kv_head)
    plain = make()
    head_dim, group = TINY.n_embd // TINY.n_head, TINY.n_head // n_kv_head
    state = grouped.state_dict()
    for i in range(TINY.n_layer):
        name = f"transformer.h.{i}.attn.c_attn"
        q, k, v = state[f"{name}.weight"].split([TINY.n_embd, n_kv_head * head_dim,
                                                 n_kv_head * head_dim])
        qb, kb, vb = state[f"{name}.bias"].split([TINY.n_embd, n_kv_head * head_dim,
                                                  n_kv_head * head_dim])
        widen = lambda t: t.view(n_kv_head, head_dim, *t.shape[1:]).repeat_interleave(  # noqa: E731
            group, dim=0).reshape(TINY.n_embd, *t.shape[1:])
        state[f"{name}.weight"] = torch.cat([q, widen(k), widen(v)])
        state[f"{name}.bias"] = torch.cat([qb, widen(kb), widen(vb)])
    plain.load_state_dict(state)
    idx = tokens()
    torch.testing.assert_close(grouped(idx)[0], plain(idx)[0], atol=1e-5, rtol=1e-5)
    assert grouped.num_params() < plain.num_params()


def test_without_the_mask_a_token_sees_the_future_and_mask_on_puts_it_back():
    model = make(causal=False)
    idx = tokens()
    later = idx.clone()
    later[0, -1] = (idx[0, -1] + 1) % TINY.vocab_size
    assert not torch.allclose(model(idx)[0][0, 0], model(later)[0][0, 0], atol=1e-5)
    with model.mask_on():
        torch.testing.assert_close(model(idx)[0][0, :-1], model(later)[0][0, :-1])
    assert not model.attention_layers()[0].causal  # only for the block


@pytest.mark.parametrize("changes", [
    {"position": "rope"}, {"norm": "rmsnorm"}, {"qk_norm": True}, {"activation": "swiglu"},
    {"activation": "relu2"}, {"mlp_ratio": 2.5}, {"n_kv_head": 1}, {"n_kv_head": 2},
    LLAMA, MODERN, {**LLAMA, "n_kv_head": 2}, {"qk_norm": True, "norm": "rmsnorm", "bias": False},
])
def test_parameters_are_counted_without_building_the_model(changes):
    config = replace(TINY, **changes)
    assert count_params(config) == GPT(config).num_params()


def test_impossible_combinations_are_one_line():
    from minigpt.errors import ConfigError

    with pytest.raises(ConfigError, match="divisible by n_kv_head"):
        replace(TINY, n_kv_head=3)
    with pytest.raises(ConfigError, match="must be even"):
        GPTConfig(vocab_size=10, block_size=8, n_layer=1, n_head=2, n_embd=6, position="rope")


# --- decoding: the cache equals recomputing everything ------------------------------------------

@pytest.mark.parametrize("changes", [
    {"position": "rope"}, {"norm": "rmsnorm"}, {"qk_norm": True}, {"activation": "swiglu"},
    {"activation": "relu2"}, {"mlp_ratio": 2}, {"n_kv_head": 1}, {"n_kv_head": 2}, LLAMA,
    MODERN, {**LLAMA, "n_kv_head": 1, "attn_impl": "explicit"},
])
def test_cached_decoding_equals_full_recomputation(changes):
    model = make(**changes)
    idx = tokens()
    full, _ = model(idx)
    model.setup_kv_cache(batch_size=1)
    if changes.get("n_kv_head"):  # the cache keeps the key/value heads only
        assert model.attention_layers()[0].kv_cache.k.size(1) == changes["n_kv_head"]
    pieces = [model(idx[:, :5], input_pos=0)[0]]  # prefill
    pieces.append(model(idx[:, 5:8], input_pos=5)[0])  # a chunk after cached ones
    pieces += [model(idx[:, p:p + 1], input_pos=p)[0] for p in range(8, idx.size(1))]
    model.clear_kv_cache()
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("variant", COMBINATIONS, ids=lambda v: v.name)
def test_the_modern_sets_train(variant):
    model = make(**variant.settings).train()
    idx = tokens()
    _, loss = model(idx[:, :-1], idx[:, 1:])
    loss.backward()
    assert torch.isfinite(loss)
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
