import math

import pytest

from minigpt.errors import ConfigError
from minigpt.train.ablation import VARIANTS, AblationRunner, expand_variants


def test_every_named_variant_exists_and_says_what_it_does():
    assert set(VARIANTS) == {"residual", "attention", "post-ln", "no-ln", "pos-emb", "mlp",
                             "tying", "rope", "rmsnorm", "qk-norm", "swiglu", "relu2", "gqa",
                             "llama", "modern", "mlp-ratio", "no-mask", "size"}
    kinds = {name: {v.kind for v in variants} for name, variants in VARIANTS.items()}
    assert kinds["residual"] == {"remove"} and kinds["rope"] == kinds["llama"] == {"add"}
    assert kinds["no-mask"] == kinds["mlp-ratio"] == {"question"} and kinds["size"] == {"size"}
    assert [v.settings["mlp_ratio"] for v in VARIANTS["mlp-ratio"]] == [1, 2, 8]  # 4: baseline


def test_baseline_comes_first_and_size_is_a_sweep():
    names = [v.name for v in expand_variants(["residual", "size", "residual"])]
    assert names[:2] == ["baseline", "residual"]
    assert len([n for n in names if n.startswith("size-")]) == 5  # with the baseline: 6 sizes
    assert len(names) == 7


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

    from minigpt.cli.report import results_tables
    from minigpt.train.ablation import Variant
    from minigpt.train.trainer import Trainer

    # a variant whose loss becomes NaN after its first step, as an unstable one's does
    monkeypatch.setitem(VARIANTS, "explode", [Variant("explode", "unstable", {"dropout": 0.25})])
    real_step = Trainer._train_step

    def step(self):
        loss, measures, grad_norm, lr = real_step(self)
        if self.cfg.model.dropout == 0.25 and self.step >= 2:
            loss = loss * float("nan")
        return loss, measures, grad_norm, lr

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
    for table in results_tables(runner.results, 120):
        console.print(table)
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


# --- comparisons you can trust --------------------------------------------------------------------

def _trained(seed, val_loss, **numbers):
    from minigpt.runs.results import SeedRun
    from minigpt.train.ablation import _Trained

    trained = _Trained(seed)
    trained.run = SeedRun(seed, val_loss=val_loss, train_loss=val_loss, steps=10,
                          tokens_per_s=100.0, seconds=1.0, **numbers)
    trained.params = trained.body_params = 1000
    return trained


def test_seeds_give_a_mean_a_spread_and_an_interval_that_says_noise():
    """Three seeds each: the baseline 2.0, 2.1, 2.2; a variant 2.5, 2.6, 2.7 is outside the noise
    (+0.5 +- 0.23), another at 2.05, 2.2, 2.15 within it."""
    from minigpt.model.switches import Variant
    from minigpt.train.ablation import BASELINE, summarize

    baseline = summarize(BASELINE, [_trained(s, v) for s, v in zip((1, 2, 3), (2.0, 2.1, 2.2), strict=False)],
                         None)
    assert baseline.val_loss == pytest.approx(2.1) and baseline.val_loss_std == pytest.approx(0.1)
    assert baseline.kind == "baseline" and baseline.within_noise is None
    worse = summarize(Variant("worse", "worse"),
                      [_trained(s, v) for s, v in zip((1, 2, 3), (2.5, 2.6, 2.7), strict=False)], baseline)
    assert worse.val_loss_delta == pytest.approx(0.5)
    assert worse.delta_half_width == pytest.approx(2.776 * (0.02 / 3) ** 0.5, abs=1e-3)
    assert worse.within_noise is False and "outside the noise" in worse.evidence
    same = summarize(Variant("same", "same"),
                     [_trained(s, v) for s, v in zip((1, 2, 3), (2.05, 2.2, 2.15), strict=False)], baseline)
    assert same.within_noise is True and "within the noise of 3 seeds" in same.evidence
    assert [r.val_loss for r in same.runs] == [2.05, 2.2, 2.15]  # every seed's numbers kept


