"""bf16 autocast (the default where the hardware has bf16, --dtype bf16) trains like fp32."""

import pytest
import torch
from conftest import prepare_data

from minigpt.backends import hardware
from minigpt.backends.hardware import autocast_for, peak_flops, resolve_precision
from minigpt.errors import ConfigError
from minigpt.train import trainer as train
from minigpt.train.trainer import Trainer

# bf16 keeps 8 bits of mantissa, so losses may drift apart by about 0.01 over a run; over these 30
# steps of a tiny model we measured 1e-4 (the loss itself falls by more than 0.5)
TOLERANCE = 0.05


def step_losses(cfg, corpus, dtype):
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", dtype=dtype)
    return [e["loss"] for e in trainer.run() if e["type"] == "step"], trainer


@pytest.mark.slow
def test_bf16_losses_match_fp32_within_noise(tiny_train_config, corpus):
    cfg = tiny_train_config.with_overrides(max_steps=30, eval_interval=30, sample_tokens=0)
    fp32, _ = step_losses(cfg, corpus, "fp32")
    bf16, trainer = step_losses(cfg, corpus, "bf16")
    assert fp32[-1] < fp32[0] - 0.5
    assert bf16 == pytest.approx(fp32, abs=TOLERANCE)
    assert bf16 != fp32  # it really ran in bf16
    # weights and optimizer state stay fp32: autocast only lowers the matmuls
    assert all(p.dtype == torch.float32 for p in trainer.model.parameters())


@pytest.mark.parametrize("native", [True, False])
def test_auto_picks_bf16_only_where_the_cpu_has_it(monkeypatch, native):
    cpu = torch.device("cpu")
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        monkeypatch.setattr(torch.cpu, probe, lambda: native, raising=False)
    assert resolve_precision(cpu) == ("bf16" if native else "fp32")
    assert resolve_precision(cpu, "fp32") == "fp32"  # an explicit choice wins either way
    assert resolve_precision(cpu, "bf16") == "bf16"
    assert isinstance(autocast_for(cpu, resolve_precision(cpu)), torch.autocast) == native


def test_the_trainer_reports_its_precision(tiny_train_config, corpus, monkeypatch):
    monkeypatch.setattr(hardware, "has_native_bf16", lambda device: False)
    cfg = tiny_train_config.with_overrides(max_steps=1, sample_tokens=0)
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu")
    start = next(trainer.run())
    assert trainer.precision == start["precision"] == "fp32"


def test_unknown_dtypes_are_errors():
    with pytest.raises(ConfigError, match="unknown dtype"):
        resolve_precision(torch.device("cpu"), "fp8")


def test_step_events_carry_flops_and_mfu(tiny_train_config, corpus, monkeypatch):
    monkeypatch.setattr(train, "peak_flops", lambda device, precision: 1e12)  # as if a known GPU
    cfg = tiny_train_config.with_overrides(max_steps=4, log_interval=2, sample_tokens=0)
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", dtype="fp32")
    events = list(trainer.run())
    assert events[0]["peak_flops"] == 1e12
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 4]
    for e in steps:
        assert e["flops_per_s"] == pytest.approx(e["tokens_per_s"] * trainer.model.flops_per_token())
        assert e["mfu"] == pytest.approx(e["flops_per_s"] / 1e12)


def test_mfu_is_null_where_the_peak_is_unknown(tiny_train_config, corpus):
    cfg = tiny_train_config.with_overrides(max_steps=2, log_interval=1, sample_tokens=0)
    events = list(Trainer(cfg, prepare_data(corpus, cfg), device="cpu").run())
    assert events[0]["peak_flops"] is None
    assert all(e["mfu"] is None and e["flops_per_s"] > 0 for e in events if e["type"] == "step")


@pytest.mark.parametrize("name, precision, expected", [
    ("NVIDIA H100 80GB HBM3", "bf16", 989e12),
    ("NVIDIA H100 PCIe", "bf16", 756e12),  # not the SXM figure, though "H100" matches too
    ("NVIDIA A100-SXM4-80GB", "fp32", 156e12),  # fp32 matmuls run as TF32
    ("NVIDIA L40", "bf16", 181e12),  # not the L4's, though "L4" is in the name
    ("Some Future GPU", "bf16", None),
])
def test_peak_flops_of_known_gpus(monkeypatch, name, precision, expected):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
    assert peak_flops(torch.device("cuda"), precision) == expected
    assert peak_flops(torch.device("cpu"), precision) is None
