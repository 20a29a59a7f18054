"""LoRA (model/lora.py): adapters that change nothing when new, fold into the weights exactly,
train alone; how `minigpt train --lora` plans, saves and resumes them; and their export as a
PEFT adapter folder that peft loads onto the exported base model with equal logits."""

from __future__ import annotations

import json
import math
import re
from dataclasses import replace

import pytest
import torch
from conftest import assert_one_line_error, cli, prepare_data

from minigpt.checkpoint import load_checkpoint, save_checkpoint
from minigpt.data.tokenizer import CharTokenizer
from minigpt.errors import ConfigError
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT
from minigpt.model.lora import (
    LoRALinear,
    adapters_off,
    add_lora,
    lora_layers,
    merge_lora,
    merge_state,
    split_state,
    trainable_params,
)
from minigpt.train.plan import plan_training
from minigpt.train.trainer import Trainer

CPU = torch.device("cpu")
ALL = "c_attn,attn.c_proj,c_fc,mlp.c_proj"


def tiny(**changes) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=4, n_embd=32,
                         **changes)).eval()


def moved(model: GPT) -> GPT:
    """Every adapter's B made non-zero, as training would: the adapters now change the output."""
    with torch.no_grad():
        for layer in lora_layers(model).values():
            layer.lora_B.weight.normal_(std=0.05)
    return model


IDS = torch.randint(0, 50, (2, 16), generator=torch.Generator().manual_seed(1))


def logits(model: GPT) -> torch.Tensor:
    with torch.no_grad():
        return model(IDS)[0]


# --- the module ------------------------------------------------------------------------------------


@pytest.mark.parametrize("targets", ["c_attn", ALL])
def test_a_new_adapter_changes_nothing(targets):
    model = tiny()
    before = logits(model)
    add_lora(model, r=4, alpha=16, targets=targets)
    assert torch.equal(logits(model), before)  # B = 0: exactly the base
    for layer in lora_layers(model).values():
        assert not layer.lora_B.weight.any() and layer.lora_A.weight.abs().sum() > 0


@pytest.mark.parametrize("changes", [{}, {"activation": "swiglu", "n_kv_head": 2, "bias": False}])
@pytest.mark.parametrize("targets", ["c_attn", "attn.c_proj,mlp.c_proj", ALL])
def test_only_the_adapters_train_r_times_in_plus_out_each(targets, changes):
    model = tiny(**changes)
    shapes = {name: m.weight.shape for name, m in model.named_modules()
              if isinstance(m, torch.nn.Linear)}
    add_lora(model, r=4, alpha=16, targets=targets)
    layers = lora_layers(model)
    assert len(layers) == 2 * len(targets.split(","))  # each target in each of the 2 blocks
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {f"{name}.lora_{m}.weight" for name in layers for m in "AB"}
    out_in = [shapes[name] for name in layers]
    assert trainable_params(model) == sum(4 * (o + i) for o, i in out_in)


def test_the_merged_model_computes_what_the_adapted_one_does():
    model = moved(add_lora(tiny(activation="swiglu", n_kv_head=2), 4, alpha=8, targets=ALL))
    adapted = logits(model)
    with adapters_off(model):
        base = logits(model)
    assert (adapted - base).abs().max() > 1e-2  # the adapters do something
    base_state, adapters = split_state(model)
    merged_state = merge_state(base_state, adapters, alpha=8)  # a checkpoint's way
    merge_lora(model)  # a model's way
    assert not lora_layers(model)
    assert all(type(m) is not LoRALinear for m in model.modules())
    assert (logits(model) - adapted).abs().max() < 1e-5
    assert model.state_dict().keys() == merged_state.keys()
    assert all(torch.allclose(model.state_dict()[k], v, atol=1e-7) for k, v in merged_state.items())


# --- training ---------------------------------------------------------------------------------------


@pytest.fixture
def start(english_text, tiny_train_config):
    """A tiny model's weights and a LoRA recipe for it, with the data it trains on."""
    tokenizer = CharTokenizer.from_text(english_text)
    cfg = tiny_train_config.with_overrides(vocab_size=tokenizer.vocab_size, max_steps=4,
                                           eval_interval=2, sample_tokens=0, lr=1e-2,
                                           lora_r=4, lora_targets="c_attn,c_fc")
    torch.manual_seed(0)
    weights = GPT(cfg.model).state_dict()
    return cfg, weights, tokenizer


