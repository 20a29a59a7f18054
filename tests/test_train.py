import json
import os
import signal
import time

import pytest
import torch
from conftest import prepare_data

from minigpt.checkpoint import load_checkpoint
from minigpt.errors import TrainingDiverged
from minigpt.runs.log import read_events
from minigpt.train.clock import Throughput
from minigpt.train.schedule import decay_shape, lr_at
from minigpt.train.trainer import Trainer


def run(cfg, corpus, **kw):
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", **kw)
    return trainer, list(trainer.run())


def of(events, kind):
    return [e for e in events if e["type"] == kind]


@pytest.mark.slow
def test_loss_falls_and_events_tell_the_story(tiny_train_config, corpus):
    cfg = tiny_train_config.with_overrides(max_steps=120, eval_interval=60)
    _, events = run(cfg, corpus)
    kinds = [e["type"] for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    evals = of(events, "eval")
    assert [e["step"] for e in evals] == [0, 60, 120]
    assert evals[-1]["val_loss"] < evals[0]["val_loss"] - 0.5
    steps = of(events, "step")
    assert [e["step"] for e in steps] == [1, *range(5, 121, 5)]  # the first at once
    for e in steps:
        assert e["tokens_per_s"] > 0 and e["grad_norm"] > 0 and e["lr"] > 0 and e["elapsed"] > 0
    assert len(of(events, "sample")) == 3
    done = events[-1]
    assert done["reason"] == "finished" and done["val_loss"] == evals[-1]["val_loss"]


@pytest.mark.slow
def test_events_are_appended_to_the_run_directory(tiny_train_config, corpus, tmp_path):
    _, events = run(tiny_train_config, corpus, run_dir=tmp_path)
    assert read_events(tmp_path) == json.loads(json.dumps(events))
    assert load_checkpoint(tmp_path / "model.pt").step == tiny_train_config.max_steps
    assert of(events, "checkpoint")[-1]["path"] == str(tmp_path / "model.pt")


def test_learning_rate_warms_up_then_decays_to_the_floor(tiny_train_config):
    cfg = tiny_train_config.with_overrides(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110)
    assert lr_at(0, cfg) == pytest.approx(0.1)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(60, cfg) == pytest.approx(0.55)
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert all(lr_at(s, cfg) >= lr_at(s + 1, cfg) for s in range(10, 110))


def test_a_peak_below_the_floor_never_rises_after_warmup(tiny_train_config):
    """--lr 1e-5 on a preset whose min_lr is 2e-4: the rate stays at 1e-5, not decays upwards."""
    cfg = tiny_train_config.with_overrides(lr=1e-5, min_lr=2e-4, warmup_steps=10, max_steps=110)
    assert max(lr_at(s, cfg) for s in range(200)) == pytest.approx(1e-5)
    assert lr_at(110, cfg) == pytest.approx(1e-5)


def test_wsd_holds_the_peak_then_decays_in_a_straight_line_over_the_last_fraction(
        tiny_train_config):
    cfg = tiny_train_config.with_overrides(lr=1.0, min_lr=0.1, warmup_steps=10, max_steps=110,
                                           schedule="wsd", decay_fraction=0.25)
    assert lr_at(9, cfg) == pytest.approx(1.0)
    assert lr_at(85, cfg) == pytest.approx(1.0)  # 75% of the way after warmup: still the peak
    assert lr_at(95, cfg) == pytest.approx(0.1 + 0.6 * 0.9)
    assert lr_at(110, cfg) == pytest.approx(0.1)
    assert decay_shape(0.5, cfg) == 1.0 and decay_shape(0.875, cfg) == pytest.approx(0.5)


@pytest.mark.slow
def test_same_seed_same_losses(tiny_train_config, corpus):
    losses = lambda evs: [e["loss"] for e in of(evs, "step")]  # noqa: E731
    _, a = run(tiny_train_config, corpus)
    _, b = run(tiny_train_config, corpus)
    _, c = run(tiny_train_config.with_overrides(seed=2), corpus)
    assert losses(a) == losses(b) != losses(c)


@pytest.mark.slow
def test_resume_continues_exactly_where_the_run_stopped(tiny_train_config, corpus, tmp_path):
    cfg = tiny_train_config.with_overrides(max_steps=40, eval_interval=20, dropout=0.1)
    _, whole = run(cfg, corpus)

    interrupted = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", run_dir=tmp_path)
    for ev in interrupted.run():
        if ev["type"] == "step" and ev["step"] == 20:
            interrupted.request_stop("interrupted")
    ckpt = load_checkpoint(tmp_path / "model.pt")
    assert ckpt.step == 20
    resumed = Trainer.resume(ckpt, prepare_data(corpus, ckpt.train_config, ckpt.tokenizer),
                             device="cpu")
    later = list(resumed.run())

    whole_steps = {e["step"]: e["loss"] for e in of(whole, "step") if e["step"] > 20}
    later_steps = {e["step"]: e["loss"] for e in of(later, "step")}
    assert later_steps.keys() == whole_steps.keys()
    for step in whole_steps:
        assert later_steps[step] == pytest.approx(whole_steps[step], abs=1e-6)
    assert of(later, "eval")[-1]["val_loss"] == pytest.approx(of(whole, "eval")[-1]["val_loss"], abs=1e-6)


def test_stop_request_saves_and_ends(tiny_train_config, corpus, tmp_path):
    cfg = tiny_train_config.with_overrides(max_steps=1000, eval_interval=500)
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", run_dir=tmp_path)
    events = []
    for ev in trainer.run():
        events.append(ev)
        if ev["type"] == "step" and ev["step"] == 10:
            trainer.request_stop()
    assert events[-1]["type"] == "done" and events[-1]["reason"] == "stopped"
    assert events[-2]["type"] == "checkpoint"
    assert load_checkpoint(tmp_path).step == 10
    # the last evaluation was the untrained model's, at step 0: not said as step 10's losses
    assert of(events, "eval")[-1]["step"] == 0
    assert events[-1]["val_loss"] is None and events[-1]["train_loss"] is None
    assert "val_loss" not in load_checkpoint(tmp_path).meta


def test_gradient_accumulation_matches_one_big_batch(tiny_train_config, corpus, monkeypatch):
    """Two micro-batches of 4 give the same update as one batch of the same 8 sequences."""
    import minigpt.data.batches as batches_module

    fixed = torch.randint(50, (8, 33), generator=torch.Generator().manual_seed(0))

    def batches(size):
        served = []

        def fake_get_batch(data, batch_size, block_size, generator, device):
            start = sum(served) % 8
            served.append(batch_size)
            chunk = fixed[start:start + batch_size]
            return chunk[:, :-1], chunk[:, 1:]
        return fake_get_batch

    weights = []
    for batch_size, accum in ((8, 1), (4, 2)):
        cfg = tiny_train_config.with_overrides(batch_size=batch_size, grad_accum=accum, max_steps=1)
        # fp32: in bf16 the two splits round differently
        trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", dtype="fp32")
        monkeypatch.setattr(batches_module, "get_batch", batches(batch_size))
        trainer._train_step()
        weights.append(trainer.model.transformer.h[0].attn.c_attn.weight.detach().clone())
    torch.testing.assert_close(weights[0], weights[1], atol=1e-6, rtol=1e-5)


@pytest.mark.slow
def test_compiled_training_matches_eager_and_saves_gpt2_names(tiny_train_config, corpus, tmp_path):
    cfg = tiny_train_config.with_overrides(max_steps=3, log_interval=1, eval_interval=3,
                                           sample_tokens=0)
    runs = {}
    for compiled in (False, True):
        trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", dtype="fp32",
                          run_dir=tmp_path / str(compiled), compile=compiled)
        events = list(trainer.run())
        runs[compiled] = [e["loss"] for e in events if e["type"] == "step"]
        assert events[0]["compiled"] is compiled
        assert not [e for e in events if e["type"] == "note"]  # it compiled: no fallback
    assert runs[True] == pytest.approx(runs[False], abs=1e-4)
    saved = load_checkpoint(tmp_path / "True").state_dict
    assert not [k for k in saved if "_orig_mod" in k]
    assert "transformer.h.0.attn.c_attn.weight" in saved


