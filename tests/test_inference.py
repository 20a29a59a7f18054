"""load_for_inference: the one way generate, chat and the Chat pane load a model to sample from."""

import subprocess
import sys

import pytest
import torch

from minigpt.backends.hardware import describe_device
from minigpt.checkpoint import save_checkpoint
from minigpt.data.tokenizer import CharTokenizer
from minigpt.errors import ConfigError
from minigpt.infer.load import load_for_inference
from minigpt.infer.quantize import Int8Linear
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT


@pytest.fixture
def run_dir(tmp_path):
    model = GPT(GPTConfig(vocab_size=12, block_size=16, n_layer=1, n_head=2, n_embd=16))
    save_checkpoint(tmp_path / "model.pt", model, CharTokenizer("abcdefghij \n"), meta={"step": 7})
    return tmp_path


def test_a_run_directory_loads_ready_to_sample(run_dir):
    loaded = load_for_inference(run_dir, "cpu", "fp32")
    assert loaded.path == run_dir / "model.pt" and loaded.step == 7
    assert not loaded.model.training and loaded.tokenizer.vocab_size == 12
    assert loaded.params == GPT(loaded.model.config).num_params()
    assert loaded.describe() == (f"{loaded.params / 1e6:.2f}M params, char 12 tokens, context 16, "
                                 f"step 7, {describe_device(torch.device('cpu'))}, fp32 weights")


def test_weights_are_held_as_asked(run_dir):
    bf16 = load_for_inference(run_dir, "cpu", "bf16")
    assert bf16.model.transformer.wte.weight.dtype == torch.bfloat16
    int8 = load_for_inference(run_dir, "cpu", "int8")
    assert isinstance(int8.model.lm_head, Int8Linear)
    assert int8.params == bf16.params  # counted before int8 turns weights into buffers
    assert int8.describe().endswith("int8 weights")
    with pytest.raises(ConfigError, match="--weights must be one of auto, fp32, bf16, int8, got 'fp8'"):
        load_for_inference(run_dir, "cpu", "fp8")


@pytest.mark.slow
def test_loading_to_sample_never_imports_the_training_module(run_dir):
    code = ("import sys\nfrom minigpt.infer.load import load_for_inference\n"
            f"load_for_inference({str(run_dir)!r})\n"
            "print('minigpt.train.trainer' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"


@pytest.mark.parametrize("native, held", [(True, "bf16"), (False, "fp32")])
def test_auto_weights_follow_what_the_device_multiplies_natively(run_dir, monkeypatch, native,
                                                                 held):
    from minigpt.infer import load as inference

    monkeypatch.setattr(inference, "has_native_bf16", lambda device: native)
    loaded = load_for_inference(run_dir, "cpu")  # auto is the default
    assert loaded.weights == held and loaded.asked == "auto"
    assert loaded.model.lm_head.weight.dtype == {"bf16": torch.bfloat16, "fp32": torch.float32}[held]
    assert loaded.describe().endswith(f"{held} weights (auto)")
    assert load_for_inference(run_dir, "cpu", "fp32").describe().endswith("fp32 weights")


@pytest.mark.parametrize("threads, said", [(1, "cpu (1 thread)"), (2, "cpu (2 threads)")])
def test_the_device_is_described_in_words(threads, said):
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        assert describe_device(torch.device("cpu")) == said
    finally:
        torch.set_num_threads(before)