def test_a_few_steps_move_the_adapters_and_leave_every_base_weight_as_it_was(start, corpus):
    cfg, weights, tokenizer = start
    trainer = Trainer(cfg, prepare_data(corpus, cfg, tokenizer), device="cpu", dtype="fp32",
                      weights=weights)
    events = list(trainer.run())
    base, adapters = split_state(trainer.model)
    assert base.keys() == weights.keys()
    assert all(torch.equal(base[name], weights[name]) for name in weights)  # bit for bit
    assert all(t.any() for name, t in adapters.items() if ".lora_B." in name)  # B moved from 0
    optimized = [p for group in trainer.optimizer.param_groups for p in group["params"]]
    assert {id(p) for p in optimized} == {id(p) for p in trainer.model.parameters()
                                           if p.requires_grad}
    began = events[0]
    n_embd, layers = cfg.model.n_embd, cfg.model.n_layer  # c_attn: E -> 3E, c_fc: E -> 4E
    assert began["trainable_params"] == layers * 4 * ((n_embd + 3 * n_embd) + (n_embd + 4 * n_embd))
    assert began["params"] == GPT(cfg.model).num_params() + began["trainable_params"]


def test_a_preference_run_s_reference_is_the_base_with_its_adapters_off(tmp_path, english_text):
    from minigpt.data.chat import ChatTokenizer
    from minigpt.train.dpo import load_preferences
    from minigpt.train.finetune import DPO

    tokenizer = ChatTokenizer(CharTokenizer.from_text(english_text))
    path = tmp_path / "p.jsonl"
    path.write_text("\n".join(json.dumps({"prompt": f"Name {w}.", "chosen": f"{w}!",
                                          "rejected": f"{w}."})
                              for w in ("one", "two", "three", "four", "five")))
    cfg = DPO.with_overrides(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1,
                             n_head=2, n_embd=32, batch_size=4, max_steps=4, eval_interval=4,
                             eval_iters=1, sample_tokens=0, lr=1e-2, lora_r=2)
    data = load_preferences(str(path), tokenizer, cfg)
    torch.manual_seed(0)
    base = GPT(cfg.model).eval()
    trainer = Trainer(cfg, data, device="cpu", dtype="fp32", weights=base.state_dict())
    events = list(trainer.run())
    evals = [e for e in events if e["type"] == "eval"]
    assert evals[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-6)  # policy = reference
    assert evals[-1]["val_loss"] != evals[0]["val_loss"]  # the policy moved
    x = torch.randint(0, tokenizer.vocab_size, (2, 32))
    with torch.no_grad():
        assert torch.equal(trainer.objective.reference(x)[0], base(x)[0])


def test_instruction_tuning_trains_the_chat_tokens_rows_and_no_other_row(tiny_checkpoint,
                                                                          tmp_path):
    from minigpt.data.chat import load_conversations
    from minigpt.train.finetune import SFT, finetune_config, with_chat_tokens

    start = with_chat_tokens(load_checkpoint(tiny_checkpoint))  # 4 new rows, all the same
    cfg = finetune_config(start, SFT, {"lora_r": 4, "max_steps": 3, "batch_size": 4,
                                       "eval_interval": 3, "eval_iters": 1, "sample_tokens": 0})
    talk = tmp_path / "talk.jsonl"
    talk.write_text("\n".join(json.dumps({"messages": [{"role": "user", "content": w},
                                                      {"role": "assistant", "content": w[::-1]}]})
                              for w in ("one", "two", "three", "four", "five", "six")))
    data = load_conversations(str(talk), start.tokenizer, cfg.model.block_size, cfg.val_fraction)
    trainer = Trainer(cfg, data, device="cpu", dtype="fp32", weights=start.state_dict)
    began = next(trainer.run())
    list(trainer.run())
    rows = sorted(start.tokenizer.specials.values())
    before, after = start.state_dict["transformer.wte.weight"], trainer.model.transformer.wte.weight
    assert cfg.model.tie_weights and not torch.equal(after[rows], before[rows])  # they learn
    assert len({tuple(row.tolist()) for row in after[rows]}) == 4  # each its own now
    others = [i for i in range(len(before)) if i not in rows]
    assert torch.equal(after[others], before[others])  # bit for bit: no decay, no step
    adapters = sum(t.numel() for t in split_state(trainer.model)[1].values())
    assert began["trainable_params"] == adapters + 4 * cfg.model.n_embd


