import os
import pickle
import signal
import subprocess
import sys
import time

import pytest
import torch

from minigpt.checkpoint import load_checkpoint, save_checkpoint
from minigpt.data.tokenizer import CharTokenizer
from minigpt.errors import CheckpointError
from minigpt.model.gpt import GPT


@pytest.fixture
def saved(tmp_path, tiny_model_config):
    model = GPT(tiny_model_config).eval()
    tok = CharTokenizer("".join(chr(ord("a") + i) for i in range(tiny_model_config.vocab_size)))
    path = save_checkpoint(tmp_path / "model.pt", model, tok, meta={"step": 7})
    return path, model


def test_round_trip_gives_the_same_model(saved):
    path, model = saved
    ckpt = load_checkpoint(path)
    again = ckpt.build_model().eval()
    idx = torch.randint(model.config.vocab_size, (1, 8))
    torch.testing.assert_close(again(idx)[0], model(idx)[0])
    assert ckpt.step == 7 and ckpt.tokenizer.decode([0, 1]) == "ab"


def test_the_model_takes_the_checkpoints_tensors_without_a_copy(saved):
    """build_model assigns the loaded tensors (a copy of GPT-2 small is 500 MB and a third of a
    second); the tied LM head stays one parameter with the embedding."""
    path, model = saved
    ckpt = load_checkpoint(path)
    again = ckpt.build_model()
    wte = again.transformer.wte.weight
    assert wte.data_ptr() == ckpt.state_dict["transformer.wte.weight"].data_ptr()
    assert again.lm_head.weight is wte and wte.requires_grad
    assert again.num_params() == model.num_params()
    assert not any(t.is_meta for t in [*again.parameters(), *again.buffers()])


