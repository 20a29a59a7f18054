import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT, Block


def make(cfg: GPTConfig, **changes) -> GPT:
    torch.manual_seed(0)
    return GPT(replace(cfg, **changes)).eval()


def tokens(cfg, T=None, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(cfg.vocab_size, (2, T or cfg.block_size), generator=g)


def test_parameter_names_are_gpt2s(tiny_model_config):
    names = set(make(tiny_model_config).state_dict())
    expected = {"transformer.wte.weight", "transformer.wpe.weight", "transformer.ln_f.weight",
                "transformer.ln_f.bias", "lm_head.weight"}
    for i in range(tiny_model_config.n_layer):
        for part in ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias",
                     "attn.c_proj.weight", "attn.c_proj.bias", "ln_2.weight", "ln_2.bias",
                     "mlp.c_fc.weight", "mlp.c_fc.bias", "mlp.c_proj.weight", "mlp.c_proj.bias"):
            expected.add(f"transformer.h.{i}.{part}")
    assert names == expected


def test_gpt2_small_has_124m_parameters():
    with torch.device("meta"):
        model = GPT(GPTConfig())
    assert model.num_params() == 124_439_808


def test_flops_per_token_is_palms_count():
    # GPT-2 small at context 1024: 6 x 123.65M weights + 12 x 12 layers x 768 x 1024 = 855M
    gpt2 = GPTConfig(vocab_size=50257, block_size=1024, n_layer=12, n_head=12, n_embd=768)
    with torch.device("meta"):  # shapes alone: no 124M weights to fill with random numbers
        model = GPT(gpt2)
        no_attention = GPT(replace(gpt2, n_layer=1, attention=False))
        untied = GPT(replace(gpt2, tie_weights=False))
    assert model.flops_per_token() == 6 * 123_653_376 + 12 * 12 * 768 * 1024
    assert no_attention.flops_per_token() == 6 * no_attention.num_params(non_embedding=True)
    # an untied head is a second vocab x n_embd matrix, but the embedding lookup costs nothing
    assert untied.flops_per_token() == model.flops_per_token()


def test_head_is_tied_to_token_embedding(tiny_model_config):
    model = make(tiny_model_config)
    assert model.lm_head.weight is model.transformer.wte.weight


def test_explicit_and_fused_attention_agree(tiny_model_config):
    fused = make(tiny_model_config, attn_impl="sdpa")
    explicit = make(tiny_model_config, attn_impl="explicit")
    explicit.load_state_dict(fused.state_dict())
    idx = tokens(tiny_model_config)
    torch.testing.assert_close(explicit(idx)[0], fused(idx)[0], atol=1e-5, rtol=1e-5)


def test_bf16_attention_on_cpu_is_computed_in_fp32(tiny_model_config):
    # The CPU fast path: bf16 q, k, v are attended in fp32 (faster there), forward and backward,
    # so the result is exactly fp32 attention rounded to bf16, the same as the plain path up to that.
    attn = make(tiny_model_config).transformer.h[0].attn
    q, k, v = (torch.randn(2, 4, 16, 8).bfloat16().requires_grad_() for _ in range(3))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = attn.fused_attention(q, k, v)
    expected = F.scaled_dot_product_attention(q.float(), k.float(), v.float(), is_causal=True)
    assert out.dtype == torch.bfloat16
    assert torch.equal(out, expected.bfloat16())
    torch.testing.assert_close(out.float(), attn.explicit_attention(q.float(), k.float(), v.float()),
                               atol=1e-2, rtol=1e-2)
    out.float().sum().backward()
    assert q.grad.dtype == torch.bfloat16 and q.grad.abs().sum() > 0


def test_mlp_uses_gpt2_tanh_gelu(tiny_model_config):
    mlp = make(tiny_model_config).transformer.h[0].mlp
    x = torch.randn(3, tiny_model_config.n_embd)
    h = mlp.c_fc(x)
    gelu_new = 0.5 * h * (1 + torch.tanh(math.sqrt(2 / math.pi) * (h + 0.044715 * h ** 3)))
    torch.testing.assert_close(mlp(x), mlp.c_proj(gelu_new))


