"""Preference tuning: DPO's loss as the paper writes it, the batches of pairs, the preference
files' errors, and a run whose first loss is log 2 (the policy is its reference) and whose
reference never moves."""

import json
import math

import pytest
import torch

from minigpt.data.chat import ChatTokenizer
from minigpt.data.tokenizer import CharTokenizer
from minigpt.errors import DataError
from minigpt.train.dpo import PreferenceData, dpo_loss, load_preferences, reply_logps


def test_the_loss_is_the_paper_s():
    chosen, rejected = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -2.0])
    ref_chosen, ref_rejected = torch.tensor([-3.5, -4.0]), torch.tensor([-3.5, -2.5])
    loss, measures = dpo_loss(chosen, rejected, ref_chosen, ref_rejected, beta=0.5)
    # by hand: margins 0.5*((-3+3.5)-(-4+3.5)) = 0.5 and 0.5*((-5+4)-(-2+2.5)) = -0.75
    expected = (-math.log(1 / (1 + math.exp(-0.5))) - math.log(1 / (1 + math.exp(0.75)))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)
    assert measures["margin"].item() == pytest.approx((0.5 - 0.75) / 2)
    assert measures["accuracy"].item() == 0.5  # one pair of two prefers the chosen reply
    # the mean log-ratio to the reference of the four replies
    assert measures["kl"].item() == pytest.approx((0.5 - 0.5 - 1.0 + 0.5) / 4)
    equal, _ = dpo_loss(chosen, rejected, chosen, rejected, beta=0.5)
    assert equal.item() == pytest.approx(math.log(2))  # the policy is its reference


def test_the_loss_pushes_the_chosen_reply_up_and_the_rejected_down():
    chosen, rejected = torch.tensor([-3.0], requires_grad=True), torch.tensor([-3.0],
                                                                             requires_grad=True)
    loss, _ = dpo_loss(chosen, rejected, torch.tensor([-3.0]), torch.tensor([-3.0]), beta=0.1)
    loss.backward()
    assert chosen.grad.item() < 0 < rejected.grad.item()


def test_a_reply_s_log_probability_sums_its_own_tokens(tiny_model_config):
    from minigpt.model.gpt import GPT

    model = GPT(tiny_model_config).eval()
    x = torch.randint(50, (2, 8))
    y = torch.full((2, 8), -1)
    y[0, 5:] = x[0, 5:]  # any targets: the sum is over the positions that have one
    y[1, 2:4] = x[1, 2:4]
    with torch.no_grad():
        got = reply_logps(model, x, y)
        logps = torch.log_softmax(model(x)[0], dim=-1)
    assert got[0].item() == pytest.approx(sum(logps[0, p, x[0, p]].item() for p in range(5, 8)),
                                          rel=1e-5)
    assert got[1].item() == pytest.approx(sum(logps[1, p, x[1, p]].item() for p in (2, 3)),
                                          rel=1e-5)


@pytest.fixture(params=["plain", "template"])
def tokenizer(request):
    base = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz !.?")
    return base if request.param == "plain" else ChatTokenizer(base)


def _data(tokenizer, pairs):
    encoded = [(tokenizer.encode(p), tokenizer.encode(c), tokenizer.encode(r)) for p, c, r in pairs]
    return PreferenceData(tokenizer, encoded, encoded, "test", "test")