def test_a_model_without_the_mask_is_judged_with_it_put_back():
    from minigpt.model.switches import Variant
    from minigpt.train.ablation import BASELINE, summarize

    baseline = summarize(BASELINE, [_trained(1, 2.4)], None)
    cheat = summarize(Variant("no-mask", "no causal mask"),
                      [_trained(1, 0.3, masked_val_loss=4.1)], baseline)
    assert cheat.masked_val_loss == 4.1
    assert ("with the mask put back, as it must generate, val loss 4.10 against the baseline's "
            "2.40: its low training loss came from reading the next token in its input, and it "
            "learned nothing it can use") in cheat.evidence
    assert "one seed: no noise measured" in cheat.evidence


def test_each_seed_and_the_masked_loss_are_measured(tiny_train_config, corpus):
    from conftest import prepare_data

    data = prepare_data(corpus, tiny_train_config)
    runner = AblationRunner(["no-mask"], data, tiny_train_config, steps=6, seed=3, seeds=2)
    events = list(runner.run())
    baseline, no_mask = runner.results
    assert [r.seed for r in no_mask.runs] == [3, 4] and no_mask.val_loss_std is not None
    assert {e["seed"] for e in events if e["type"] == "step"} == {0, 1}
    assert baseline.masked_val_loss is None and no_mask.masked_val_loss is not None
    # bits per byte: the loss in bits over the text's bytes per token (char: 1 byte, mostly)
    bpt = runner.bytes_per_token
    assert baseline.bits_per_byte == pytest.approx(baseline.val_loss / math.log(2) / bpt)
    assert events[-1]["scaling"] is None  # no size sweep


def test_equal_time_gives_each_variant_the_same_clock(tiny_train_config, corpus):
    """--time: every training runs on the clock for the same seconds; the preset's max_steps
    only maps the clock onto the schedule."""
    from conftest import prepare_data

    data = prepare_data(corpus, tiny_train_config)
    runner = AblationRunner(["tying"], data, tiny_train_config, time_budget=0.5, seed=3)
    events = list(runner.run())
    starts = [e for e in events if e["type"] == "start"]
    assert {e["time_budget"] for e in starts} == {0.5}
    assert all(r.steps >= 1 and r.tokens_per_s > 0 for r in runner.results)
    done = [e for e in events if e["type"] == "done"]
    # the steps stop a final evaluation's time (as long as the last one took, at most half the
    # budget) before the clock runs out, so the training itself had at least half of it
    assert all(e["reason"] == "finished" for e in done)
    assert all(e["time_spent"] - e["final_eval_seconds"] >= 0.25 for e in done)


def test_a_size_sweep_fits_a_scaling_law():
    """Points on a known power law, as a size sweep's results: the law comes back."""
    from minigpt.runs.results import VariantResult
    from minigpt.train.ablation import scaling_laws

    sizes = [3_000, 12_000, 50_000, 200_000, 800_000]
    results = [VariantResult(f"size-{n}", kind="baseline" if i == 2 else "size",
                             val_loss=20 * n ** -0.25 + 1.1, body_params=n, steps=100)
               for i, n in enumerate(sizes)]
    laws = scaling_laws(results, tokens_per_step=64)
    assert laws["parameters"]["alpha"] == pytest.approx(0.25, rel=1e-4)
    assert laws["parameters"]["points"] == 5 and laws["compute"]["alpha"] == pytest.approx(0.25, rel=1e-4)
    assert scaling_laws(results[:2], 64) is None


def test_the_tables_never_cut_a_variant_s_name(capsys):
    """At 80 columns, piped or not: the names whole ('baseli...', 'residu...' before), and what
    does not fit in a second table."""
    from rich.console import Console

    from minigpt.cli.report import results_tables
    from minigpt.runs.results import VariantResult

    results = [VariantResult(name, kind="baseline" if name == "baseline" else "remove",
                             val_loss=2.41234, val_loss_std=0.0123, val_loss_delta=0.3,
                             delta_half_width=0.05, within_noise=False, bits_per_byte=3.5,
                             train_loss=2.3, steps=300, tokens_per_s=21345.0, params=812345,
                             distinct_4grams=0.93, seconds=104.2)
               for name in ("baseline", "residual", "attention", "tokens-mlp-ratio-8", "modern")]
    tables = results_tables(results, 80)
    assert len(tables) >= 2 and len(results_tables(results, 200)) == 1
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    for table in tables:
        console.print(table)
    text = console.export_text()
    for r in results:
        assert text.count(f"│ {r.variant} ") == len(tables)  # whole, in every table
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80