def test_a_kept_run_resumes_exactly_and_a_merged_one_is_refused(start, corpus, tmp_path):
    cfg, weights, tokenizer = start
    cfg = cfg.with_overrides(lora_keep=True)
    data = lambda: prepare_data(corpus, cfg, tokenizer)  # noqa: E731
    whole = Trainer(cfg, data(), device="cpu", dtype="fp32", weights=weights)
    list(whole.run())
    stopped = Trainer(cfg, data(), device="cpu", dtype="fp32", weights=weights, run_dir=tmp_path)
    for ev in stopped.run():
        if ev["type"] == "eval" and ev["step"] == 2:
            stopped.request_stop("interrupted")
    ckpt = load_checkpoint(tmp_path / "model.pt")
    assert ckpt.step == 2 and ckpt.adapters is not None and ckpt.train_state is not None
    resumed = Trainer.resume(ckpt, data(), device="cpu", dtype="fp32")
    list(resumed.run())
    ours, theirs = split_state(resumed.model)[1], split_state(whole.model)[1]
    assert all(torch.allclose(ours[k], theirs[k], atol=1e-6) for k in theirs)

    merged = tmp_path / "merged.pt"
    save_checkpoint(merged, whole.model, tokenizer, replace(cfg, lora_keep=False), None,
                    {"step": 4})
    with pytest.raises(ConfigError, match="adapters merged into the weights, which is not "
                                          "resumed.*--init .* --lora 4"):
        plan_training(CPU, resume=merged)


def test_checkpoints_hold_the_adapters_merged_or_apart_and_every_command_reads_both(
        start, corpus, tmp_path):
    cfg, weights, tokenizer = start
    trainer = Trainer(cfg, prepare_data(corpus, cfg, tokenizer), device="cpu", dtype="fp32",
                      weights=weights)
    list(trainer.run())
    adapted = trainer.model.eval()
    x = torch.randint(0, tokenizer.vocab_size, (2, 16))
    with torch.no_grad():
        expected = adapted(x)[0]
    for keep in (False, True):
        trainer.cfg = cfg.with_overrides(lora_keep=keep)
        path = trainer.save(tmp_path / f"keep-{keep}.pt")
        ckpt = load_checkpoint(path)
        assert not any(".lora_" in name for name in ckpt.state_dict)  # the base's names only
        assert (ckpt.adapters is not None) == keep
        assert (ckpt.train_state is not None) == keep  # merged: nothing left to resume
        with torch.no_grad():
            assert (ckpt.build_model().eval()(x)[0] - expected).abs().max() < 1e-5
        if keep:
            base = ckpt.build_model(adapters=False)
            assert all(torch.equal(base.state_dict()[k], weights[k]) for k in weights)
        ran = cli("generate", "--ckpt", path, "-p", "The ", "-n", 5, "--seed", 1)
        assert ran.returncode == 0 and ran.stdout.startswith("The "), ran.stderr
        info = cli("info", path)
        said = "adapters kept apart" if keep else "merged into the weights"
        assert "r=4, alpha 16, on c_attn, c_fc" in info.stdout and said in info.stdout


def test_the_adapters_are_checked_when_loaded(start, corpus, tmp_path):
    from minigpt.errors import CheckpointError

    cfg, weights, tokenizer = start
    model = add_lora(GPT(cfg.model), 4, 16, "c_attn,c_fc")
    path = save_checkpoint(tmp_path / "kept.pt", model, tokenizer,
                           cfg.with_overrides(lora_keep=True))
    payload = torch.load(path, weights_only=True)
    name = "transformer.h.0.attn.c_attn.lora_A.weight"
    payload["adapters"][name] = torch.zeros(3, 3)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=f"its adapter {name} has shape"):
        load_checkpoint(path)
    payload["train_config"]["lora_r"] = None
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match="adapters but no LoRA settings"):
        load_checkpoint(path)


# --- the command line -------------------------------------------------------------------------------


@pytest.mark.parametrize("options, fragment", [
    ({"lora_r": 0, "init": True}, "lora_r (--lora, the adapters' rank) must be at least 1, got 0"),
    ({"lora_r": 0}, "must be at least 1"),
    ({"lora_r": 4}, "name the model with --init MODEL"),
    ({"lora_r": 4, "lora_targets": "c_attn,wte", "init": True},
     "'wte' is not one of c_attn, attn.c_proj, c_fc, mlp.c_proj"),
    ({"lora_r": 64, "init": True}, "more than n_embd (32)"),
    ({"lora_keep": True, "init": True}, "--lora-keep is LoRA's: give the adapters' rank too"),
    ({"lora_r": 4, "resume": True}, "only its length"),
])
def test_lora_settings_that_cannot_be_are_refused(tiny_checkpoint, options, fragment):
    given = {k: tiny_checkpoint if v is True and k in ("init", "resume") else v
             for k, v in options.items()}
    paths = {k: given.pop(k) for k in ("init", "resume") if k in given}
    with pytest.raises(ConfigError, match=re.escape(fragment)):
        plan_training(CPU, overrides=given, **paths)