def test_a_failed_compile_falls_back_to_eager_with_a_note(tiny_train_config, corpus,
                                                        broken_compile):
    cfg = tiny_train_config.with_overrides(max_steps=3, log_interval=1, sample_tokens=0)
    events = list(Trainer(cfg, prepare_data(corpus, cfg), device="cpu", compile=True).run())
    notes = [e for e in events if e["type"] == "note"]
    assert [n["message"] for n in notes] == [
        "torch.compile failed, training without it: RuntimeError: InductorError: no working C++ "
        "compiler"]
    eager = [e["loss"] for e in Trainer(cfg, prepare_data(corpus, cfg), device="cpu").run()
             if e["type"] == "step"]
    assert [e["loss"] for e in events if e["type"] == "step"] == eager
    assert events[-1]["reason"] == "finished"


def test_a_real_error_is_not_taken_for_a_compile_failure(tiny_model_config):
    from minigpt.backends.compiling import CompiledOrEager
    from minigpt.model.gpt import GPT

    model = CompiledOrEager(GPT(tiny_model_config))
    too_long = torch.zeros(1, tiny_model_config.block_size + 1, dtype=torch.long)
    with pytest.raises(ValueError, match="exceeds the context"):
        model(too_long)  # raised by the model itself, compiled or not


@pytest.mark.slow
def test_a_diverged_run_stops_and_keeps_the_last_good_checkpoint(tiny_train_config, corpus,
                                                                   tmp_path):
    good_cfg = tiny_train_config.with_overrides(max_steps=20, eval_interval=20)
    good, _ = run(good_cfg, corpus, run_dir=tmp_path)
    before = (tmp_path / "model.pt").read_bytes()
    # the same run folder, a run that blows up at step 8, and a stop request as the TUI sends it
    cfg = tiny_train_config.with_overrides(max_steps=200, eval_interval=100)
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", run_dir=tmp_path,
                      checkpoint_path=tmp_path / "model.pt")
    events = []
    with pytest.raises(TrainingDiverged, match=r"diverged by step 10: .*NaN or infinite.*kept"):
        for ev in trainer.run():
            events.append(ev)
            if ev["type"] == "step" and ev["step"] == 5:
                with torch.no_grad():  # what a learning rate far too high does to a weight
                    trainer.model.transformer.h[0].mlp.c_fc.weight[0, 0] = float("inf")
            if ev["type"] == "step" and ev["step"] >= 10:
                trainer.request_stop()
    assert not of(events, "checkpoint")
    assert (tmp_path / "model.pt").read_bytes() == before
    assert load_checkpoint(tmp_path).step == 20
    error = read_events(tmp_path)[-1]
    assert error["type"] == "error" and error["message"].startswith("training diverged by step")