def test_the_compiled_form_of_gelu_is_the_same_function(monkeypatch):
    from minigpt.model.gpt import gelu_tanh

    x = torch.linspace(-8, 8, 10_001)
    eager = gelu_tanh(x)
    monkeypatch.setattr(torch.compiler, "is_compiling", lambda: True)  # the sigmoid form, eagerly
    sigmoid_form = gelu_tanh(x)
    torch.testing.assert_close(sigmoid_form, F.gelu(x, approximate="tanh"), atol=1e-6, rtol=0)
    torch.testing.assert_close(sigmoid_form, eager, atol=1e-6, rtol=0)


@pytest.mark.parametrize("attn_impl", ["sdpa", "explicit"])
def test_kv_cache_decoding_matches_full_recompute(tiny_model_config, attn_impl):
    model = make(tiny_model_config, attn_impl=attn_impl)
    idx = tokens(tiny_model_config)[:1]
    full, _ = model(idx)
    model.setup_kv_cache(batch_size=1)
    prompt = 5
    pieces = [model(idx[:, :prompt], input_pos=0)[0]]  # prefill
    pieces.append(model(idx[:, prompt:prompt + 3], input_pos=prompt)[0])  # a chunk after cached ones
    for pos in range(prompt + 3, idx.size(1)):  # then one token at a time
        pieces.append(model(idx[:, pos:pos + 1], input_pos=pos)[0])
    model.clear_kv_cache()
    torch.testing.assert_close(torch.cat(pieces, dim=1), full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("attn_impl", ["sdpa", "explicit"])
def test_bf16_weights_decode_from_an_fp32_cache_on_cpu(tiny_model_config, attn_impl):
    """Attention on a CPU runs in fp32, so the cache holds fp32: nothing to upcast per token."""
    model = make(tiny_model_config, attn_impl=attn_impl).to(torch.bfloat16)
    idx = tokens(tiny_model_config)[:1]
    full, _ = model(idx)
    model.setup_kv_cache(batch_size=1)
    assert model.attention_layers()[0].kv_cache.k.dtype == torch.float32
    pieces = [model(idx[:, :5], input_pos=0)[0]]
    pieces += [model(idx[:, pos:pos + 1], input_pos=pos)[0] for pos in range(5, idx.size(1))]
    model.clear_kv_cache()
    decoded = torch.cat(pieces, dim=1)
    assert decoded.dtype == torch.bfloat16
    torch.testing.assert_close(decoded.float(), full.float(), atol=0.1, rtol=0.05)


def test_sequence_longer_than_context_is_refused(tiny_model_config):
    model = make(tiny_model_config)
    with pytest.raises(ValueError, match="exceeds the context"):
        model(tokens(tiny_model_config, T=tiny_model_config.block_size + 1))


def test_attention_maps_are_causal_distributions(tiny_model_config):
    model = make(tiny_model_config)
    maps = model.attention_maps(tokens(tiny_model_config, T=8))
    assert len(maps) == tiny_model_config.n_layer
    for weights in maps:
        assert weights.shape == (2, tiny_model_config.n_head, 8, 8)
        torch.testing.assert_close(weights.sum(-1), torch.ones(2, tiny_model_config.n_head, 8))
        assert torch.all(weights.triu(diagonal=1) == 0)


# --- ablation switches: each one changes what the model can compute --------------------------------


def test_without_attention_a_position_sees_only_itself(tiny_model_config):
    idx = tokens(tiny_model_config, T=8)
    changed = idx.clone()
    changed[:, 0] = (changed[:, 0] + 1) % tiny_model_config.vocab_size
    baseline, ablated = make(tiny_model_config), make(tiny_model_config, attention=False)
    assert not torch.allclose(baseline(idx)[0][:, -1], baseline(changed)[0][:, -1])
    torch.testing.assert_close(ablated(idx)[0][:, -1], ablated(changed)[0][:, -1])
    assert all(block.attn is None for block in ablated.transformer.h)


def test_without_position_embedding_order_is_invisible(tiny_model_config):
    # One layer: the last token attends to the earlier ones as a set. (With more layers, earlier
    # positions see their own causal prefixes, which is how deeper models recover some order.)
    cfg = replace(tiny_model_config, n_layer=1)
    idx = tokens(cfg, T=8)
    shuffled = torch.cat([idx[:, :7].flip(1), idx[:, 7:]], dim=1)  # same last token, others reordered
    baseline, ablated = make(cfg), make(cfg, position="none")
    assert "wpe" not in ablated.transformer
    torch.testing.assert_close(ablated(idx)[0][:, -1], ablated(shuffled)[0][:, -1])
    assert not torch.allclose(baseline(idx)[0][:, -1], baseline(shuffled)[0][:, -1])


def test_without_residual_the_block_output_is_the_sublayers_output(tiny_model_config):
    block = Block(replace(tiny_model_config, residual=False)).eval()
    x = torch.randn(1, 5, tiny_model_config.n_embd)
    expected = block.mlp(block.ln_2(block.attn(block.ln_1(x))))
    torch.testing.assert_close(block(x), expected)
    with_residual = Block(tiny_model_config).eval()
    with_residual.load_state_dict(block.state_dict())
    h = x + with_residual.attn(with_residual.ln_1(x))
    torch.testing.assert_close(with_residual(x), h + with_residual.mlp(with_residual.ln_2(h)))


def test_post_ln_normalizes_after_the_addition(tiny_model_config):
    block = Block(replace(tiny_model_config, layer_norm="post")).eval()
    out = block(torch.randn(1, 5, tiny_model_config.n_embd) * 10)
    torch.testing.assert_close(out.mean(-1), torch.zeros(1, 5), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.var(-1, unbiased=False), torch.ones(1, 5), atol=1e-3, rtol=0)


def test_no_ln_has_no_layer_norm(tiny_model_config):
    model = make(tiny_model_config, layer_norm="none")
    assert not any(isinstance(m, torch.nn.LayerNorm) for m in model.modules())
    assert any(isinstance(m, torch.nn.LayerNorm) for m in make(tiny_model_config).modules())


def test_without_mlp_blocks_have_no_mlp(tiny_model_config):
    model = make(tiny_model_config, mlp=False)
    assert all(block.mlp is None for block in model.transformer.h)
    assert model.num_params() < make(tiny_model_config).num_params()


def test_untied_head_has_its_own_matrix(tiny_model_config):
    model = make(tiny_model_config, tie_weights=False)
    assert model.lm_head.weight is not model.transformer.wte.weight
    extra = tiny_model_config.vocab_size * tiny_model_config.n_embd
    assert model.num_params() == make(tiny_model_config).num_params() + extra


def test_every_ablation_still_trains(tiny_model_config):
    idx = tokens(tiny_model_config)
    for changes in ({"residual": False}, {"attention": False}, {"mlp": False},
                    {"position": "none"}, {"layer_norm": "post"},
                    {"layer_norm": "none"}, {"tie_weights": False}):
        model = make(tiny_model_config, **changes).train()
        _, loss = model(idx[:, :-1], idx[:, 1:])
        loss.backward()
        assert torch.isfinite(loss)


def test_optimizer_decays_only_matrices(tiny_model_config):
    model = make(tiny_model_config)
    decay, no_decay = model.configure_optimizer(0.1, 1e-3, (0.9, 0.99), "cpu").param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decay["params"])
    assert all(p.dim() == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))


