"""Which oneDNN kernels a decoding process gets (minigpt/backends/cpu.py): AVX-512 BF16 instead of AMX
where the CPU has AMX, set before torch loads, never over the user's own setting, and never
passed on to the training runs the TUI starts."""

import os

from minigpt.backends import cpu as onednn
from minigpt.backends.cpu import FOR_DECODING, VARIABLE, cpu_flags, decoding_limit
from minigpt_tui import runs

AMX = {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16"}


def test_the_limit_is_for_a_cpu_with_amx_before_torch_loads_and_never_over_the_users():
    assert decoding_limit({}, AMX, torch_loaded=False) == FOR_DECODING
    assert decoding_limit({}, {"avx512f", "avx512_bf16"}, torch_loaded=False) is None  # no AMX
    assert decoding_limit({}, {"avx2", "fma"}, torch_loaded=False) is None
    assert decoding_limit({VARIABLE: "AVX2"}, AMX, torch_loaded=False) is None  # the user's
    # once torch has loaded, oneDNN may have read the variable already: nothing is claimed
    assert decoding_limit({}, AMX, torch_loaded=True) is None


def test_cpu_flags_come_from_linux_cpuinfo(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Intel(R) Xeon(R)\nflags\t\t: fpu avx2 amx_bf16\n")
    assert cpu_flags(str(info)) == {"fpu", "avx2", "amx_bf16"}
    assert cpu_flags(str(tmp_path / "missing")) == set()


def test_the_tuis_training_runs_start_without_the_limit_it_set(monkeypatch, tmp_path):
    monkeypatch.setattr(onednn, "_limited_here", True)
    monkeypatch.setenv(VARIABLE, FOR_DECODING)
    launched = {}
    monkeypatch.setattr(runs.subprocess, "Popen", lambda args, **kw: launched.update(kw))
    runs.launch_training(tmp_path / "run", None, "tiny", 5)
    assert VARIABLE not in launched["env"]
    assert launched["env"]["PATH"] == os.environ["PATH"]
    runs.launch_ablation(tmp_path / "ablate", ["residual"], None, 5)
    assert VARIABLE not in launched["env"]


def test_a_limit_the_user_set_reaches_the_training_runs(monkeypatch):
    monkeypatch.setattr(onednn, "_limited_here", False)
    monkeypatch.setenv(VARIABLE, "AVX2")
    assert onednn.environment_for_training()[VARIABLE] == "AVX2"