@pytest.mark.slow
def test_a_stop_at_an_evaluation_step_saves_once(tiny_train_config, corpus, tmp_path):
    """Stopped as step 20 ends: its evaluation is cut short, its checkpoint written, and the
    stop does not write the same checkpoint a second time."""
    trainer = Trainer(tiny_train_config, prepare_data(corpus, tiny_train_config), device="cpu",
                      run_dir=tmp_path)
    events = []
    for ev in trainer.run():
        events.append(ev)
        if ev["type"] == "step" and ev["step"] == 20:
            trainer.request_stop()
    assert [ev["step"] for ev in of(events, "checkpoint")] == [20]
    assert events[-1]["type"] == "done" and events[-1]["reason"] == "stopped"
    assert load_checkpoint(tmp_path).step == 20


def test_a_stop_cuts_the_evaluation_short(tiny_train_config, corpus, tmp_path):
    cfg = tiny_train_config.with_overrides(eval_iters=1000)
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", run_dir=tmp_path)
    batches = 0
    forward = trainer.model.forward

    def counting(*args, **kwargs):
        nonlocal batches
        batches += 1
        if batches == 3:
            trainer.request_stop()
        return forward(*args, **kwargs)

    trainer.model.forward = counting
    events = list(trainer.run())
    assert batches == 3  # not the 2000 the evaluation would have taken
    assert not of(events, "eval")
    assert events[-1]["type"] == "done" and events[-1]["reason"] == "stopped"
    assert load_checkpoint(tmp_path).step == 0
    assert events[-1]["val_loss"] is None and "val_loss" not in load_checkpoint(tmp_path).meta


def test_two_ctrl_c_during_the_first_evaluation_still_save(tiny_train_config, corpus, tmp_path):
    from minigpt.cli.console import run_training

    cfg = tiny_train_config.with_overrides(eval_iters=1000)
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu", run_dir=tmp_path)
    forward, calls = trainer.model.forward, []

    def pressed_twice(*args, **kwargs):
        calls.append(1)
        if len(calls) in (2, 4):  # Ctrl-C, then Ctrl-C again, while the evaluation runs
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        return forward(*args, **kwargs)

    trainer.model.forward = pressed_twice
    assert run_training(trainer, quiet=True) == "interrupted"
    done = read_events(tmp_path)[-1]
    assert done["type"] == "done" and done["checkpoint"] == str(tmp_path / "model.pt")
    assert load_checkpoint(tmp_path).step == 0


