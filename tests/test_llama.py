"""The bridge to Hugging Face's Llama, checked against transformers itself.

Every model here is tiny, random and built in the test: minigpt models with Llama's switches,
exported and loaded by AutoModelForCausalLM, and LlamaForCausalLMs saved by transformers and
imported. transformers is the reference: logits must equal its to 1e-4, greedy continuations
token for token, and the round trips give back the same weights.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from conftest import assert_one_line_error, cli

from minigpt.checkpoint import load_checkpoint, save_checkpoint
from minigpt.data.tokenizer import BPETokenizer, CharTokenizer
from minigpt.errors import ConversionError
from minigpt.hf import llama
from minigpt.hf.formats import export_hf, import_hf, load_hf
from minigpt.infer.sampling import SamplingConfig, generate
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT, mlp_width
from minigpt.model.switches import COMBINATIONS

transformers = pytest.importorskip("transformers")

LLAMA = next(v for v in COMBINATIONS if v.name == "llama").settings  # ablate's "llama"
SHAPE = dict(block_size=24, n_layer=2, n_head=4, n_embd=32)
# minigpt models with Llama's switches: untied (the llama variant), tied, multi-query and
# grouped-query attention (1 and 2 key/value heads for 4 query heads), biases, and all at once
# with another RoPE base and norm epsilon.
EXPORTED = {
    "llama": {},
    "tied": dict(tie_weights=True),
    "mqa": dict(n_kv_head=1),
    "gqa": dict(n_kv_head=2),
    "bias": dict(bias=True),
    "all": dict(n_kv_head=2, tie_weights=True, bias=True, rope_theta=500000.0,
                layer_norm_epsilon=1e-3),
}
# LlamaForCausalLMs as transformers builds them: another MLP width, GQA, a tied head, biases,
# another RoPE base; and one saved as a pytorch_model.bin with LlamaModel's names.
IMPORTED = {
    "mha": dict(num_key_value_heads=4, intermediate_size=72),
    "gqa-tied": dict(num_key_value_heads=2, intermediate_size=64, tie_word_embeddings=True,
                     rope_theta=500000.0),
    "mqa-bias": dict(num_key_value_heads=1, intermediate_size=40, attention_bias=True,
                     mlp_bias=True, rms_norm_eps=1e-5),
    "bin": dict(num_key_value_heads=2, intermediate_size=72),
}


@pytest.fixture(scope="module")
def tokenizer(english_text) -> BPETokenizer:
    return BPETokenizer.train(english_text[:20_000], 300)


def peaked(model):
    """Every weight (RMSNorm gains too) made distinct, and logits peaked: a mixed-up tensor
    shows, and greedy choices are not near-ties."""
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3)
    return model.eval()


def minigpt_llama(vocab_size: int, seed: int = 0, **changes) -> GPT:
    torch.manual_seed(seed)
    return peaked(GPT(GPTConfig(vocab_size=vocab_size, **SHAPE, **{**LLAMA, **changes})))


def hf_llama(vocab_size: int, seed: int = 0, **changes):
    settings = dict(vocab_size=vocab_size, hidden_size=32, num_hidden_layers=2,
                    num_attention_heads=4, max_position_embeddings=24, bos_token_id=None,
                    eos_token_id=None, **changes)
    torch.manual_seed(seed)
    return peaked(transformers.LlamaForCausalLM(transformers.LlamaConfig(**settings)))


def hf_rope_theta(config) -> float:
    parameters = getattr(config, "rope_parameters", None)  # transformers 5; before: rope_theta
    return parameters["rope_theta"] if parameters else config.rope_theta


def save_hf_llama(model, folder: Path, tokenizer: BPETokenizer, fmt: str = "safetensors") -> Path:
    """A Llama folder as transformers saves one, with the tokenizer as tokenizer.json; "bin": a
    pytorch_model.bin of LlamaModel's names (no "model.") and the head, as older files have."""
    if fmt == "safetensors":
        model.save_pretrained(folder)
    else:
        folder.mkdir(parents=True, exist_ok=True)
        state = {k.removeprefix("model."): v for k, v in model.state_dict().items()}
        torch.save(state, folder / "pytorch_model.bin")
        model.config.save_pretrained(folder)
    (folder / "tokenizer.json").write_text(tokenizer.tokenizer.to_str(), encoding="utf-8")
    return folder


