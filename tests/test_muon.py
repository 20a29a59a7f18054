"""Muon: orthogonalized updates for the blocks' matrices, AdamW for the rest, resumable."""

import pytest
import torch
from conftest import prepare_data

from minigpt.checkpoint import load_checkpoint
from minigpt.train.muon import Muon, orthogonalize
from minigpt.train.trainer import Trainer


@pytest.mark.parametrize("shape", [(96, 32), (32, 128)])  # tall and wide, well conditioned
def test_orthogonalize_sets_every_singular_value_near_one(shape):
    G = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    G[:, 0] *= 100  # one direction far stronger than the others
    s = torch.linalg.svdvals(orthogonalize(G).float())
    assert s.min() > 0.5 and s.max() < 1.5


@pytest.mark.parametrize("shape", [(96, 32), (32, 128)])
def test_a_stack_of_matrices_is_orthogonalized_one_matrix_at_a_time(shape):
    """Muon orthogonalizes the matrices of one shape together, as a stack: each must come out as
    it would alone (its own norm, its own iteration), however different their scales."""
    stack = torch.randn(3, *shape, generator=torch.Generator().manual_seed(1))
    stack[1] *= 1000
    together = orthogonalize(stack, dtype=torch.float32)
    assert together.shape == stack.shape
    for G, Q in zip(stack, together, strict=True):
        assert torch.allclose(Q, orthogonalize(G, dtype=torch.float32), atol=1e-5)


def test_a_muon_run_moves_block_matrices_orthogonally_and_the_rest_by_adamw(
        tiny_train_config, corpus):
    cfg = tiny_train_config.with_overrides(optimizer="muon", muon_lr=0.02, warmup_steps=0,
                                           weight_decay=0.0)
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu")
    assert isinstance(trainer.optimizer, Muon)
    block = trainer.model.transformer.h[0].mlp.c_fc.weight
    embedding = trainer.model.transformer.wte.weight
    before = block.detach().clone(), embedding.detach().clone()
    trainer._train_step()

    # every direction moved by about as much: orthogonal (but one, which the gradient lacks:
    # a LayerNorm's output, the matrix's input, sums to zero over its features)
    s = torch.linalg.svdvals(block.detach() - before[0])
    assert s[:-1].max() / s[:-1].min() < 2
    assert s.max() == pytest.approx(0.02 * 2, rel=0.5)  # muon_lr, scaled up for a tall matrix
    # AdamW's first step moves each weight that has a gradient by lr, whatever its gradient
    moved = (embedding.detach() - before[1]).abs()
    assert moved.max() == pytest.approx(cfg.lr, rel=1e-2)


def test_a_muon_run_resumes_exactly_where_it_stopped(tiny_train_config, corpus, tmp_path):
    cfg = tiny_train_config.with_overrides(optimizer="muon", max_steps=4, eval_interval=2,
                                           log_interval=1)
    whole = Trainer(cfg, prepare_data(corpus, cfg), device="cpu")
    whole_losses = {e["step"]: e["loss"] for e in whole.run() if e["type"] == "step"}

    interrupted = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", run_dir=tmp_path)
    for ev in interrupted.run():
        if ev["type"] == "step" and ev["step"] == 2:
            interrupted.request_stop("interrupted")
    ckpt = load_checkpoint(tmp_path / "model.pt")
    resumed = Trainer.resume(ckpt, prepare_data(corpus, ckpt.train_config, ckpt.tokenizer),
                             device="cpu")
    later = {e["step"]: e["loss"] for e in resumed.run() if e["type"] == "step"}
    assert list(later) == [3, 4]  # every step after the stop, each as the whole run took it
    assert all(later[s] == pytest.approx(whole_losses[s], abs=1e-6) for s in later)


@pytest.mark.parametrize("dtype, expected", [("bf16", torch.bfloat16), ("fp32", torch.float32)])
def test_newton_schulz_runs_in_the_training_precision(tiny_train_config, corpus, monkeypatch,
                                                      dtype, expected):
    """bf16 where the matmuls train in bf16; fp32 where bf16 would be emulated (an AVX2-only CPU,
    where bf16 Newton-Schulz took most of each step)."""
    from minigpt.train import muon

    seen = []
    real = muon.orthogonalize
    monkeypatch.setattr(muon, "orthogonalize",
                        lambda G, **kw: seen.append(kw.get("dtype")) or real(G, **kw))
    cfg = tiny_train_config.with_overrides(optimizer="muon")
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", dtype=dtype)
    trainer._train_step()
    assert seen and set(seen) == {expected}
    assert orthogonalize(torch.randn(8, 4), dtype=expected).dtype == expected