def test_a_step_that_would_take_minutes_is_announced(tiny_train_config, corpus, monkeypatch):
    import minigpt.train.trainer as train_module

    monkeypatch.setattr(train_module, "measured_matmul_flops", lambda device, precision: 1e9)
    cfg = tiny_train_config.with_overrides(block_size=4096, batch_size=64, n_layer=4, n_embd=128)
    trainer = Trainer(cfg, prepare_data(corpus, cfg), device="cpu")
    warning = trainer.slow_step_warning()
    flops = trainer.flops_per_token * cfg.tokens_per_step
    assert warning.startswith(f"one step of 262,144 tokens at context 4,096 needs about {flops:.2g}")
    assert f"about {flops / 1e9 / 3600:.1f} h per step at this device's 1 GFLOP/s" in warning
    small = Trainer(tiny_train_config, prepare_data(corpus, tiny_train_config), device="cpu")
    assert small.slow_step_warning() is None


@pytest.mark.parametrize("damage, fragment", [
    ("optimizer of another model", "optimizer state does not fit"),
    ("moment of the wrong shape", "optimizer state does not fit"),
    ("random state of the wrong size", "random generator state"),
])
def test_a_training_state_that_does_not_fit_is_a_clear_error(tiny_train_config, corpus, tmp_path,
                                                             damage, fragment):
    from minigpt.errors import CheckpointError
    from minigpt.model.gpt import GPT

    cfg = tiny_train_config.with_overrides(max_steps=2, eval_interval=2)
    run(cfg, corpus, run_dir=tmp_path)
    payload = torch.load(tmp_path / "model.pt", weights_only=True)
    state = payload["train_state"]
    if damage == "optimizer of another model":
        other = GPT(cfg.model.__class__(vocab_size=5, block_size=4, n_layer=1, n_head=1, n_embd=4))
        state["optimizer"] = other.configure_optimizer(0.1, 1e-3, (0.9, 0.99), "cpu").state_dict()
    elif damage == "moment of the wrong shape":
        state["optimizer"]["state"][0]["exp_avg"] = torch.zeros(3)
    else:
        state["torch_rng"] = torch.zeros(7, dtype=torch.uint8)
    torch.save(payload, tmp_path / "edited.pt")
    ckpt = load_checkpoint(tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=f"^{tmp_path / 'edited.pt'}: .*{fragment}"):
        Trainer.resume(ckpt, prepare_data(corpus, ckpt.train_config, ckpt.tokenizer),
                       device="cpu")


def test_the_throughput_window_keeps_its_losses_over_a_pause():
    """A pause restarts the tokens/s clock only: the next logged loss still averages every step
    since the last one logged."""
    window = Throughput()
    window.add(torch.tensor(2.0), tokens=100)
    window.restart_clock()
    window.add(torch.tensor(4.0), tokens=100)
    assert (window.mean_loss(), window.steps, window.tokens) == (3.0, 2, 100)
    window.restart(window.start + 1.0)
    assert (window.steps, window.tokens, window.tokens_per_s(window.start + 2.0)) == (0, 0, 0.0)


# --- a timed run (--time): the schedule and the end follow the clock ---------------------------


class FakeClock:
    """The trainer's clock, moved by the test: no sleeping, no timing."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def timed_run(cfg, corpus, clock, step_s=1.0, eval_s=0.0, on_event=None, trainer=None, **kw):
    """Run with each step taking step_s of the fake clock and each evaluation eval_s."""
    trainer = trainer or Trainer(cfg, prepare_data(corpus, cfg), device="cpu", **kw)
    trainer.clock = clock
    real_step = trainer._train_step

    def step():
        result = real_step()
        clock.now += step_s
        return result

    trainer._train_step = step
    events = []
    for ev in trainer.run():
        events.append(ev)
        if ev["type"] == "eval":  # inside the evaluation: its event comes before its end
            clock.now += eval_s
        if on_event:
            on_event(trainer, ev)
    return trainer, events


@pytest.fixture
def timed_config(tiny_train_config):
    """100 s of a 1000-step schedule whose warmup is 100 steps: the first 10 s warm up."""
    return tiny_train_config.with_overrides(
        lr=1.0, min_lr=0.1, warmup_steps=100, max_steps=1000, time_budget=100.0, log_interval=1,
        eval_interval=10_000, sample_tokens=0)


@pytest.mark.slow
def test_tokens_per_second_leave_out_evaluations_and_saves(timed_config, corpus, tmp_path):
    """Each step takes a second, each evaluation and each save ten: every logged step's speed is
    a step's tokens a second, the first after an evaluation or a requested save too."""
    def slow_saves(trainer, ev):
        if ev["type"] == "checkpoint":
            clock.now += 10.0
        elif ev["type"] == "step" and ev["step"] == 7:
            trainer.request_save()

    clock = FakeClock()
    cfg = timed_config.with_overrides(eval_interval=5)
    trainer, events = timed_run(cfg, corpus, clock, eval_s=10.0, on_event=slow_saves,
                                run_dir=tmp_path)
    assert [e["step"] for e in of(events, "checkpoint")][:2] == [5, 7]
    assert {e["tokens_per_s"] for e in of(events, "step")} == {trainer.tokens_per_step}


