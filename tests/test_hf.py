"""The bridge to Hugging Face's GPT-2, checked against transformers itself.

The hub is unreachable from CI, so every model here is a random GPT2LMHeadModel built and saved by
transformers, and the tokenizer a small GPT-2-format vocabulary trained on local text. transformers
is the reference: logits, greedy continuations, tokenizer ids and exported folders must equal its.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, cli

from minigpt.checkpoint import load_checkpoint, save_checkpoint
from minigpt.data.tokenizer import (
    END_OF_TEXT,
    BPETokenizer,
    CharTokenizer,
    as_tiktoken,
    gpt2_tokenizer_from_folder,
    tokenizer_from_dict,
)
from minigpt.errors import ConfigError, ConversionError, TokenizerError
from minigpt.hf import formats
from minigpt.hf.gpt2 import import_gpt2, load_gpt2
from minigpt.infer.sampling import SamplingConfig, decode_one_token, generate, prefill
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT

transformers = pytest.importorskip("transformers")

ENGLISH = "The quick brown fox jumps over the lazy dog. It's 5 o'clock, and we'll see; they've gone."
CODE = "def square(x: int) -> int:\n    return x ** 2  # why not\n\n\tif a != b:\n        print(f'{a}')\n"
JAPANESE = "吾輩は猫である。名前はまだ無い。どこで生れたかとんと見当がつかぬ。"
EMOJI = "Party 🎉🎉 with family 👨‍👩‍👧 and flags 🇯🇵 🙂!"
SPECIAL = f"end of one{END_OF_TEXT}start of the next   \n\n  spaces\t tabs  "
SAMPLES = [ENGLISH, CODE, JAPANESE, EMOJI, SPECIAL]

# Random GPT-2s of a few shapes. "odd" has a vocabulary padded past its tokenizer's, another
# LayerNorm epsilon and a head size that is not a power of two; "untied" has its own LM head.
SHAPES = {
    "small": dict(n_layer=2, n_head=2, n_embd=64, n_positions=32),
    "odd": dict(n_layer=3, n_head=3, n_embd=48, n_positions=21, layer_norm_epsilon=1e-3,
                vocab_padding=5),
    "untied": dict(n_layer=1, n_head=4, n_embd=32, n_positions=16, tie_word_embeddings=False),
    "gpt2-context": dict(n_layer=1, n_head=2, n_embd=32, n_positions=1024),
}
VARIANTS = [("small", "safetensors"), ("odd", "safetensors"), ("untied", "safetensors"),
            ("small", "bin")]



def export_hf(checkpoint, outdir) -> list[str]:
    """export-hf as a GPT-2 folder: the names of the files written."""
    return formats.export_hf(checkpoint, outdir, "gpt2")[1]

@pytest.fixture(scope="session")
def vocab_folder(tmp_path_factory, english_text) -> Path:
    """vocab.json + merges.txt in GPT-2's format, trained here: byte-level BPE over all 256 bytes,
    <|endoftext|> last, as in GPT-2 (where it is 50256)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    trainer = trainers.BpeTrainer(vocab_size=399, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([english_text, *SAMPLES * 3], trainer)
    folder = tmp_path_factory.mktemp("gpt2-vocab")
    tok.model.save(str(folder))
    vocab = json.loads((folder / "vocab.json").read_text(encoding="utf-8"))
    vocab[END_OF_TEXT] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    return folder


@pytest.fixture(scope="session")
def reference_tokenizer(vocab_folder):
    return transformers.GPT2TokenizerFast.from_pretrained(str(vocab_folder))


def random_hf_model(vocab_size: int, shape: str, seed: int = 0):
    """A random GPT2LMHeadModel whose every weight (LayerNorms too) is distinct and whose logits
    are peaked, so a mixed-up parameter shows and greedy choices are not near-ties."""
    settings = dict(SHAPES[shape])
    vocab_size += settings.pop("vocab_padding", 0)
    config = transformers.GPT2Config(vocab_size=vocab_size, bos_token_id=None, eos_token_id=None,
                                     **settings)
    torch.manual_seed(seed)
    model = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def save_bin(model, folder: Path) -> None:
    """pytorch_model.bin as the hub's original gpt2 has it: GPT2Model names (no "transformer."),
    the causal-mask buffers beside the weights, and no lm_head.weight when it is tied."""
    state = {k.removeprefix("transformer."): v for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        state.pop("lm_head.weight", None)
    n = model.config.n_positions
    for i in range(model.config.n_layer):
        state[f"h.{i}.attn.bias"] = torch.ones(n, n).tril().view(1, 1, n, n)
        state[f"h.{i}.attn.masked_bias"] = torch.tensor(-1e4)
    torch.save(state, folder / "pytorch_model.bin")
    model.config.save_pretrained(folder)


def save_hf_folder(model, folder: Path, vocab_folder: Path, fmt: str = "safetensors") -> Path:
    """A Hugging Face model folder: config.json, the weights, vocab.json + merges.txt."""
    if fmt == "safetensors":
        model.save_pretrained(folder)
    else:
        save_bin(model, folder)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(vocab_folder / name, folder / name)
    return folder


@pytest.fixture(scope="module", params=VARIANTS, ids=[f"{s}-{f}" for s, f in VARIANTS])
def hf_folder(request, tmp_path_factory, vocab_folder, reference_tokenizer):
    """(transformers model, its saved folder) for each shape and weight format."""
    shape, fmt = request.param
    model = random_hf_model(len(reference_tokenizer), shape)
    folder = tmp_path_factory.mktemp(f"hf-{shape}-{fmt}")
    return model, save_hf_folder(model, folder, vocab_folder, fmt)


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory, vocab_folder, reference_tokenizer) -> Path:
    model = random_hf_model(len(reference_tokenizer), "small")
    return save_hf_folder(model, tmp_path_factory.mktemp("hf-small"), vocab_folder)


@pytest.fixture(scope="module")
def imported(hf_folder):
    model, folder = hf_folder
    return model, load_gpt2(str(folder))


def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    model.generation_config.eos_token_id = None  # run the full n tokens, as minigpt does
    ids = torch.tensor([prompt])
    # an explicit mask: otherwise a prompt token equal to pad_token_id would be masked out
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                         do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def minigpt_greedy(model, prompt: list[int], n: int) -> list[int]:
    cfg = SamplingConfig(strategy="greedy", max_new_tokens=n)
    return [t.id for t in generate(model, prompt, cfg)]


# --- GPT-2's tokenizer --------------------------------------------------------------------------


@pytest.mark.parametrize("text", SAMPLES, ids=["english", "code", "japanese", "emoji", "special"])
def test_tokenizer_ids_equal_gpt2_tokenizer_fast(vocab_folder, reference_tokenizer, text):
    ours = gpt2_tokenizer_from_folder(vocab_folder)
    assert ours.encode(text) == reference_tokenizer(text)["input_ids"]
    assert ours.decode(ours.encode(text)) == text


def test_a_batch_through_tiktoken_gives_gpt2_tokenizer_fasts_ids(vocab_folder, reference_tokenizer):
    ours = gpt2_tokenizer_from_folder(vocab_folder)
    assert as_tiktoken(ours) is not None  # the fast path preparing a corpus takes
    assert [list(ids) for ids in ours.encode_batch(SAMPLES)] == [
        reference_tokenizer(text)["input_ids"] for text in SAMPLES]


def test_end_of_text_is_one_special_token_last_in_the_vocabulary(vocab_folder):
    ours = gpt2_tokenizer_from_folder(vocab_folder)
    eot = ours.vocab_size - 1
    assert ours.encode(END_OF_TEXT) == [eot]
    assert ours.encode(f"a{END_OF_TEXT}b")[1] == eot


def test_tokenizer_from_openai_names_and_from_tokenizer_json(tmp_path, vocab_folder,
                                                             reference_tokenizer):
    openai = tmp_path / "openai"
    openai.mkdir()
    shutil.copy(vocab_folder / "vocab.json", openai / "encoder.json")
    shutil.copy(vocab_folder / "merges.txt", openai / "vocab.bpe")
    fast = tmp_path / "fast"
    reference_tokenizer.save_pretrained(fast)
    for name in ("vocab.json", "merges.txt"):  # only tokenizer.json is left to read
        (fast / name).unlink(missing_ok=True)
    for folder in (openai, fast):
        ours = gpt2_tokenizer_from_folder(folder)
        for text in SAMPLES:
            assert ours.encode(text) == reference_tokenizer(text)["input_ids"]


def test_gpt2_tokenizer_travels_in_the_checkpoint_record(vocab_folder, reference_tokenizer):
    again = tokenizer_from_dict(gpt2_tokenizer_from_folder(vocab_folder).to_dict())
    for text in SAMPLES:
        assert again.encode(text) == reference_tokenizer(text)["input_ids"]


def test_tokenizer_files_missing_or_broken(tmp_path):
    with pytest.raises(TokenizerError, match="no tokenizer files"):
        gpt2_tokenizer_from_folder(tmp_path)
    (tmp_path / "vocab.json").write_text("{not json")
    (tmp_path / "merges.txt").write_text("#version: 0.2\n")
    with pytest.raises(TokenizerError, match="cannot read the tokenizer"):
        gpt2_tokenizer_from_folder(tmp_path)


# --- parity of imported models ---------------------------------------------------------------------


def test_logits_equal_transformers(imported):
    reference, ours = imported
    ids = torch.randint(0, reference.config.vocab_size, (2, reference.config.n_positions))
    with torch.no_grad():
        expected = reference(ids).logits
        got, _ = ours.model(ids)
    assert got.shape == expected.shape
    assert (got - expected).abs().max().item() < 1e-4


def test_imported_configuration_is_the_models(imported):
    reference, ours = imported
    hf, cfg = reference.config, ours.model.config
    assert (cfg.n_layer, cfg.n_head, cfg.n_embd, cfg.block_size, cfg.vocab_size) == (
        hf.n_layer, hf.n_head, hf.n_embd, hf.n_positions, hf.vocab_size)
    assert cfg.layer_norm_epsilon == hf.layer_norm_epsilon
    assert cfg.tie_weights == hf.tie_word_embeddings
    model = ours.model
    assert (model.lm_head.weight is model.transformer.wte.weight) == cfg.tie_weights


def test_greedy_continuation_equals_transformers(imported):
    reference, ours = imported
    prompt = ours.tokenizer.encode("The fox")[:4]
    n = reference.config.n_positions - len(prompt)  # HF cannot go past its context
    assert minigpt_greedy(ours.model, prompt, n) == hf_greedy(reference, prompt, n)


def test_cached_decoding_equals_full_recomputation(imported):
    _, ours = imported
    model = ours.model
    ids = torch.randint(0, model.config.vocab_size, (model.config.block_size,)).tolist()
    with torch.no_grad():
        full, _ = model(torch.tensor([ids]))
        model.setup_kv_cache(batch_size=1)
        try:
            cached = [prefill(model, ids[:3], "cpu")]
            cached += [decode_one_token(model, t, pos, "cpu") for pos, t in enumerate(ids[3:], 3)]
        finally:
            model.clear_kv_cache()
    assert (torch.stack(cached) - full[0, 2:]).abs().max().item() < 1e-4


def test_greedy_text_equals_transformers_text(tmp_path, vocab_folder, reference_tokenizer):
    reference = random_hf_model(len(reference_tokenizer), "small", seed=3)
    save_hf_folder(reference, tmp_path, vocab_folder)
    ours = load_gpt2(str(tmp_path))
    prompt = "It's a"
    ids = reference_tokenizer(prompt)["input_ids"]
    expected = reference_tokenizer.decode(ids + hf_greedy(reference, ids, 20))
    assert ours.tokenizer.decode(ids + minigpt_greedy(ours.model, ours.tokenizer.encode(prompt),
                                                      20)) == expected


def test_gpt2_sized_vocabulary_and_context(tmp_path, vocab_folder):
    """50257 tokens and 1024 positions, as the real GPT-2 (narrow, so it stays fast)."""
    reference = random_hf_model(50257, "gpt2-context")
    save_hf_folder(reference, tmp_path, vocab_folder)
    ours = load_gpt2(str(tmp_path))
    assert (ours.model.config.vocab_size, ours.model.config.block_size) == (50257, 1024)
    prompt = list(range(10))
    assert minigpt_greedy(ours.model, prompt, 8) == hf_greedy(reference, prompt, 8)


def test_sharded_weights_import(tmp_path, vocab_folder, reference_tokenizer):
    """Large models come in shards listed by model.safetensors.index.json."""
    reference = random_hf_model(len(reference_tokenizer), "small")
    reference.save_pretrained(tmp_path, max_shard_size="100KB")
    assert (tmp_path / "model.safetensors.index.json").is_file()
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(vocab_folder / name, tmp_path / name)
    ours = load_gpt2(str(tmp_path))
    ids = torch.randint(0, reference.config.vocab_size, (1, 32))
    with torch.no_grad():
        assert (ours.model(ids)[0] - reference(ids).logits).abs().max().item() < 1e-4


# --- what import refuses, in one line ------------------------------------------------------------


def folder_with_config(tmp_path: Path, **changes) -> Path:
    config = transformers.GPT2Config(vocab_size=400, n_positions=16, n_embd=32, n_layer=1,
                                     n_head=2).to_dict()
    config.update(changes)
    (tmp_path / "config.json").write_text(json.dumps(config))
    return tmp_path


@pytest.mark.parametrize("changes, fragment", [
    ({"model_type": "llama"}, "model_type is 'llama'"),
    ({"activation_function": "relu"}, "activation_function is 'relu'"),
    ({"n_inner": 100}, "n_inner is 100"),
    ({"scale_attn_weights": False}, "scale_attn_weights"),
    ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
    ({"add_cross_attention": True}, "add_cross_attention"),
    ({"n_head": 5}, "divisible"),
])
def test_configurations_gpt2_cannot_express_are_refused(tmp_path, changes, fragment):
    with pytest.raises(ConversionError, match=fragment):
        load_gpt2(str(folder_with_config(tmp_path, **changes)))


def test_missing_pieces_are_named(tmp_path, small_folder):
    with pytest.raises(ConversionError, match="no such folder"):
        load_gpt2(str(tmp_path / "missing" / "model"))
    with pytest.raises(ConversionError, match="no config.json"):
        load_gpt2(str(tmp_path))
    source = small_folder
    shutil.copy(source / "config.json", tmp_path / "config.json")
    with pytest.raises(TokenizerError, match="no tokenizer files"):
        load_gpt2(str(tmp_path))
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(source / name, tmp_path / name)
    with pytest.raises(ConversionError, match="no weights"):
        load_gpt2(str(tmp_path))


def test_weights_that_do_not_fit_the_config_are_named(tmp_path, vocab_folder, reference_tokenizer):
    save_hf_folder(random_hf_model(len(reference_tokenizer), "small"), tmp_path, vocab_folder)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "n_positions": 64}))
    with pytest.raises(ConversionError, match=r"wpe.weight .* has shape \[32, 64\]"):
        load_gpt2(str(tmp_path))
    (tmp_path / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    with pytest.raises(ConversionError, match="lacks 12 weight"):
        load_gpt2(str(tmp_path))


def test_pickles_that_run_code_are_refused(tmp_path, vocab_folder):
    folder = folder_with_config(tmp_path)
    for name in ("vocab.json", "merges.txt"):
        shutil.copy(vocab_folder / name, folder / name)
    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"x": os.system}))
    with pytest.raises(ConversionError, match="refusing to load"):
        load_gpt2(str(folder))
    (folder / "pytorch_model.bin").unlink()
    (folder / "model.safetensors").write_bytes(b"not safetensors at all")
    with pytest.raises(ConversionError, match="truncated or corrupt"):
        load_gpt2(str(folder))