def test_lora_0_is_one_line_and_writes_nothing(tiny_checkpoint, tmp_path):
    out = tmp_path / "tuned.pt"
    ran = cli("train", "--init", tiny_checkpoint, "--lora", 0, "--out", out)
    assert_one_line_error(ran, "--lora, the adapters' rank", "at least 1")
    assert list(tmp_path.iterdir()) == []
    ran = cli("train", "--init", tiny_checkpoint, "--lora", 4, "--lora-targets", "q", "--out", out)
    assert_one_line_error(ran, "'q' is not one of c_attn")
    assert list(tmp_path.iterdir()) == []


def test_train_lora_says_what_trains(tiny_checkpoint, tmp_path, english_text):
    text = tmp_path / "text.txt"
    text.write_text(english_text[:20_000])
    ran = cli("train", "--init", tiny_checkpoint, "--lora", 4, "--data", text, "--steps", 1,
              "--block-size", 16, "--batch-size", 2, "--eval-interval", 1, "--out",
              tmp_path / "tuned.pt", "--quiet")
    assert ran.returncode == 0, ran.stderr
    base = replace(load_checkpoint(tiny_checkpoint).model_config, block_size=16)  # wpe cut to 16
    trainable = base.n_layer * 4 * (base.n_embd + 3 * base.n_embd)
    total = GPT(base).num_params() + trainable
    said = " ".join(ran.stdout.split())  # as wide as the terminal: lines wrap anywhere
    assert (f"lora r=4, alpha 16, on c_attn: {trainable:,} of {total:,} parameters train "
            f"({trainable / total:.2%}); saved merged into the weights") in said


# --- export: a PEFT adapter folder ------------------------------------------------------------------


@pytest.mark.parametrize("fmt, changes, targets", [
    ("gpt2", {}, "c_attn"),
    ("gpt2", {"tie_weights": False}, ALL),
    ("llama", {"position": "rope", "norm": "rmsnorm", "activation": "swiglu", "n_kv_head": 2,
               "bias": False, "tie_weights": False}, ALL),
])
def test_peft_loads_the_exported_adapter_onto_the_exported_base_with_equal_logits(
        tmp_path, english_text, fmt, changes, targets):
    transformers = pytest.importorskip("transformers")
    peft = pytest.importorskip("peft", reason="peft is the reference for the adapter folder")
    from minigpt.hf.formats import export_hf
    from minigpt.train.config import preset

    tokenizer = CharTokenizer.from_text(english_text[:5000])
    cfg = preset("tiny").with_overrides(vocab_size=tokenizer.vocab_size, block_size=16,
                                        n_layer=2, n_head=4, n_embd=32, lora_r=4,
                                        lora_alpha=8.0, lora_targets=targets, lora_keep=True,
                                        **changes)
    torch.manual_seed(0)
    model = moved(add_lora(GPT(cfg.model), 4, 8.0, targets)).eval()
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "kept.pt", model, tokenizer, cfg))
    chosen, written = export_hf(ckpt, tmp_path / "hf", fmt)
    assert chosen == fmt
    assert {"adapter/adapter_config.json", "adapter/adapter_model.safetensors"} <= set(written)
    config = json.loads((tmp_path / "hf" / "adapter" / "adapter_config.json").read_text())
    assert config["fan_in_fan_out"] == (fmt == "gpt2")  # GPT-2's Conv1D stores W transposed

    base = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    ids = torch.randint(0, tokenizer.vocab_size, (2, 16))
    with torch.no_grad():
        with adapters_off(model):
            assert (base(ids).logits - model(ids)[0]).abs().max() < 1e-4  # the folder: the base
        tuned = peft.PeftModel.from_pretrained(base, tmp_path / "hf" / "adapter").eval()
        assert (tuned(ids).logits - model(ids)[0]).abs().max() < 1e-4

    # exported again without adapters (merged), the earlier adapter folder goes
    merged = save_checkpoint(tmp_path / "merged.pt", model, tokenizer,
                             cfg.with_overrides(lora_keep=False))
    export_hf(load_checkpoint(merged), tmp_path / "hf", fmt)
    assert not (tmp_path / "hf" / "adapter").exists()