def max_logit_difference(ours: GPT, theirs, n_tokens: int, seed: int = 0) -> float:
    torch.manual_seed(seed)
    ids = torch.randint(0, ours.config.vocab_size, (2, n_tokens))
    with torch.no_grad():
        return (ours.eval()(ids)[0] - theirs(ids).logits).abs().max().item()


def hf_greedy(model, prompt: list[int], n: int) -> list[int]:
    model.generation_config.eos_token_id = None  # run the full n tokens, as minigpt does
    ids = torch.tensor([prompt])
    out = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                         do_sample=False, pad_token_id=0)
    return out[0, len(prompt):].tolist()


def minigpt_greedy(model: GPT, prompt: list[int], n: int) -> list[int]:
    return [t.id for t in generate(model, prompt, SamplingConfig(strategy="greedy",
                                                                 max_new_tokens=n))]


def export(model: GPT, tokenizer, folder: Path, fmt: str = "auto") -> Path:
    ckpt = load_checkpoint(save_checkpoint(folder / "model.pt", model, tokenizer))
    chosen, written = export_hf(ckpt, folder / "hf", fmt)
    assert chosen == "llama"
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= set(written)
    return folder / "hf"


# --- export: minigpt models with Llama's switches, loaded by transformers -------------------------


@pytest.mark.parametrize("case", EXPORTED)
def test_export_loads_as_llama_with_equal_logits_and_greedy_text(tmp_path, tokenizer, case):
    model = minigpt_llama(tokenizer.vocab_size, **EXPORTED[case])
    folder = export(model, tokenizer, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"] and config["exported_by"] == "minigpt"
    assert config["num_key_value_heads"] == (model.config.n_kv_head or model.config.n_head)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert type(theirs).__name__ == "LlamaForCausalLM"
    assert max_logit_difference(model, theirs, SHAPE["block_size"]) < 1e-4

    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    prompt = hf_tokenizer("The fox")["input_ids"]
    assert prompt == tokenizer.encode("The fox")
    n = SHAPE["block_size"] - len(prompt)
    ours = minigpt_greedy(model, prompt, n)
    assert ours == hf_greedy(theirs, prompt, n)
    assert tokenizer.decode(prompt + ours) == hf_tokenizer.decode(prompt + ours)


def test_a_char_level_llama_exports_with_the_same_ids(tmp_path, english_text):
    tokenizer = CharTokenizer.from_text(english_text[:5000])
    model = minigpt_llama(tokenizer.vocab_size, n_kv_head=2)
    folder = export(model, tokenizer, tmp_path)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(folder).eval()
    assert max_logit_difference(model, theirs, SHAPE["block_size"]) < 1e-4
    sample = english_text[1000:1200]
    assert transformers.AutoTokenizer.from_pretrained(folder)(sample)["input_ids"] == \
        tokenizer.encode(sample)


def test_gpt2_goes_out_as_gpt2_and_a_format_can_be_asked_for(tmp_path, tokenizer):
    gpt2 = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, **SHAPE))
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "gpt2.pt", gpt2, tokenizer))
    assert export_hf(ckpt, tmp_path / "auto")[0] == "gpt2"
    with pytest.raises(ConversionError, match=r"cannot be exported as Llama: it was built with "
                                              r"position='learned'.*norm='layernorm'"):
        export_hf(ckpt, tmp_path / "llama", "llama")
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "llama.pt", minigpt_llama(
        tokenizer.vocab_size), tokenizer))
    with pytest.raises(ConversionError, match=r"cannot be exported as GPT-2: .*position='rope'"):
        export_hf(ckpt, tmp_path / "gpt2", "gpt2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto", "gpt2.pt", "llama.pt"]


