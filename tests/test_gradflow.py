"""Gradient flow: each layer's gradient norm and update ratio, on the logged steps."""

import math

import pytest
import torch

from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT
from minigpt.runs.results import VariantResult
from minigpt.runs.state import replay
from minigpt.train.ablation import evidence
from minigpt.train.gradflow import GradientFlow, layer_groups


def test_layer_norms_equal_norms_computed_directly():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32))
    x = torch.randint(0, 50, (4, 16))
    _, loss = model(x, x)
    loss.backward()
    flow = GradientFlow(model)
    flow.grads()
    flow.before()
    flow.after()  # no step: nothing moved
    norms, ratios = flow.read()
    assert list(norms) == ["embedding", "1", "2", "head"]
    for i, block in enumerate(model.transformer.h):
        grads = torch.cat([p.grad.flatten() for p in block.parameters()])
        assert norms[str(i + 1)] == pytest.approx(torch.linalg.vector_norm(grads).item(), rel=1e-5)
    emb = torch.cat([model.transformer.wte.weight.grad.flatten(),
                     model.transformer.wpe.weight.grad.flatten()])
    assert norms["embedding"] == pytest.approx(torch.linalg.vector_norm(emb).item(), rel=1e-5)
    assert all(r == 0 for r in ratios.values())
    assert flow.read() is None  # read once


def test_a_tied_head_counts_once_with_the_embeddings():
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32))
    head = layer_groups(model)["head"]
    assert all(p is not model.lm_head.weight for p in head)
    untied = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32,
                           tie_weights=False))
    assert any(p is untied.lm_head.weight for p in layer_groups(untied)["head"])


def test_the_update_ratio_of_a_known_step():
    """SGD with lr 0.1 on a block whose gradients are all 1: every weight moves by 0.1."""
    model = GPT(GPTConfig(vocab_size=50, block_size=16, n_layer=1, n_head=2, n_embd=32))
    for p in model.parameters():
        p.grad = torch.ones_like(p)
    block = list(model.transformer.h[0].parameters())
    weights = torch.cat([p.detach().flatten() for p in block])
    flow = GradientFlow(model)
    flow.grads()
    flow.before()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    flow.after()
    norms, ratios = flow.read()
    n = weights.numel()
    assert norms["1"] == pytest.approx(math.sqrt(n), rel=1e-5)
    assert ratios["1"] == pytest.approx(0.1 * math.sqrt(n) / torch.linalg.vector_norm(weights).item(),
                                        rel=1e-4)


def test_logged_steps_carry_the_layers_and_the_fold_keeps_them(tiny_train_config, corpus):
    from conftest import prepare_data

    from minigpt.train.trainer import Trainer

    trainer = Trainer(tiny_train_config.with_overrides(max_steps=10),
                      prepare_data(corpus, tiny_train_config))
    events = list(trainer.run())
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 5, 10]
    for e in steps:
        assert list(e["grad_norms"]) == ["embedding", "1", "2", "head"]
        assert all(v > 0 for v in e["grad_norms"].values())
        assert all(0 < v < 1 for v in e["update_ratios"].values())
    state = replay(events)
    assert state.grad_norms == steps[-1]["grad_norms"]
    assert state.update_ratios == steps[-1]["update_ratios"]
    ablated = replay([{**e, "variant": "residual"} for e in events])
    assert ablated.variant_grad_norms == {"residual": steps[-1]["grad_norms"]}


def test_a_step_without_layers_keeps_the_last_ones_and_bad_entries_are_dropped():
    state = replay([
        {"type": "step", "step": 1, "loss": 2.0, "grad_norms": {"1": 0.5, "2": "x", 3: 1.0},
         "update_ratios": [1]},
        {"type": "step", "step": 2, "loss": 1.9},
    ])
    assert state.grad_norms == {"1": 0.5} and state.update_ratios == {}


def _result(variant, val_loss, delta, distinct, norms, description=None):
    return VariantResult(variant=variant, description=description or variant, val_loss=val_loss,
                         val_loss_delta=delta, distinct_4grams=distinct, grad_norms=norms,
                         steps=100, diverged=None)


def test_evidence_says_what_the_numbers_say_both_ways():
    baseline = _result("baseline", 1.50, 0.0, 0.78, {"embedding": 1.0, "1": 0.4, "2": 0.5})
    starved = _result("residual", 2.13, 0.63, 0.70, {"embedding": 0.05, "1": 0.01, "2": 0.5},
                      "no residual")
    assert evidence(starved, baseline) == ("no residual: layer 1 gradient norm 1/40 of the "
                                           "baseline's; distinct 4-grams in samples 70% against "
                                           "78%; val loss +0.63 (one seed: no noise measured)")
    louder = _result("attention", 1.40, -0.10, 0.12, {"embedding": 1.1, "1": 1.2, "2": 0.5},
                     "no attention")
    assert evidence(louder, baseline) == ("no attention: layer 1 gradient norm 3.0x the "
                                          "baseline's; distinct 4-grams in samples 12% against "
                                          "78%; val loss -0.10 (one seed: no noise measured)")
    assert evidence(baseline, None) == "baseline: val loss 1.50; distinct 4-grams in samples 78%"
