"""Planning a run (minigpt/train/plan.py): the decisions `minigpt train` asks the engine for, without
a subprocess; the same refusals, in the same words, as tests/test_cli.py sees them."""

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from conftest import prepare_data

from minigpt.checkpoint import load_checkpoint
from minigpt.errors import CheckpointError, ConfigError, DataError, RunDirectoryError
from minigpt.train import distributed
from minigpt.train.plan import plan_training, same_data_source
from minigpt.train.trainer import Trainer

CPU = torch.device("cpu")


@pytest.fixture
def saved_run(tiny_train_config, corpus, tmp_path):
    """A finished 2-step run saved in tmp_path/run, trained on data with a cache key."""
    cfg = tiny_train_config.with_overrides(max_steps=2, eval_interval=2, sample_tokens=0)
    data = replace(prepare_data(corpus, cfg), source=str(tmp_path / "corpus.txt"), key="key-1")
    list(Trainer(cfg, data, device="cpu", run_dir=tmp_path / "run").run())
    return tmp_path / "run" / "model.pt", data


def test_a_new_run_is_written_where_out_says(tmp_path):
    plan = plan_training(CPU, preset_name="tiny", overrides={"max_steps": 7, "lr": None},
                         out=tmp_path / "run")
    assert (plan.run_dir, plan.checkpoint_path) == (tmp_path / "run", tmp_path / "run" / "model.pt")
    assert plan.cfg.max_steps == 7 and plan.resume is None and plan.init is None
    assert plan.tokenizer is None  # built from the data
    file_plan = plan_training(CPU, preset_name="tiny", out=tmp_path / "elsewhere" / "x.pt")
    assert file_plan.run_dir == tmp_path / "elsewhere" / "x.events.jsonl"  # beside its model
    named = plan_training(CPU, preset_name="tiny", out=tmp_path / "elsewhere" / "model.pt")
    assert named.run_dir == tmp_path / "elsewhere"  # a run directory's own checkpoint


def test_a_new_run_without_out_gets_a_fresh_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = plan_training(CPU, preset_name="tiny", name="my run")
    second = plan_training(CPU, preset_name="tiny", name="my run")
    assert first.run_dir.resolve() == tmp_path / "checkpoints" / "my-run"
    assert second.run_dir.resolve() == tmp_path / "checkpoints" / "my-run-1"
    assert first.checkpoint_path == first.run_dir / "model.pt"


def test_resume_plans_the_runs_own_settings_data_and_file(saved_run):
    ckpt, data = saved_run
    plan = plan_training(CPU, overrides={"max_steps": 4, "eval_interval": 2, "lr": None},
                         resume=ckpt)
    assert plan.resume is not None and plan.checkpoint_path == ckpt and plan.run_dir == ckpt.parent
    assert plan.data == data.source  # the run's own data when --data is not given
    assert plan.cfg == load_checkpoint(ckpt).train_config.with_overrides(max_steps=4)
    assert plan.tokenizer.to_dict() == data.tokenizer.to_dict()
    trainer = plan.trainer(data, CPU)
    assert trainer.step == 2 and trainer.cfg.max_steps == 4


@pytest.mark.parametrize("kwargs, error, message", [
    ({"preset_name": "tiny"}, ConfigError, "--eval-interval can change (got preset)"),
    ({"overrides": {"max_steps": 4, "n_layer": 3}}, ConfigError, "(got n_layer)"),
    ({"data": "builtin"}, DataError, "was trained on"),
    ({"overrides": {"max_steps": 2}}, ConfigError, "is already at step 2 of 2"),
])
def test_resume_refusals(saved_run, kwargs, error, message):
    ckpt, _ = saved_run
    with pytest.raises(error) as raised:
        plan_training(CPU, resume=ckpt, **{"overrides": {"max_steps": 4}, **kwargs})
    assert message in str(raised.value)


