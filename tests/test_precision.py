"""bf16 autocast on the CPU (opt-in, --dtype bf16) trains like fp32, within bf16's noise."""

import pytest
import torch

from minigpt.errors import ConfigError
from minigpt.train import Trainer, autocast_for, prepare_data

# bf16 keeps 8 bits of mantissa, so losses may drift apart by about 0.01 over a run; over these 30
# steps of a tiny model we measured 1e-4 (the loss itself falls by more than 0.5)
TOLERANCE = 0.05


def step_losses(cfg, corpus, dtype):
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", dtype=dtype)
    return [e["loss"] for e in trainer.run() if e["type"] == "step"], trainer


def test_bf16_losses_match_fp32_within_noise(tiny_train_config, corpus):
    cfg = tiny_train_config.with_overrides(max_steps=30, eval_interval=30, sample_tokens=0)
    fp32, _ = step_losses(cfg, corpus, "fp32")
    bf16, trainer = step_losses(cfg, corpus, "bf16")
    assert fp32[-1] < fp32[0] - 0.5
    assert bf16 == pytest.approx(fp32, abs=TOLERANCE)
    assert bf16 != fp32  # it really ran in bf16
    # weights and optimizer state stay fp32: autocast only lowers the matmuls
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


def test_auto_is_fp32_on_cpu_and_unknown_dtypes_are_errors():
    assert not isinstance(autocast_for(torch.device("cpu")), torch.autocast)
    assert isinstance(autocast_for(torch.device("cpu"), "bf16"), torch.autocast)
    with pytest.raises(ConfigError, match="unknown dtype"):
        autocast_for(torch.device("cpu"), "fp8")