@pytest.mark.slow
def test_a_timed_runs_learning_rate_follows_the_clock(timed_config, corpus):
    """Each step takes a second: step k starts at k-1 s of 100, where the 1000-step schedule is
    at step 10(k-1). The run ends when the time is spent, not at max_steps, at min_lr."""
    trainer, events = timed_run(timed_config, corpus, FakeClock())
    lr = {e["step"]: e["lr"] for e in of(events, "step")}
    assert lr[1] == pytest.approx(1.0 / 100)  # at 0 % of the time: the first warmup step
    assert lr[6] == pytest.approx(51 / 100)  # at 5 %: half way through the warmup
    assert lr[11] == pytest.approx(1.0)  # at 10 %: the peak
    assert lr[56] == pytest.approx(0.55)  # at 55 %: half way down the cosine
    assert all(lr[k] >= lr[k + 1] for k in range(11, 100))
    assert trainer.step == 100 and lr_at(trainer.schedule_step(), timed_config) == 0.1
    done = events[-1]
    assert done["type"] == "done" and done["reason"] == "finished" and done["step"] == 100


@pytest.mark.slow
def test_a_timed_run_counts_evaluations_keeps_time_for_the_last_and_not_pauses(
        timed_config, corpus, tmp_path):
    """Evaluations take 10 s: the first is in the budget, the final one is kept 10 s for, so the
    steps end at 90 s and the run at 100 s; a 1000 s pause spends none of it."""
    def pause_once(trainer, ev):
        if ev["type"] == "step" and ev["step"] == 20:
            trainer.request_pause(True)
        elif ev["type"] == "paused":
            clock.now += 1000.0
            trainer.request_pause(False)

    clock = FakeClock()
    trainer, events = timed_run(timed_config, corpus, clock, eval_s=10.0, on_event=pause_once,
                                run_dir=tmp_path)
    assert trainer.step == 80  # 10 s of the first evaluation, then 80 steps of a second
    assert [e["step"] for e in of(events, "eval")] == [0, 80]  # the final evaluation
    done = events[-1]
    assert done["type"] == "done" and done["reason"] == "finished"
    assert done["time_spent"] == pytest.approx(100.0) and done["final_eval_seconds"] == 10.0
    assert done["elapsed"] == pytest.approx(1100.0)  # the pause is in the wall clock only
    assert of(events, "checkpoint")[-1]["step"] == 80
    saved = load_checkpoint(tmp_path)
    assert saved.step == 80 and saved.train_state["time_spent"] == pytest.approx(100.0)
    assert saved.meta["val_loss"] == done["val_loss"]


@pytest.mark.slow
def test_a_resumed_timed_run_goes_on_with_its_remaining_time(timed_config, corpus, tmp_path):
    """Stopped at step 30, 32 s into 60, a resumed run trains the other 28 s on the same
    schedule: the same learning rates and losses as the run that was never stopped."""
    cfg = timed_config.with_overrides(time_budget=60.0, dropout=0.1)
    _, whole = timed_run(cfg, corpus, FakeClock(), eval_s=2.0)

    def stop_at_30(trainer, ev):
        if ev["type"] == "step" and ev["step"] == 30:
            trainer.request_stop("interrupted")

    timed_run(cfg, corpus, FakeClock(), eval_s=2.0, on_event=stop_at_30, run_dir=tmp_path)
    ckpt = load_checkpoint(tmp_path)
    assert ckpt.step == 30 and ckpt.train_state["time_spent"] == pytest.approx(32.0)
    resumed = Trainer.resume(ckpt, prepare_data(corpus, ckpt.train_config, ckpt.tokenizer),
                             device="cpu")
    _, later = timed_run(None, corpus, FakeClock(), eval_s=2.0, trainer=resumed)
    assert later[0]["time_budget"] == 60.0 and later[0]["time_spent"] == pytest.approx(32.0)
    whole_steps = {e["step"]: (e["lr"], e["loss"]) for e in of(whole, "step") if e["step"] > 30}
    later_steps = {e["step"]: (e["lr"], e["loss"]) for e in of(later, "step")}
    assert later_steps.keys() == whole_steps.keys() and max(later_steps) == 56  # 2 + 56 + 2 s
    for step, (lr, loss) in whole_steps.items():
        assert later_steps[step][0] == pytest.approx(lr)
        assert later_steps[step][1] == pytest.approx(loss, abs=1e-6)
    assert later[-1]["time_spent"] == pytest.approx(60.0)