def test_resume_needs_a_training_state(saved_run, tmp_path):
    ckpt, _ = saved_run
    payload = torch.load(ckpt, weights_only=True)
    payload["train_state"] = None
    torch.save(payload, tmp_path / "weights-only.pt")
    with pytest.raises(CheckpointError, match="has no training state to resume from"):
        plan_training(CPU, resume=tmp_path / "weights-only.pt")


def test_resume_and_init_together_are_refused(saved_run):
    ckpt, _ = saved_run
    with pytest.raises(ConfigError, match="give one of them"):
        plan_training(CPU, resume=ckpt, init=ckpt)


def test_init_plans_a_fine_tune_of_the_model(saved_run, tmp_path):
    ckpt, data = saved_run
    plan = plan_training(CPU, overrides={"block_size": 16, "max_steps": 3}, out=tmp_path / "ft",
                         init=ckpt)
    assert plan.resume is None and plan.init.model_config.block_size == 16
    assert plan.cfg.model == plan.init.model_config and plan.cfg.max_steps == 3
    assert plan.tokenizer.to_dict() == data.tokenizer.to_dict()  # the model's own
    trainer = plan.trainer(data, CPU)
    assert trainer.step == 0 and trainer.origin == f"fine-tuned from {ckpt}"


def test_a_new_run_never_claims_a_folder_holding_a_model(saved_run):
    ckpt, _ = saved_run
    plan = plan_training(CPU, preset_name="tiny", out=ckpt.parent)
    with pytest.raises(RunDirectoryError, match=f"{ckpt} already exists: --resume {ckpt} continues"):
        with plan.claim():
            pass
    with plan_training(CPU, overrides={"max_steps": 4}, resume=ckpt).claim():  # its own file
        pass


def test_under_ddp_only_rank_0_writes(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "is_main", lambda: False)
    monkeypatch.chdir(tmp_path)
    for out in (None, tmp_path / "run"):
        plan = plan_training(CPU, preset_name="tiny", out=out)
        assert plan.run_dir is None and plan.checkpoint_path is None
    assert list(tmp_path.iterdir()) == []  # no run folder made


def test_resume_refuses_prepared_data_that_is_not_the_runs(saved_run):
    """The data named as the run's (the same file) but prepared differently since: refused by
    Trainer.resume itself, before any step."""
    ckpt, data = saved_run
    with pytest.raises(DataError, match="is not that data"):
        Trainer.resume(load_checkpoint(ckpt), replace(data, key="key-2"), device="cpu")


