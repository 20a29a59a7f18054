import pytest

from minigpt.errors import ConfigError
from minigpt.train.ablation import VARIANTS, AblationRunner, expand_variants


def test_every_named_variant_exists():
    assert set(VARIANTS) == {"residual", "attention", "post-ln", "no-ln", "pos-emb", "mlp",
                             "tying", "size"}


def test_baseline_comes_first_and_size_is_a_sweep():
    names = [v.name for v in expand_variants(["residual", "size", "residual"])]
    assert names[:2] == ["baseline", "residual"]
    assert len([n for n in names if n.startswith("size-")]) == 3
    assert len(names) == 5


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ConfigError, match="unknown variant.*choose from: residual"):
        expand_variants(["residuals"])


def test_runner_trains_each_variant_on_the_same_budget(tiny_train_config, corpus):
    from conftest import prepare_data

    data = prepare_data(corpus, tiny_train_config)
    runner = AblationRunner(["attention", "tying"], data, tiny_train_config, steps=3, seed=3)
    events = list(runner.run())
    results = runner.results
    assert [r.variant for r in results] == ["baseline", "attention", "tying"]
    assert results[0].val_loss_delta == 0
    for r in results:
        assert r.steps == 3 and r.tokens_per_s > 0 and r.seconds > 0 and r.sample
        assert r.val_loss_delta == pytest.approx(r.val_loss - results[0].val_loss)
    assert results[2].params > results[0].params  # an untied head adds a matrix
    assert {e["variant"] for e in events if e["type"] == "step"} == {"baseline", "attention", "tying"}


def test_a_variant_that_diverges_is_a_result_not_the_end(tiny_train_config, corpus, monkeypatch):
    from conftest import prepare_data

    from minigpt.cli.report import results_table
    from minigpt.train.ablation import Variant
    from minigpt.train.trainer import Trainer

    # a variant whose loss becomes NaN after its first step, as an unstable one's does
    monkeypatch.setitem(VARIANTS, "explode", [Variant("explode", "unstable", {"dropout": 0.25})])
    real_step = Trainer._train_step

    def step(self):
        loss, grad_norm, lr = real_step(self)
        if self.cfg.model.dropout == 0.25 and self.step >= 2:
            loss = loss * float("nan")
        return loss, grad_norm, lr

    monkeypatch.setattr(Trainer, "_train_step", step)
    runner = AblationRunner(["explode", "tying"], prepare_data(corpus, tiny_train_config),
                            tiny_train_config, steps=3, seed=3)
    events = list(runner.run())
    baseline, explode, tying = runner.results
    assert explode.diverged.startswith("training diverged by step")
    assert explode.val_loss is None and explode.val_loss_delta is None
    assert baseline.diverged is None and tying.val_loss_delta is not None
    notes = [e for e in events if e["type"] == "note"]
    assert [e["variant"] for e in notes] == ["explode"]
    assert notes[0]["message"] == explode.diverged
    assert events[-1]["type"] == "ablation_done" and events[-1]["reason"] == "finished"
    from rich.console import Console

    console = Console(width=120, record=True)
    console.print(results_table(runner.results))
    assert "diverged" in console.export_text()


def test_cancelled_in_a_variants_final_evaluation_drops_it(tiny_train_config, corpus,
                                                           monkeypatch, capsys):
    """A cancel that lands in the baseline's last evaluation cuts it short: the baseline's loop
    ends "finished" but has no loss. It is dropped as a cancelled variant is, and `ablate
    --quiet` (how the TUI runs it) prints what finished instead of failing on a missing loss."""
    from conftest import prepare_data

    from minigpt.cli.console import run_ablation
    from minigpt.train.trainer import Trainer

    runner = AblationRunner(["residual"], prepare_data(corpus, tiny_train_config),
                            tiny_train_config, steps=10, seed=3)
    real_estimate = Trainer.estimate_loss

    def estimate(self):
        if self.step == 10:
            runner.request_stop()
        return real_estimate(self)

    monkeypatch.setattr(Trainer, "estimate_loss", estimate)
    results = run_ablation(runner, quiet=True)
    assert results == [] and runner.results == []
    assert "cancelled" in capsys.readouterr().out