@pytest.mark.parametrize("switch, value", [
    ("residual", False), ("attention", False), ("mlp", False), ("layer_norm", "post"),
    ("layer_norm", "none"), ("qk_norm", True), ("causal", False), ("activation", "relu2"),
])
def test_switches_no_format_holds_are_refused_naming_each(tmp_path, switch, value):
    """One line naming, for GPT-2 and for Llama, what its folder cannot hold; nothing written."""
    model = minigpt_llama(8, **{switch: value})
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "model.pt", model, CharTokenizer("abcdefgh")))
    with pytest.raises(ConversionError) as refused:
        export_hf(ckpt, tmp_path / "hf")
    message = str(refused.value)
    assert "\n" not in message
    gpt2, llama_part = message.split("; a Llama folder cannot hold ")
    assert "a GPT-2 folder cannot hold" in gpt2 and "position='rope'" in gpt2
    assert f"{switch}={value!r}" in gpt2 and f"{switch}={value!r}" in llama_part
    assert not (tmp_path / "hf").exists()


def test_the_switches_table_says_what_a_llama_folder_holds():
    held = GPTConfig(**SHAPE, **LLAMA)
    assert llama.export_problems(held) == []
    assert llama.export_problems(GPTConfig(**{**held.to_dict(), "n_kv_head": 1, "bias": True,
                                              "tie_weights": True, "mlp_ratio": 3.5})) == []
    assert [p.split("=")[0] for p in llama.export_problems(GPTConfig(**SHAPE))] == [
        "position", "norm", "activation"]


# --- import: LlamaForCausalLMs saved by transformers ----------------------------------------------


@pytest.fixture(scope="module", params=IMPORTED)
def hf_folder(request, tmp_path_factory, tokenizer):
    """(transformers model, its saved folder) for each configuration."""
    case = request.param
    model = hf_llama(tokenizer.vocab_size, **IMPORTED[case])
    folder = tmp_path_factory.mktemp(f"llama-{case}")
    return model, save_hf_llama(model, folder, tokenizer, "bin" if case == "bin" else "safetensors")


def test_import_equals_transformers(hf_folder):
    reference, folder = hf_folder
    imported = load_hf(str(folder))
    assert imported.architecture == "Llama"
    model, hf = imported.model, reference.config
    cfg = model.config
    assert (cfg.position, cfg.norm, cfg.activation) == ("rope", "rmsnorm", "swiglu")
    assert (cfg.n_kv_head or cfg.n_head) == hf.num_key_value_heads
    assert mlp_width(cfg) == hf.intermediate_size
    assert (cfg.bias, cfg.tie_weights) == (hf.attention_bias, hf.tie_word_embeddings)
    assert cfg.rope_theta == hf_rope_theta(hf)
    assert cfg.layer_norm_epsilon == hf.rms_norm_eps
    assert max_logit_difference(model, reference, SHAPE["block_size"]) < 1e-4
    prompt = imported.tokenizer.encode("The fox")
    n = SHAPE["block_size"] - len(prompt)
    assert minigpt_greedy(model, prompt, n) == hf_greedy(reference, prompt, n)


def test_round_trip_llama_minigpt_llama_keeps_the_logits(tmp_path, hf_folder, tokenizer):
    reference, folder = hf_folder
    path, _ = import_hf(str(folder), tmp_path / "model.pt")
    assert export_hf(load_checkpoint(path), tmp_path / "hf")[0] == "llama"
    again = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, reference.config.vocab_size, (2, SHAPE["block_size"]))
    with torch.no_grad():
        assert (again(ids).logits - reference(ids).logits).abs().max().item() < 1e-5
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    assert hf_tokenizer("The quick brown fox")["input_ids"] == tokenizer.encode("The quick brown fox")