def test_loss_is_cross_entropy_of_the_logits(tiny_model_config):
    model = make(tiny_model_config)
    idx = tokens(tiny_model_config)
    logits, loss = model(idx[:, :-1], idx[:, 1:])
    expected = F.cross_entropy(logits.reshape(-1, logits.size(-1)), idx[:, 1:].reshape(-1))
    torch.testing.assert_close(loss, expected)


@pytest.mark.parametrize("changes", [
    {}, {"bias": False}, {"tie_weights": False}, {"position": "none"},
    {"attention": False}, {"mlp": False}, {"layer_norm": "post"}, {"layer_norm": "none"},
    {"layer_norm": "none", "bias": False, "attention": False, "tie_weights": False},
])
def test_parameters_are_counted_without_building_the_model(tiny_model_config, changes):
    from minigpt.model.gpt import count_params

    config = replace(tiny_model_config, **changes)
    assert count_params(config) == GPT(config).num_params()


def test_a_model_too_large_for_memory_is_refused_before_it_is_built(tiny_model_config):
    """A huge --n-layer would otherwise allocate layer after layer until the OOM killer came."""
    from minigpt.errors import ConfigError
    from minigpt.model.gpt import check_fits_in_memory, count_params

    check_fits_in_memory(tiny_model_config, torch.device("cpu"))
    huge = replace(tiny_model_config, n_layer=10**9)
    with pytest.raises(ConfigError, match=f"{count_params(huge):,} parameters .* GB"):
        check_fits_in_memory(huge, torch.device("cpu"))