def test_the_gradient_tables_never_cut_a_variant_s_name():
    """The gradient norms by layer, one column a variant: at 80 columns the names whole
    ('baseli...', 'mlp-ra...' before), the variants that do not fit in a further table."""
    from rich.console import Console

    from minigpt.cli.report import gradient_tables
    from minigpt.runs.results import VariantResult

    names = ["baseline", "rope", "rmsnorm", "swiglu", "qk-norm", "no-mask", "mlp-ratio-1",
             "mlp-ratio-2", "mlp-ratio-8"]
    norms = {"embedding": 0.515, "1": 0.492, "2": 0.233, "head": 0.0306}
    results = [VariantResult(name, grad_norms={k: v * (1 + i / 10) for k, v in norms.items()})
               for i, name in enumerate(names)]
    tables = gradient_tables(results, 80)
    assert len(tables) >= 2 and len(gradient_tables(results, 400)) == 1
    console = Console(width=80, record=True, file=open("/dev/null", "w"))  # noqa: SIM115
    for table in tables:
        console.print(table)
    text = console.export_text()
    assert all(f" {name} " in text for name in names) and "embedding" in text
    assert "…" not in text and max(len(line) for line in text.splitlines()) <= 80
    assert "0.567 (1.1x)" in text  # rope's embedding, against the baseline's
    assert gradient_tables([VariantResult("baseline")]) == []


def test_the_variants_are_listed_by_what_they_do_each_once():
    """ablate --help and the TUI's Ablate pane list the names under the same headings, in the
    order of KINDS, every name once."""
    from minigpt.model.switches import KINDS
    from minigpt.train.ablation import by_kind

    groups = by_kind()
    assert list(groups) == list(KINDS)  # remove, add, question, size
    assert sorted(n for names in groups.values() for n in names) == sorted(VARIANTS)
    assert "residual" in groups["remove"] and "llama" in groups["add"]
    assert groups["question"] == ["mlp-ratio", "no-mask"] and groups["size"] == ["size"]


def test_the_cells_are_the_same_for_every_table_and_a_timed_run_puts_steps_first():
    """The command line's "+-" and the TUI's "±" around the same numbers; an ablation on equal
    time shows each variant's steps and speed right after the noise."""
    from minigpt.runs.columns import pack, result_rows
    from minigpt.runs.results import VariantResult

    results = [VariantResult("baseline", kind="baseline", val_loss=2.41234, val_loss_std=0.0123,
                             val_loss_delta=0.0, delta_half_width=0.02, steps=300,
                             tokens_per_s=2000.0),
               VariantResult("residual", val_loss=2.7, val_loss_std=0.02, val_loss_delta=0.29,
                             delta_half_width=0.05, within_noise=False, steps=410,
                             tokens_per_s=2700.0)]
    headers, rows = result_rows(results)
    assert headers[:3] == ["val loss", "vs baseline", "noise"] and "masked" not in headers
    assert rows["baseline"]["val loss"] == "2.4123 +-0.012" and rows["baseline"]["vs baseline"] == ""
    assert rows["residual"]["vs baseline"] == "+0.290 +-0.050"
    assert rows["residual"]["noise"] == "outside"
    _, tui = result_rows(results, plus_minus="±")
    assert tui["residual"]["val loss"] == "2.7000 ±0.020"
    timed, _ = result_rows(results, timed=True)
    assert timed[:5] == ["val loss", "vs baseline", "noise", "steps", "tokens/s"]
    one_seed = [VariantResult("baseline", kind="baseline", val_loss=2.4, steps=300,
                              tokens_per_s=9.0)]
    assert result_rows(one_seed, timed=True)[0] == ["val loss", "steps", "tokens/s"]
    assert pack({"a": 5, "b": 5, "c": 5}, 10) == [["a", "b"], ["c"]]
    assert pack({"wide": 20, "b": 5}, 10) == [["wide"], ["b"]]  # too wide alone: alone
