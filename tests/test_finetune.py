"""Instruction and preference tuning as `minigpt train` plans them, `minigpt eval`, and talking
to a model with or without the chat template (infer/dialogue.py)."""

import json
from pathlib import Path

import pytest
import torch
from conftest import cli

from minigpt.checkpoint import load_checkpoint
from minigpt.data.chat import ChatTokenizer, has_template
from minigpt.errors import ConfigError
from minigpt.infer.dialogue import Dialogue
from minigpt.train.finetune import with_chat_tokens
from minigpt.train.plan import plan_training

CPU = torch.device("cpu")


@pytest.mark.parametrize("options, fragment", [
    ({"sft": "tasks"}, "--sft tunes a trained model: name it with --init"),
    ({"dpo": "p.jsonl"}, "--dpo tunes a trained model"),
    ({"sft": "tasks", "dpo": "p.jsonl", "init": True}, "give one of them"),
    ({"sft": "tasks", "init": True, "data": "x.txt"}, "--data is for a corpus"),
    ({"sft": "tasks", "resume": True}, "--resume continues a run on its own data"),
    ({"init": True, "overrides": {"beta": 0.2}}, "--beta is DPO's strength"),
])
def test_tuning_options_that_cannot_go_together_are_refused(tiny_checkpoint, options, fragment):
    options = {k: tiny_checkpoint if v is True else v for k, v in options.items()}
    with pytest.raises(ConfigError, match=fragment):
        plan_training(CPU, **options)


def test_instruction_tuning_adds_the_template_s_tokens_and_keeps_the_weights(tiny_checkpoint,
                                                                             tmp_path):
    plan = plan_training(CPU, init=tiny_checkpoint, sft="tasks", out=tmp_path / "sft.pt")
    assert plan.cfg.objective == "sft" and plan.data == "tasks"
    assert isinstance(plan.tokenizer, ChatTokenizer)
    start, grown = load_checkpoint(tiny_checkpoint), plan.init
    old = start.model_config.vocab_size
    assert grown.model_config.vocab_size == plan.tokenizer.vocab_size > old
    wte = grown.state_dict["transformer.wte.weight"]
    assert torch.equal(wte[:old], start.state_dict["transformer.wte.weight"])
    assert torch.allclose(wte[old:], wte[:old].mean(dim=0).expand(wte.size(0) - old, -1))
    assert with_chat_tokens(grown) is grown  # a tuned model is tuned again as it is


def test_a_preference_run_is_not_resumed(tiny_checkpoint, tmp_path):
    from dataclasses import replace

    from minigpt.checkpoint import save_checkpoint
    from minigpt.model.gpt import GPT
    from minigpt.train.finetune import DPO

    start = load_checkpoint(tiny_checkpoint)
    cfg = replace(DPO, model=start.model_config)
    path = tmp_path / "dpo.pt"
    save_checkpoint(path, GPT(cfg.model), start.tokenizer, cfg, {"step": 1}, {"step": 1})
    with pytest.raises(ConfigError, match="not resumed: DPO measures it against the model"):
        plan_training(CPU, resume=path)


def _tuned_checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    """The tiny model with the chat template (untrained on it): a model people talk to in turns."""
    from minigpt.checkpoint import save_checkpoint
    from minigpt.model.gpt import GPT

    grown = with_chat_tokens(load_checkpoint(tiny_checkpoint))
    model = GPT(grown.model_config)
    model.load_state_dict(grown.state_dict)
    path = tmp_path / "chat.pt"
    save_checkpoint(path, model, grown.tokenizer, grown.train_config.with_overrides(
        vocab_size=grown.model_config.vocab_size), {"step": 0}, {"step": 0})
    return path


def test_eval_scores_each_task_for_each_model(tiny_checkpoint, tmp_path):
    chat = _tuned_checkpoint(tiny_checkpoint, tmp_path)
    out = tmp_path / "scores.json"
    ran = cli("eval", tiny_checkpoint, chat, "--tasks", "--n", 3, "--json", out)
    assert ran.returncode == 0, ran.stderr
    assert "reverse" in ran.stdout and "(chat)" in ran.stdout and "(continuation)" in ran.stdout
    models = json.loads(out.read_text())["models"]
    assert set(models) == {str(tiny_checkpoint), str(chat)}
    for scores in models.values():
        assert [s["task"] for s in scores] == ["reverse", "spell", "add", "count", "continue"]
        assert all(s["total"] == 3 and len(s["replies"]) == 3 for s in scores)
        assert all(s["accuracy"] == s["correct"] / 3 for s in scores)


def test_eval_asks_what_to_evaluate(tiny_checkpoint):
    ran = cli("eval", tiny_checkpoint)
    assert ran.returncode != 0 and "--tasks" in ran.stderr


def test_a_model_with_the_template_is_talked_to_in_turns(english_text):
    from minigpt.data.tokenizer import CharTokenizer

    tokenizer = ChatTokenizer(CharTokenizer.from_text(english_text))
    talk = Dialogue(tokenizer, system="Be brief.")
    first = talk.prompt("Hi")
    assert tokenizer.decode(first) == "<|system|>Be brief.<|end|><|user|>Hi<|end|><|assistant|>"
    talk.answered("Hi", "Hello")
    second = tokenizer.decode(talk.prompt("And"))
    assert second.endswith("<|user|>Hi<|end|><|assistant|>Hello<|end|><|user|>And<|end|>"
                           "<|assistant|>")
    talk.reset()
    assert talk.prompt("Hi") == first  # the system prompt stays


def test_a_base_model_continues_text_and_takes_no_system_prompt(english_text):
    from minigpt.data.tokenizer import CharTokenizer

    tokenizer = CharTokenizer.from_text(english_text)
    talk = Dialogue(tokenizer)
    assert not has_template(tokenizer) and "continues the text" in talk.said
    assert talk.prompt("The ") == tokenizer.encode("The ")
    talk.answered("The ", "end")
    assert talk.prompt("The ") == tokenizer.encode("The ")  # each prompt stands alone
    with pytest.raises(ConfigError, match="no chat template, so no system prompt"):
        Dialogue(tokenizer, system="Be brief.")


def test_generate_answers_in_the_template_and_says_so(tiny_checkpoint, tmp_path):
    chat = _tuned_checkpoint(tiny_checkpoint, tmp_path)
    ran = cli("generate", "--ckpt", chat, "--prompt", "Reverse: cat", "--system", "Be brief.",
              "--max-new-tokens", 5, "--seed", 1)
    assert ran.returncode == 0, ran.stderr
    assert "<|assistant|>" not in ran.stdout and "Reverse: cat" not in ran.stdout  # the reply only
    assert "chat template" in ran.stderr
    refused = cli("generate", "--ckpt", tiny_checkpoint, "--prompt", "x", "--system", "Be brief.")
    assert refused.returncode != 0 and "no chat template" in refused.stderr


def test_info_tells_a_base_model_from_its_tuned_child(tiny_checkpoint, tmp_path):
    chat = _tuned_checkpoint(tiny_checkpoint, tmp_path)
    base, tuned = cli("info", tiny_checkpoint).stdout, cli("info", chat).stdout
    assert "chat template" not in base and "chat template" in tuned
    assert "the next token of text" in base