def test_a_batch_holds_the_chosen_replies_then_the_rejected_ones(tokenizer):
    data = _data(tokenizer, [("say hi", "hi!", "hi."), ("a long prompt that does not fit", "yes!",
                                                         "no.")])
    x, y = data.batches(4, 16, seed=0, device=torch.device("cpu")).train()
    assert x.shape == y.shape == (8, 16)
    for row in range(4):
        chosen, rejected = row, row + 4
        # the same prompt in both halves, and only the reply is a target, whole
        said = tokenizer.decode(y[chosen][y[chosen] >= 0].tolist())
        assert said in ("hi!", "yes!")
        assert tokenizer.decode(y[rejected][y[rejected] >= 0].tolist()) == \
            {"hi!": "hi.", "yes!": "no."}[said]
        positions = (y[chosen] >= 0).nonzero().flatten().tolist()
        assert all(x[chosen, p + 1] == y[chosen, p] for p in positions[:-1])
        # the prompt's end comes just before the reply: a long one is cut from the left
        prompt = tokenizer.decode(x[chosen, :positions[0] + 1].tolist())
        assert prompt.endswith("say hi" if said == "hi!" else "does not fit")
    assert {"hi!", "yes!"} <= {tokenizer.decode(y[r][y[r] >= 0].tolist()) for r in range(4)}


def _write(path, lines):
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("line, fragment", [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    ('{"prompt": "a", "chosen": "b"}', "no 'rejected' field"),
    ('{"prompt": "a", "chosen": "b", "rejected": 3}', "'rejected' is not a reply's text"),
    ('{"prompt": "", "chosen": "b", "rejected": "c"}', "'prompt' is not text"),
    ('{"prompt": "a", "chosen": "\\u00e9", "rejected": "c"}', "vocabulary lacks"),
])
def test_a_malformed_preference_names_its_file_and_line(tmp_path, line, fragment):
    from minigpt.train.finetune import DPO

    tokenizer = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz !.?")
    good = json.dumps({"prompt": "say hi", "chosen": "hi!", "rejected": "hi."})
    path = _write(tmp_path / "prefs.jsonl", [good, "", line])
    with pytest.raises(DataError, match=f"prefs.jsonl:3: .*{fragment}"):
        load_preferences(str(path), tokenizer, DPO)


def test_preferences_need_two_pairs_and_a_file(tmp_path):
    from minigpt.train.finetune import DPO

    tokenizer = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz !.?")
    one = _write(tmp_path / "one.jsonl", [json.dumps({"prompt": "a", "chosen": "b",
                                                      "rejected": "c"})])
    with pytest.raises(DataError, match="at least 2"):
        load_preferences(str(one), tokenizer, DPO)
    with pytest.raises(DataError, match="no such file"):
        load_preferences(str(tmp_path / "missing.jsonl"), tokenizer, DPO)


def test_a_run_starts_at_log_2_and_leaves_its_reference_as_it_was(tmp_path, english_text):
    from minigpt.model.gpt import GPT
    from minigpt.train.finetune import DPO
    from minigpt.train.trainer import Trainer

    tokenizer = ChatTokenizer(CharTokenizer.from_text(english_text))
    prefs = [json.dumps({"prompt": f"Name {w}.", "chosen": f"{w}!", "rejected": f"{w}."})
             for w in ("one", "two", "three", "four", "five", "six")]
    data = load_preferences(str(_write(tmp_path / "p.jsonl", prefs)), tokenizer, DPO)
    cfg = DPO.with_overrides(vocab_size=tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2,
                             n_embd=32, batch_size=4, max_steps=6, eval_interval=6, eval_iters=2,
                             sample_tokens=0, lr=1e-2, log_interval=1)
    torch.manual_seed(0)
    start = GPT(cfg.model).state_dict()
    trainer = Trainer(cfg, data, device="cpu", dtype="fp32", weights=start)
    events = list(trainer.run())
    evals = [e for e in events if e["type"] == "eval"]
    assert evals[0]["train_loss"] == pytest.approx(math.log(2), abs=1e-6)
    assert evals[0]["accuracy"] == 0.0 and evals[0]["margin"] == pytest.approx(0.0, abs=1e-6)
    steps = [e for e in events if e["type"] == "step"]
    assert all({"margin", "accuracy", "kl"} <= set(e) for e in steps)
    assert evals[-1]["val_loss"] != evals[0]["val_loss"]  # the policy moved
    reference = trainer.objective.reference.state_dict()
    assert all(torch.equal(reference[name], start[name]) for name in start)