@pytest.mark.parametrize("case", ["llama", "all"])
def test_round_trip_minigpt_llama_minigpt_keeps_the_weights(tmp_path, tokenizer, case):
    model = minigpt_llama(tokenizer.vocab_size, **EXPORTED[case])
    back = load_hf(str(export(model, tokenizer, tmp_path))).model
    expected, got = model.state_dict(), back.state_dict()
    assert expected.keys() == got.keys()
    assert all(torch.equal(expected[name], got[name]) for name in expected)
    # the same model; mlp_ratio comes back as the ratio of the width, 85 / 32 for 8/3 x 32
    assert back.config == GPTConfig(**{**model.config.to_dict(), "mlp_ratio": back.config.mlp_ratio})
    assert mlp_width(back.config) == mlp_width(model.config)


# --- what import refuses, in one line --------------------------------------------------------------


def llama_config(**changes) -> dict:
    config = transformers.LlamaConfig(vocab_size=300, hidden_size=32, intermediate_size=64,
                                      num_hidden_layers=1, num_attention_heads=4).to_dict()
    return {**config, **changes}


@pytest.mark.parametrize("changes, fragment", [
    ({"rope_parameters": {"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0}},
     "rope_parameters asks for 'linear' RoPE"),
    ({"rope_parameters": None, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
     "rope_scaling asks for 'dynamic' RoPE"),
    ({"rope_parameters": {"rope_type": "llama3", "factor": 8.0, "rope_theta": 500000.0}},
     "'llama3' RoPE"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": 10000.0,
                          "partial_rotary_factor": 0.5}}, "partial_rotary_factor 0.5"),
    ({"hidden_act": "gelu"}, "hidden_act is 'gelu'"),
    ({"head_dim": 16}, "head_dim is 16, not hidden_size / num_attention_heads = 8"),
    ({"attention_bias": True}, "attention_bias is true and mlp_bias false"),
    ({"num_key_value_heads": 3}, "must be divisible by n_kv_head (3)"),
    ({"intermediate_size": 32 * 65}, "mlp_ratio must be"),
    ({"model_type": "mistral"}, "model_type is 'mistral'; minigpt imports GPT-2 ('gpt2') and "
                                "Llama ('llama') models"),
    # fields of the wrong type
    ({"rms_norm_eps": "tiny"}, "rms_norm_eps must be a number, got 'tiny'"),
    ({"tie_word_embeddings": "no"}, "tie_word_embeddings must be true or false"),
    ({"num_key_value_heads": 2.0}, "num_key_value_heads must be a whole number"),
    ({"rope_parameters": "default"}, "rope_parameters must be a JSON object"),
    ({"rope_parameters": {"rope_type": "default", "rope_theta": "1e4"}},
     "rope_theta must be a number"),
    ({"model_type": ["llama"]}, "model_type is ['llama']"),
])
def test_configurations_minigpt_cannot_compute_are_refused(tmp_path, changes, fragment):
    (tmp_path / "config.json").write_text(json.dumps(llama_config(**changes)))
    with pytest.raises(ConversionError, match=".") as refused:
        import_hf(str(tmp_path), tmp_path / "model.pt")
    assert fragment in str(refused.value) and "\n" not in str(refused.value)
    assert str(refused.value).startswith(f"{tmp_path / 'config.json'}: ")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json"]


def test_missing_and_mismatched_pieces_are_named(tmp_path, tokenizer):
    reference = hf_llama(tokenizer.vocab_size, num_key_value_heads=2, intermediate_size=64)
    folder = save_hf_llama(reference, tmp_path / "llama", tokenizer)
    shutil.copytree(folder, tmp_path / "no-tokenizer")
    (tmp_path / "no-tokenizer" / "tokenizer.json").unlink()
    with pytest.raises(ConversionError, match="no tokenizer.json in .*no-tokenizer"):
        load_hf(str(tmp_path / "no-tokenizer"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "num_key_value_heads": 4}))
    with pytest.raises(ConversionError, match=r"k_proj.weight in .* has shape \[16, 32\] but "
                                              r"config.json implies \[32, 32\]"):
        load_hf(str(folder))
    (folder / "config.json").write_text(json.dumps({**config, "num_hidden_layers": 3}))
    with pytest.raises(ConversionError, match=r"lacks 9 weight\(s\) .*model.layers.2"):
        load_hf(str(folder))
    (folder / "config.json").write_text(json.dumps({**config, "tie_word_embeddings": True}))
    assert load_hf(str(folder))  # a tied model's file may hold the head: skipped, it is wte
    (folder / "config.json").write_text(json.dumps({**config, "attention_bias": True,
                                                    "mlp_bias": True}))
    with pytest.raises(ConversionError, match="lacks 14 weight"):
        load_hf(str(folder))