def test_hub_ids_download_through_huggingface_hub(monkeypatch, small_folder):
    """No network here: snapshot_download is replaced, once by a cache that has the model (the
    import then reads it like a folder), once by the failure an offline machine sees."""
    import huggingface_hub

    asked = []

    def cached(repo_id, allow_patterns):
        asked.append((repo_id, allow_patterns))
        return str(small_folder)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", cached)
    assert load_gpt2("openai-community/gpt2").model.config.n_layer > 0
    assert asked[0][0] == "openai-community/gpt2" and "config.json" in asked[0][1]

    def offline(repo_id, allow_patterns):
        raise huggingface_hub.errors.LocalEntryNotFoundError("Cannot find the requested files\n"
                                                             "in the disk cache.")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ConversionError, match="gpt2-medium is not a local folder.*cannot be reached"):
        load_gpt2("gpt2-medium")


# --- export ----------------------------------------------------------------------------------------


def test_round_trip_hf_minigpt_hf_keeps_the_logits(tmp_path, hf_folder, reference_tokenizer):
    reference, folder = hf_folder
    path, _ = import_gpt2(str(folder), tmp_path / "model.pt")
    export_hf(load_checkpoint(path), tmp_path / "hf")
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, reference.config.vocab_size, (2, reference.config.n_positions))
    with torch.no_grad():
        assert (again(ids).logits - reference(ids).logits).abs().max().item() < 1e-5
    tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in SAMPLES:
        assert tokenizer(text)["input_ids"] == reference_tokenizer(text)["input_ids"]