def test_same_data_source_however_spelled(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert same_data_source("corpus.txt", str(tmp_path / "corpus.txt"))
    assert same_data_source(None, "builtin") and same_data_source("builtin", None)
    assert not same_data_source("other.txt", str(tmp_path / "corpus.txt"))


def test_a_run_goes_by_steps_or_by_time_not_both(tmp_path):
    plan = plan_training(CPU, preset_name="tiny", overrides={"time_budget": 60.0},
                         out=tmp_path / "run")
    assert plan.cfg.time_budget == 60.0 and plan.cfg.max_steps == 300  # the preset's schedule
    with pytest.raises(ConfigError, match="not both"):
        plan_training(CPU, preset_name="tiny", overrides={"max_steps": 5, "time_budget": 60.0},
                      out=tmp_path / "run")


@pytest.fixture
def timed_run(tiny_train_config, corpus, tmp_path):
    """An hour-long timed run stopped after its first step, saved in tmp_path/timed."""
    cfg = tiny_train_config.with_overrides(time_budget=3600.0, sample_tokens=0)
    data = replace(prepare_data(corpus, cfg), source=str(tmp_path / "corpus.txt"), key="key-1")
    trainer = Trainer(cfg, data, device="cpu", run_dir=tmp_path / "timed")
    for ev in trainer.run():
        if ev["type"] == "step":
            trainer.request_stop()
    return tmp_path / "timed" / "model.pt"


def test_resume_of_a_timed_run_goes_on_by_its_time(timed_run, saved_run):
    """It trains for what is left of its time, or of a longer --time; --steps would change what
    its length is, as --time would a run by steps: refused."""
    spent = load_checkpoint(timed_run).train_state["time_spent"]
    assert 0 < spent < 3600
    assert plan_training(CPU, resume=timed_run).cfg.time_budget == 3600.0
    assert plan_training(CPU, resume=timed_run,
                         overrides={"time_budget": 7200.0}).cfg.time_budget == 7200.0
    with pytest.raises(ConfigError, match="trains for a time: --resume lengthens it with --time"):
        plan_training(CPU, resume=timed_run, overrides={"max_steps": 4})
    with pytest.raises(ConfigError, match="already trained for .* pass a longer --time"):
        plan_training(CPU, resume=timed_run, overrides={"time_budget": spent / 2})
    step_run, _ = saved_run
    with pytest.raises(ConfigError, match="number of steps: --resume lengthens it with --steps"):
        plan_training(CPU, resume=step_run, overrides={"time_budget": 60.0})


def test_a_folder_is_claimed_again_only_if_no_run_left_anything_there(saved_run, tmp_path):
    """A run that failed before it began (its data refused), or was killed before its first
    checkpoint, leaves nothing to keep: the same command retried uses the folder again. A run
    that saved a model there shares its folder only with its own resumption, however its path
    is spelled; a resumption into another file beside it would be a second run in one log."""
    ckpt, _ = saved_run

    def folder_with(name: str, *events: dict) -> Path:
        folder = tmp_path / name
        folder.mkdir()
        (folder / "events.jsonl").write_text("".join(json.dumps(ev) + "\n" for ev in events))
        return folder

    failed = folder_with("failed", {"type": "prepare", "time": 1.0, "stage": "encode"},
                         {"type": "error", "time": 2.0, "message": "empty.txt has no text"})
    killed = folder_with("killed", {"type": "start", "time": 1.0, "step": 0},
                         {"type": "step", "time": 2.0, "step": 1, "loss": 4.2})
    (tmp_path / "links").mkdir()
    (tmp_path / "links" / "run.pt").symlink_to(ckpt)
    allowed = [plan_training(CPU, preset_name="tiny", out=failed),
               plan_training(CPU, preset_name="tiny", out=killed),
               plan_training(CPU, overrides={"max_steps": 4}, resume=ckpt,
                             out=tmp_path / "elsewhere" / "x.pt"),
               plan_training(CPU, overrides={"max_steps": 4}, resume=tmp_path / "links" / "run.pt",
                             out=ckpt.parent)]
    for plan in allowed:
        with plan.claim():
            pass
    # another model named beside it is a run of its own, with its own events file
    beside = [plan_training(CPU, preset_name="tiny", out=ckpt.parent / "second.pt"),
              plan_training(CPU, preset_name="tiny", init=ckpt, out=ckpt.parent / "ft.pt"),
              plan_training(CPU, overrides={"max_steps": 4}, resume=ckpt,
                            out=ckpt.parent / "fork.pt")]
    for plan in beside:
        assert plan.run_dir == plan.checkpoint_path.with_suffix(".events.jsonl")
        with plan.claim():
            pass
    # a folder, or a named run, whose log records a saved model is refused, model or not
    saved = folder_with("saved", {"type": "checkpoint", "time": 1.0, "step": 5, "path": "x"})
    (tmp_path / "named.events.jsonl").write_text(json.dumps(
        {"type": "done", "time": 1.0, "step": 5, "reason": "finished", "checkpoint": "named.pt"}))
    refused = [plan_training(CPU, preset_name="tiny", out=saved),
               plan_training(CPU, preset_name="tiny", out=tmp_path / "named.pt")]
    for plan in refused:
        with pytest.raises(RunDirectoryError, match="holds another run"), plan.claim():
            pass