@pytest.mark.slow
def test_loading_a_checkpoint_never_imports_torch_dynamo(saved):
    """A model built on the meta device skips nn.init: there, the first init function imports
    torch._dynamo, a second of a short command's start on a small CPU."""
    path, _ = saved
    code = ("import sys; from minigpt.checkpoint import load_checkpoint; "
            f"load_checkpoint({str(path)!r}).build_model(); "
            "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("at", [0, 4095, 100_000])
def test_a_non_finite_value_anywhere_is_found(value, at):
    from minigpt.checkpoint import first_non_finite

    state = {"a": torch.randn(10), "b": torch.randn(100_001), "c": torch.zeros(0)}
    assert first_non_finite(state) is None
    state["b"][at] = value
    assert first_non_finite(state) == "b"
    assert first_non_finite({"b": state["b"].bfloat16()}) == "b"


def test_a_run_directory_can_stand_for_its_checkpoint(saved):
    path, _ = saved
    assert load_checkpoint(path.parent).path == path


def test_a_failed_write_leaves_the_previous_checkpoint_intact(saved, monkeypatch):
    path, model = saved
    before = path.read_bytes()

    def dies_midway(obj, f, *args, **kwargs):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt  # as if killed mid-write

    monkeypatch.setattr(torch, "save", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, model, CharTokenizer("ab"))
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.pt"]  # no temporary file left behind
    load_checkpoint(path)


class RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("how", ["raw pickle", "torch.save"])
def test_a_checkpoint_that_would_run_code_is_refused(tmp_path, how):
    marker = tmp_path / "pwned"
    evil = RunsCode()
    evil.marker = marker
    path = tmp_path / "evil.pt"
    payload = {"format": "minigpt-checkpoint", "version": 1, "model": evil}
    if how == "raw pickle":
        path.write_bytes(pickle.dumps(payload))
    else:
        torch.save(payload, path)
    with pytest.raises(CheckpointError, match="refusing to load .*could run code"):
        load_checkpoint(path)
    assert not marker.exists()


def test_truncated_checkpoint_is_a_clear_error(saved, tmp_path):
    path, _ = saved
    cut = tmp_path / "cut.pt"
    cut.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        load_checkpoint(cut)


@pytest.mark.parametrize("content, message", [
    (b"", "truncated or corrupt"),
    (b"hello, not a checkpoint", "not a minigpt checkpoint|truncated or corrupt|not plain weights"),
])
def test_garbage_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "junk.pt"
    path.write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(path)


def test_someone_elses_torch_file_is_not_a_minigpt_checkpoint(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not a minigpt checkpoint"):
        load_checkpoint(tmp_path / "other.pt")


def test_missing_file_and_empty_run_directory(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope.pt")
    with pytest.raises(CheckpointError, match="no model.pt in run directory"):
        load_checkpoint(tmp_path)


def test_compiled_model_is_saved_without_the_compile_prefix(tmp_path, tiny_model_config):
    model = GPT(tiny_model_config)

    class Compiled(torch.nn.Module):  # stands in for torch.compile's OptimizedModule
        def __init__(self, inner):
            super().__init__()
            self._orig_mod = inner

    save_checkpoint(tmp_path / "m.pt", Compiled(model), CharTokenizer("a"))
    assert all(not k.startswith("_orig_mod") for k in load_checkpoint(tmp_path / "m.pt").state_dict)


def test_non_finite_weights_are_never_saved(saved):
    path, model = saved
    before = path.read_bytes()
    with torch.no_grad():
        model.transformer.h[1].mlp.c_fc.weight[3, 4] = float("nan")
    with pytest.raises(CheckpointError, match=r"NaN or infinite .*h\.1\.mlp\.c_fc\.weight"):
        save_checkpoint(path, model, CharTokenizer("ab"))
    assert path.read_bytes() == before


def test_a_full_disk_is_one_line_and_the_previous_checkpoint_stays(saved, monkeypatch):
    path, model = saved
    before = path.read_bytes()
    real_save = torch.save

    def disk_fills_up(obj, f, *args, **kwargs):
        class Full:  # a file whose disk is full after a few bytes, as torch.save meets it
            def write(self, data):
                raise OSError(28, "No space left on device")

            def flush(self):
                pass
        real_save(obj, Full())

    monkeypatch.setattr(torch, "save", disk_fills_up)
    with pytest.raises(CheckpointError) as raised:
        save_checkpoint(path, model, CharTokenizer("ab"))
    assert str(raised.value) == (f"no space left on device while saving {path}; "
                                 "the previous checkpoint is intact")
    assert path.read_bytes() == before
    assert os.listdir(path.parent) == ["model.pt"]


def test_an_unwritable_place_is_one_line(tmp_path, tiny_model_config):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    with pytest.raises(CheckpointError, match=r"^cannot save .*a-file/model.pt: .*nothing was written$"):
        save_checkpoint(blocker / "model.pt", GPT(tiny_model_config), CharTokenizer("ab"))


def test_the_temporary_file_of_a_killed_save_is_cleaned_up(saved):
    from minigpt.runs.log import process_alive

    path, model = saved
    dead = 2**22 + 1  # above any pid Linux (2**22 at most) or macOS gives: no process has it
    assert not process_alive(dead)
    orphan = path.parent / f".model.pt.{dead}.tmp"
    orphan.write_bytes(b"PK half a checkpoint")
    live = path.parent / f".model.pt.{os.getppid()}.tmp"  # a save in progress elsewhere
    live.write_bytes(b"PK being written")
    save_checkpoint(path, model, CharTokenizer("ab"))
    assert sorted(os.listdir(path.parent)) == sorted(["model.pt", live.name])


def test_ctrl_c_during_a_write_lands_after_it(saved):
    """The write completes and the checkpoint is whole; the interrupt is delivered afterwards."""
    path, model = saved
    real_save = torch.save

    def interrupted_midway(obj, f, *args, **kwargs):
        f.write(b"")
        os.kill(os.getpid(), signal.SIGINT)  # Ctrl-C while the bytes go out
        time.sleep(0.05)  # Python runs handlers between bytecodes: give it some
        real_save(obj, f, *args, **kwargs)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        torch_save, torch.save = torch.save, interrupted_midway
        with pytest.raises(KeyboardInterrupt):
            save_checkpoint(path, model, CharTokenizer("ab"), meta={"step": 8})
    finally:
        torch.save = torch_save
        signal.signal(signal.SIGINT, previous)
    assert load_checkpoint(path).step == 8
    assert os.listdir(path.parent) == ["model.pt"]


# --- hand-edited and hostile files: every one is a CheckpointError naming the file ----------------


@pytest.fixture
def resumable(tmp_path, tiny_model_config):
    """A checkpoint with everything a training run saves: configs, training state, meta."""
    from minigpt.train.config import preset

    cfg = preset("tiny").with_overrides(**tiny_model_config.to_dict())
    model = GPT(tiny_model_config)
    optimizer = model.configure_optimizer(0.1, 1e-3, (0.9, 0.99), "cpu")
    tok = CharTokenizer("".join(chr(ord("a") + i) for i in range(tiny_model_config.vocab_size)))
    state = {"step": 7, "tokens_seen": 700, "optimizer": optimizer.state_dict(),
             "batch_rng": torch.Generator().get_state(), "torch_rng": torch.get_rng_state()}
    meta = {"step": 7, "tokens_seen": 700, "data": "test text", "data_source": "builtin",
            "train_loss": 3.5, "val_loss": 3.6}
    return save_checkpoint(tmp_path / "model.pt", model, tok, cfg, state, meta)


def tampered(path, edit):
    """A copy of the checkpoint at path with its payload changed by edit(payload)."""
    payload = torch.load(path, weights_only=True)
    edit(payload)
    out = path.with_name("edited.pt")
    torch.save(payload, out)
    return out


def setter(*keys, value):
    def edit(payload):
        d = payload
        for k in keys[:-1]:
            d = d[k]
        d[keys[-1]] = value
    return edit


def deleter(*keys):
    def edit(payload):
        d = payload
        for k in keys[:-1]:
            d = d[k]
        del d[keys[-1]]
    return edit


HOSTILE = {
    "n_head 0": (setter("model_config", "n_head", value=0), "n_head must be at least 1"),
    "n_head 2.5": (setter("model_config", "n_head", value=2.5), "n_head must be a whole number"),
    "n_head True": (setter("model_config", "n_head", value=True), "n_head"),
    "negative n_embd": (setter("model_config", "n_embd", value=-32), "n_embd"),
    "string vocab_size": (setter("model_config", "vocab_size", value="50"), "vocab_size"),
    "dropout nan": (setter("model_config", "dropout", value=float("nan")), "dropout"),
    "model_config null": (setter("model_config", value=None), "model settings"),
    "no model_config": (deleter("model_config"), "model_config"),
    "model null": (setter("model", value=None), "weights"),
    "model a list": (setter("model", value=[1, 2]), "weights"),
    "a weight not a tensor": (setter("model", "transformer.wte.weight", value="w"), "tensor"),
    "an integer weight": (setter("model", "transformer.wte.weight",
                                 value=torch.zeros(50, 32, dtype=torch.long)), "floating"),
    "a weight missing": (deleter("model", "transformer.ln_f.bias"), "transformer.ln_f.bias"),
    "a weight too many": (setter("model", "transformer.extra", value=torch.zeros(2)),
                          "transformer.extra"),
    "a weight's shape": (setter("model", "transformer.wpe.weight", value=torch.zeros(8, 32)),
                         "transformer.wpe.weight has shape [8, 32]"),
    "n_layer huge": (setter("model_config", "n_layer", value=10**9), "layers"),
    "n_embd huge": (setter("model_config", "n_embd", value=2**40), "shape"),
    "meta step abc": (setter("meta", "step", value="abc"), "step"),
    "meta step 2.5": (setter("meta", "step", value=2.5), "step"),
    "meta a list": (setter("meta", value=[1]), "meta"),
    "meta loss a string": (setter("meta", "val_loss", value="low"), "val_loss"),
    "meta tokens_seen negative": (setter("meta", "tokens_seen", value=-1), "tokens_seen"),
    "meta data a number": (setter("meta", "data", value=5), "data"),
    "train_config a string": (setter("train_config", value="odd"), "training settings"),
    "train_config lr nan": (setter("train_config", "lr", value=float("nan")), "lr"),
    "train_config unknown key": (setter("train_config", "flux", value=1), "flux"),
    "train_config another model": (setter("train_config", "model", "n_layer", value=3),
                                   "another model"),
    "train_state a string": (setter("train_state", value="x"), "training state"),
    "train_state step abc": (setter("train_state", "step", value="abc"), "step"),
    "train_state optimizer odd": (setter("train_state", "optimizer", value=[]), "optimizer"),
    "train_state rng odd": (setter("train_state", "torch_rng", value="x"), "torch_rng"),
    "tokenizer null": (setter("tokenizer", value=None), "tokenizer"),
    "tokenizer chars a number": (setter("tokenizer", "chars", value=5), "tokenizer"),
    "tokenizer empty": (setter("tokenizer", "chars", value=""), "no tokens"),
    "tokenizer larger than the model": (
        setter("tokenizer", "chars", value="".join(chr(0x100 + i) for i in range(60))),
        "its tokenizer has 60 tokens, more than the model's vocabulary of 50"),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_hand_edited_checkpoints_are_clear_errors(resumable, kind):
    edit, fragment = HOSTILE[kind]
    path = tampered(resumable, edit)
    with pytest.raises(CheckpointError) as caught:
        load_checkpoint(path)
    message = str(caught.value)
    assert message.startswith(f"{path}") and fragment in message, message
    assert "\n" not in message


def test_the_untampered_copy_loads(resumable):
    ckpt = load_checkpoint(tampered(resumable, lambda payload: None))
    assert ckpt.step == 7 and ckpt.train_state["step"] == 7 and ckpt.train_config is not None


def test_a_tokenizer_smaller_than_the_model_is_allowed(resumable):
    """An imported GPT-2's vocabulary may be padded past its tokenizer's (50257 to 50304);
    generation draws only the tokenizer's ids (see test_sampling)."""
    ckpt = load_checkpoint(tampered(resumable, setter("tokenizer", "chars", value="abc")))
    assert ckpt.tokenizer.vocab_size == 3 and ckpt.model_config.vocab_size == 50



def test_a_checkpoint_with_nan_weights_is_refused_on_load(saved):
    """As an older minigpt saved them when a run diverged: every command says so in one line."""
    path, _ = saved
    payload = torch.load(path, weights_only=True)
    payload["model"]["transformer.h.0.attn.c_attn.weight"][0, 0] = float("inf")
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"NaN or infinite values \(in transformer\.h\.0\."
                                              r"attn\.c_attn\.weight\): the run that wrote it diverged"):
        load_checkpoint(path)