def export_and_reload(model: GPT, tokenizer, folder: Path):
    ckpt = load_checkpoint(save_checkpoint(folder / "model.pt", model, tokenizer))
    written = export_hf(ckpt, folder / "hf")
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(written)
    return transformers.AutoModelForCausalLM.from_pretrained(folder / "hf").eval()


def assert_same_logits(ours: GPT, theirs, n_tokens: int) -> None:
    ids = torch.randint(0, ours.config.vocab_size, (2, n_tokens))
    ours.eval()
    with torch.no_grad():
        assert (ours(ids)[0] - theirs(ids).logits).abs().max().item() < 1e-4


def test_a_model_trained_here_with_bpe_exports(tmp_path, english_text):
    tokenizer = BPETokenizer.train(english_text, 300)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=24, n_layer=2, n_head=2,
                          n_embd=32))
    exported = export_and_reload(model, tokenizer, tmp_path)
    assert_same_logits(model, exported, 24)
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    for text in SAMPLES:
        assert hf_tokenizer(text)["input_ids"] == tokenizer.encode(text)
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["eos_token_id"] == tokenizer.encode(END_OF_TEXT)[0]


def test_a_char_level_model_exports_with_the_same_ids(tmp_path, english_text):
    text = english_text[:5000] + JAPANESE + "\n\t"
    tokenizer = CharTokenizer.from_text(text)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=16, n_layer=1, n_head=2,
                          n_embd=32, tie_weights=False))  # an untied head exports too
    exported = export_and_reload(model, tokenizer, tmp_path)
    assert_same_logits(model, exported, 16)
    hf_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tmp_path / "hf" / "tokenizer.json"))
    sample = text[1000:1400] + JAPANESE + " \n\t "
    assert hf_tokenizer(sample)["input_ids"] == tokenizer.encode(sample)
    assert hf_tokenizer.backend_tokenizer.decode(tokenizer.encode(sample)) == sample
    auto = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert auto(sample)["input_ids"] == tokenizer.encode(sample)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002], ids=lambda u: f"umask-{u:03o}")