# --- the command line ------------------------------------------------------------------------------


def test_cli_export_import_and_refusals(tmp_path, tokenizer):
    model = minigpt_llama(tokenizer.vocab_size, n_kv_head=2)
    save_checkpoint(tmp_path / "model.pt", model, tokenizer)
    exported = cli("export-hf", tmp_path / "model.pt", tmp_path / "hf")
    assert exported.returncode == 0, exported.stderr
    assert "a Hugging Face Llama folder" in exported.stdout
    imported = cli("import-hf", tmp_path / "hf", "--out", tmp_path / "back.pt")
    assert imported.returncode == 0, imported.stderr
    assert "(Llama)" in imported.stdout and "saved to" in imported.stdout
    back = load_checkpoint(tmp_path / "back.pt")
    assert "Hugging Face Llama" in back.meta["source"]
    assert all(torch.equal(back.state_dict[k], v) for k, v in model.state_dict().items())

    modern = minigpt_llama(8, qk_norm=True)
    save_checkpoint(tmp_path / "modern.pt", modern, CharTokenizer("abcdefgh"))
    assert_one_line_error(cli("export-hf", tmp_path / "modern.pt", tmp_path / "out"),
                          "a GPT-2 folder cannot hold", "a Llama folder cannot hold qk_norm=True")
    assert_one_line_error(cli("export-hf", tmp_path / "model.pt", tmp_path / "out", "--format",
                              "onnx"), "--format is 'onnx'; choose auto, gpt2 or llama")
    assert_one_line_error(cli("import-gpt2", tmp_path / "hf", "--out", tmp_path / "x.pt"),
                          "model_type is 'llama', not 'gpt2'")
    assert_one_line_error(cli("import-hf", tmp_path / "hf", "--out", tmp_path / "back.pt"),
                          "already exists")
    assert not (tmp_path / "out").exists() and not (tmp_path / "x.pt").exists()


def test_a_model_trained_with_llama_s_switches_generates_the_same_in_transformers(
        tmp_path, english_text):
    """train with the switches of ablate's "llama" and GQA, export-hf, and transformers'
    greedy text is minigpt generate's."""
    (tmp_path / "en.txt").write_text(english_text[:8000], encoding="utf-8")
    trained = cli("train", "--data", tmp_path / "en.txt", "--out", tmp_path / "m.pt",
                  "--preset", "tiny", "--block-size", "24", "--n-embd", "32", "--n-head", "4",
                  "--batch-size", "2", "--steps", "5", "-q", "--position", "rope", "--norm",
                  "rmsnorm", "--activation", "swiglu", "--mlp-ratio", "2.6667", "--no-bias",
                  "--no-tie-weights", "--n-kv-head", "2")
    assert trained.returncode == 0, trained.stderr
    assert cli("export-hf", tmp_path / "m.pt", tmp_path / "hf").returncode == 0
    theirs = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert theirs.config.num_key_value_heads == 2
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(tmp_path / "hf")
    prompt = hf_tokenizer("The ")["input_ids"]
    expected = hf_tokenizer.decode(prompt + hf_greedy(theirs, prompt, 20))
    generated = cli("generate", "--ckpt", tmp_path / "m.pt", "-p", "The ", "-n", "20",
                    "--strategy", "greedy")
    assert generated.stdout == expected + "\n"
