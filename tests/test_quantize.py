"""bf16 and int8 weights for decoding compute what the fp32 model computes, up to their rounding."""

import copy

import pytest
import torch
import torch.nn as nn

from minigpt.backends import kernels
from minigpt.backends.kernels import PackedLinear, packed_dtypes
from minigpt.errors import ConfigError
from minigpt.infer.quantize import Int8Linear, convert_weights
from minigpt.infer.sampling import SamplingConfig, generate
from minigpt.model.gpt import GPT


@pytest.fixture(scope="module")
def trained_model(tiny_train_config, english_text) -> tuple[GPT, object]:
    """int8's error depends on how the weights are spread: use weights that learned something
    (60 steps, trained once for the module's tests)."""
    from conftest import Corpus, prepare_data

    from minigpt.train.trainer import Trainer

    cfg = tiny_train_config.with_overrides(max_steps=60, sample_tokens=0)
    torch.manual_seed(0)
    trainer = Trainer(cfg, prepare_data(Corpus(english_text), cfg), device="cpu", dtype="fp32")
    for _ in trainer.run():
        pass
    return trainer.model.eval(), trainer


def test_int8_linear_keeps_one_scale_per_output_channel():
    torch.manual_seed(0)
    linear = nn.Linear(64, 40)
    q = Int8Linear(linear)
    assert q.weight.dtype == torch.int8 and q.scale.shape == (40,)
    assert q.weight.abs().amax(dim=1).tolist() == [127] * 40  # each row uses the whole range
    dequantized = q.weight.float() * q.scale.float()[:, None]
    # rounding to 1/127 of a row's largest weight, and a bf16 scale (8 bits of mantissa)
    assert (dequantized - linear.weight).abs().max() <= linear.weight.abs().max() * (0.5 / 127 + 1e-2)
    x = torch.randn(3, 5, 64)
    with torch.no_grad():
        torch.testing.assert_close(q(x).float(), linear(x), atol=3e-2, rtol=3e-2)


@pytest.mark.parametrize("in_features", [16, 24, 40, 100])  # the CPU kernel wants multiples of 16
def test_int8_linear_is_right_for_any_width(in_features):
    torch.manual_seed(0)
    linear = nn.Linear(in_features, 7)
    x = torch.randn(2, in_features)
    with torch.no_grad():
        expected = linear(x)
        assert (Int8Linear(linear)(x).float() - expected).abs().max() < 0.05 * expected.abs().max()


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["bf16", "int8"])
def test_converted_models_predict_like_fp32(trained_model, weights):
    model, trainer = trained_model
    converted = convert_weights(copy.deepcopy(model), weights)
    x, y = trainer.data.tokens.val[:33][:-1][None], trainer.data.tokens.val[1:33][None]
    with torch.no_grad():
        reference, ref_loss = model(x, y)
        logits, loss = converted(x, y)
    assert logits.dtype == torch.bfloat16
    assert (logits.float() - reference).abs().max() < 0.1 * reference.abs().max()
    assert abs(loss.item() - ref_loss.item()) < 0.02 * ref_loss.item()
    linears = [m for m in converted.modules() if isinstance(m, nn.Linear)]
    if weights == "int8":  # every matmul reads int8, the head too, which is no longer tied
        assert not linears and isinstance(converted.lm_head, Int8Linear)
        assert converted.transformer.wte.weight.dtype == torch.bfloat16
    else:
        assert all(p.dtype == torch.bfloat16 for p in converted.parameters())
    prompt = x[0, :5].tolist()
    greedy = SamplingConfig(strategy="greedy", max_new_tokens=10)
    assert len([t.id for t in generate(converted, prompt, greedy)]) == 10


def test_fp32_is_the_model_unchanged_and_unknown_formats_are_errors(tiny_model_config):
    model = GPT(tiny_model_config)
    assert convert_weights(model, "fp32") is model
    assert all(p.dtype == torch.float32 for p in model.parameters())
    with pytest.raises(ConfigError, match="unknown weight format 'fp8'"):
        convert_weights(model, "fp8")


def needs_packing(dtype):
    return pytest.mark.skipif(dtype not in packed_dtypes(),
                              reason=f"oneDNN does not pack {dtype} weights on this CPU")


@pytest.mark.parametrize("dtype", [pytest.param(d, marks=needs_packing(d))
                                   for d in (torch.float32, torch.bfloat16)])
@pytest.mark.parametrize("bias", [True, False])
def test_packed_linear_computes_what_linear_computes(dtype, bias):
    torch.manual_seed(0)
    linear = nn.Linear(64, 48, bias=bias).to(dtype)
    packed = PackedLinear(linear)
    for x in (torch.randn(1, 1, 64), torch.randn(2, 7, 64), torch.randn(7, 2, 64).transpose(0, 1)):
        x = x.to(dtype)  # the last one is not contiguous, as a slice of the residual stream may be
        with torch.no_grad():
            # bf16: the same products, the bias added before or after rounding to bf16
            tolerance = 1e-5 if dtype == torch.float32 else 2e-2
            torch.testing.assert_close(packed(x), linear(x), atol=tolerance, rtol=tolerance)


@pytest.mark.parametrize("weights", ["fp32", "bf16"])
def test_fp32_and_bf16_weights_are_packed_where_this_cpu_packs_them(tiny_model_config, weights):
    torch.manual_seed(0)
    model = GPT(tiny_model_config).eval()
    converted = convert_weights(copy.deepcopy(model), weights)
    dtype = torch.bfloat16 if weights == "bf16" else torch.float32
    if dtype in packed_dtypes():  # x86 with AVX2 (fp32) or AVX-512 (bf16 too)
        assert not [m for m in converted.modules() if isinstance(m, nn.Linear)]
        assert isinstance(converted.lm_head, PackedLinear)
    else:  # the Linears stay as they are, in the dtype asked for
        assert not [m for m in converted.modules() if isinstance(m, PackedLinear)]
        assert converted.lm_head.weight.dtype == dtype
    x = torch.randint(tiny_model_config.vocab_size, (1, tiny_model_config.block_size))
    unpacked = copy.deepcopy(model).to(dtype)
    with torch.no_grad():
        tolerance = 1e-4 if weights == "fp32" else 5e-2
        torch.testing.assert_close(converted(x)[0], unpacked(x)[0], atol=tolerance, rtol=tolerance)


def test_bf16_weights_stay_plain_linears_on_a_cpu_that_packs_only_fp32(tiny_model_config,
                                                                     monkeypatch):
    """An AVX2-only CPU: oneDNN refuses to pack bf16 there, so asking for bf16 weights must not
    try (it did, and `generate --weights bf16` crashed on such a machine)."""
    monkeypatch.setattr(kernels, "packed_dtypes", lambda: (torch.float32,))
    torch.manual_seed(0)
    model = convert_weights(GPT(tiny_model_config), "bf16")
    assert isinstance(model.lm_head, nn.Linear) and model.lm_head.weight.dtype == torch.bfloat16
    ids = [t.id for t in generate(model, [1, 2, 3], SamplingConfig(strategy="greedy",
                                                                   max_new_tokens=4))]
    assert len(ids) == 4