def test_exported_files_get_the_modes_new_files_get(tmp_path, english_text, umask):
    """Every file as open() would make it, 0o666 less the umask; safetensors alone wrote 0600."""
    tokenizer = BPETokenizer.train(english_text[:5000], 300)  # BPE: vocab.json and merges.txt too
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=8, n_layer=1, n_head=2,
                          n_embd=16))
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "model.pt", model, tokenizer))
    previous = os.umask(umask)
    try:
        written = export_hf(ckpt, tmp_path / "hf")
    finally:
        os.umask(previous)
    assert len(written) == 6
    modes = {name: oct((tmp_path / "hf" / name).stat().st_mode & 0o777) for name in written}
    assert modes == {name: oct(0o666 & ~umask) for name in written}


@pytest.mark.parametrize("switch, value", [
    ("residual", False), ("attention", False), ("mlp", False), ("position", "none"),
    ("layer_norm", "post"), ("layer_norm", "none"), ("bias", False),
])
def test_ablated_models_are_refused_naming_the_switch(tmp_path, switch, value):
    model = GPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16,
                          **{switch: value}))
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "model.pt", model,
                                           CharTokenizer("abcdefghijklmnopqrst")))
    with pytest.raises(ConversionError, match=f"{switch}={value!r}"):
        export_hf(ckpt, tmp_path / "hf")
    assert not (tmp_path / "hf").exists()


