"""Every private torch call is guarded (backends/kernels.py): a torch that lacks one runs the plain
path and says so, never crashes."""

import pytest
import torch
import torch.nn as nn

from minigpt.backends import kernels
from minigpt.infer.quantize import Int8Linear, convert_weights
from minigpt.model.gpt import GPT


@pytest.fixture
def no_private_ops(monkeypatch):
    """A torch without oneDNN's private operators nor the int8 kernel."""
    monkeypatch.setattr(kernels, "_REORDER", None)
    monkeypatch.setattr(kernels, "_INT8_MM", None)
    monkeypatch.setattr(kernels, "_fallbacks", [])
    kernels.packed_dtypes.cache_clear()
    yield
    kernels.packed_dtypes.cache_clear()


def test_without_onednn_operators_weights_stay_plain_and_it_is_said(no_private_ops,
                                                                    tiny_model_config):
    torch.manual_seed(0)
    model = GPT(tiny_model_config).eval()
    x = torch.randint(0, tiny_model_config.vocab_size, (1, 8))
    expected = model(x)[0]
    converted = convert_weights(model, "fp32")
    assert not [m for m in converted.modules() if isinstance(m, kernels.PackedLinear)]
    torch.testing.assert_close(converted(x)[0], expected)
    assert any("weight packing" in line for line in kernels.fallbacks())


def test_without_the_int8_kernel_int8_weights_dequantize(no_private_ops):
    torch.manual_seed(0)
    linear = nn.Linear(32, 8, bias=False)
    x = torch.randn(3, 32)
    quantized = Int8Linear(linear)
    y = quantized(x.to(torch.bfloat16))
    assert y.shape == (3, 8)
    torch.testing.assert_close(y.float(), linear(x), atol=0.1, rtol=0.05)


def test_a_packing_this_torch_refuses_falls_back(monkeypatch, tiny_model_config):
    def refuses(weight, rows):
        raise RuntimeError("mkldnn: unsupported layout")

    monkeypatch.setattr(kernels, "_REORDER", refuses)
    monkeypatch.setattr(kernels, "_fallbacks", [])
    monkeypatch.setattr(kernels, "packed_dtypes", lambda: (torch.float32,))
    linear = nn.Linear(16, 4)
    assert kernels.packed(linear) is linear
    assert "unsupported layout" in kernels.fallbacks()[0]