# --- fine-tuning an imported model -----------------------------------------------------------------


def test_fine_tuning_keeps_the_model_and_may_shorten_its_context(tmp_path, hf_folder, corpus):
    from conftest import prepare_data

    from minigpt.train.finetune import FINETUNE, finetune_config, fit_to_context
    from minigpt.train.trainer import Trainer

    reference, folder = hf_folder
    path, _ = import_gpt2(str(folder), tmp_path / "model.pt")
    start = load_checkpoint(path)
    cfg = finetune_config(start, FINETUNE, {"block_size": 12, "max_steps": 10, "lr": 1e-3,
                                            "eval_interval": 10, "batch_size": 4})
    assert cfg.model == GPTConfig(**{**start.model_config.to_dict(), "block_size": 12})
    with pytest.raises(ConfigError, match="exceeds the model's context"):
        finetune_config(start, FINETUNE, {"block_size": start.model_config.block_size + 1})
    with pytest.raises(ConfigError, match="--n-layer"):
        finetune_config(start, FINETUNE, {"n_layer": 1})
    data = prepare_data(corpus, cfg, tokenizer=start.tokenizer)
    trainer = Trainer.finetune(fit_to_context(start, cfg.model), cfg, data, device="cpu")
    wpe = trainer.model.transformer.wpe.weight
    assert torch.equal(wpe, start.state_dict["transformer.wpe.weight"][:12])
    evals = [ev for ev in trainer.run() if ev["type"] == "eval"]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"]


# --- the command line ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory, vocab_folder, reference_tokenizer):
    root = tmp_path_factory.mktemp("hf-cli")
    reference = random_hf_model(len(reference_tokenizer), "small", seed=5)
    save_hf_folder(reference, root / "hf", vocab_folder)
    result = cli("import-gpt2", root / "hf", "--out", root / "model.pt")
    assert result.returncode == 0, result.stderr
    return root, reference, result


def test_cli_import_info_generate_export(cli_model, reference_tokenizer):
    root, reference, imported = cli_model
    assert "2 layers" in imported.stdout and "saved to" in imported.stdout
    info = cli("info", root / "model.pt")
    assert info.returncode == 0 and "imported from" in info.stdout, info.stderr

    prompt = "The fox"
    generated = cli("generate", "--ckpt", root / "model.pt", "-p", prompt, "-n", 20,
                    "--strategy", "greedy")
    assert generated.returncode == 0, generated.stderr
    ids = reference_tokenizer(prompt)["input_ids"]
    expected = reference_tokenizer.decode(ids + hf_greedy(reference, ids, 20))
    assert generated.stdout == expected + "\n"

    exported = cli("export-hf", root / "model.pt", root / "exported")
    assert exported.returncode == 0, exported.stderr
    again = transformers.AutoModelForCausalLM.from_pretrained(root / "exported").eval()
    ids = torch.randint(0, reference.config.vocab_size, (1, 32))
    with torch.no_grad():
        assert (again(ids).logits - reference(ids).logits).abs().max().item() < 1e-5


def test_cli_train_init_fine_tunes(cli_model, tmp_path, english_text):
    root, _, _ = cli_model
    data = tmp_path / "corpus.txt"
    data.write_text(english_text[:30_000], encoding="utf-8")
    result = cli("train", "--init", root / "model.pt", "--data", data, "--steps", 6,
                 "--eval-interval", 6, "--lr", 1e-3, "--batch-size", 4,
                 "--out", tmp_path / "run", "-q")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").read_text().splitlines()]
    evals = [ev["val_loss"] for ev in events if ev["type"] == "eval"]
    assert evals[-1] < evals[0]
    tuned = load_checkpoint(tmp_path / "run")
    assert tuned.step == 6
    assert tuned.tokenizer.to_dict() == load_checkpoint(root / "model.pt").tokenizer.to_dict()
    assert "fine-tuned from" in tuned.meta["source"]


def test_cli_bad_inputs_are_one_line(cli_model, tmp_path, monkeypatch):
    from huggingface_hub import constants

    root, _, _ = cli_model
    monkeypatch.chdir(tmp_path)
    # HF_HUB_OFFLINE=1 and an empty HF_HOME, as huggingface_hub reads them when it is imported
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-home" / "hub"))
    (tmp_path / "llama").mkdir()
    not_gpt2 = folder_with_config(tmp_path / "llama", model_type="llama")
    ablated = tmp_path / "ablated.pt"
    save_checkpoint(ablated, GPT(GPTConfig(vocab_size=4, block_size=8, n_layer=1, n_head=2,
                                           n_embd=16, residual=False)), CharTokenizer("abcd"))
    model = root / "model.pt"
    cases = [
        (["import-gpt2", tmp_path / "missing" / "folder", "--out", "x.pt"], "no such folder"),
        (["import-gpt2", tmp_path, "--out", "x.pt"], "no config.json"),
        (["import-gpt2", "gpt2-medium", "--out", "x.pt"], "cannot be reached"),
        (["import-gpt2", not_gpt2, "--out", "x.pt"], "model_type is 'llama'"),
        (["export-hf", ablated, tmp_path / "out"], "residual=False"),
        (["export-hf", tmp_path / "missing.pt", tmp_path / "out"], "no such checkpoint"),
        (["train", "--init", model, "--n-layer", 3], "--n-layer"),
        (["train", "--init", model, "--block-size", 64], "exceeds the model's context of 32"),
        (["train", "--init", model, "--resume", model], "give one of them"),
        (["import-gpt2", root / "hf", "--out", model], "already exists"),  # kept, not replaced
    ]
    saved = model.read_bytes()
    for args, fragment in cases:
        assert_one_line_error(cli(*args), fragment)
    assert not (tmp_path / "x.pt").exists()
    assert model.read_bytes() == saved


def test_a_failed_export_leaves_the_folder_as_it_was(tmp_path, monkeypatch):
    tokenizer = CharTokenizer("abcdefgh")
    model = GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=2, n_embd=16))
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "model.pt", model, tokenizer))
    export_hf(ckpt, tmp_path / "hf")
    before = {p.name: p.read_bytes() for p in (tmp_path / "hf").iterdir()}
    import safetensors.torch

    def disk_full(*args, **kwargs):
        raise safetensors.SafetensorError("Error while serializing: I/O error: No space left on "
                                          "device (os error 28)")

    monkeypatch.setattr(safetensors.torch, "save_file", disk_full)
    with pytest.raises(ConversionError, match=r"^no space left on device while exporting to .*hf; "
                                              r"nothing in it was changed$"):
        export_hf(ckpt, tmp_path / "hf")
    assert {p.name: p.read_bytes() for p in (tmp_path / "hf").iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["hf", "model.pt"]  # no staging left


def test_an_export_replaces_only_an_earlier_export(tmp_path):
    """Exporting again into the same folder replaces the earlier export; a folder holding files
    of those names that are not an export of minigpt's (a project's own config.json, another
    model's tokenizer, a GPT-2 from the hub) is refused before anything is written, its files as
    they were."""
    tokenizer = CharTokenizer("abcdefgh")
    model = GPT(GPTConfig(vocab_size=8, block_size=8, n_layer=1, n_head=2, n_embd=16))
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "model.pt", model, tokenizer))
    export_hf(ckpt, tmp_path / "hf")
    assert export_hf(ckpt, tmp_path / "hf")  # again, over the earlier one
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("kept")
    export_hf(ckpt, tmp_path / "mine")  # other files beside an export are left alone
    assert (tmp_path / "mine" / "notes.txt").read_text() == "kept"
    for own in ({"config.json": '{"name": "my project"}'},
                {"tokenizer.json": "{}"},
                {"config.json": json.dumps({"model_type": "llama"}), "tokenizer.json": "{}"},
                {"config.json": json.dumps({"model_type": "gpt2"}),  # GPT-2 from the hub
                 "model.safetensors": "its weights"}):
        folder = tmp_path / f"own-{len(list(tmp_path.iterdir()))}"
        folder.mkdir()
        for name, text in own.items():
            (folder / name).write_text(text)
        with pytest.raises(ConversionError, match=rf"is not an earlier export, and holds "
                                                  rf"{', '.join(own)}: exporting would replace"):
            export_hf(ckpt, folder)
        assert {p.name: p.read_text() for p in folder.iterdir()} == own
