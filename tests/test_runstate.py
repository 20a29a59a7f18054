"""Events: one schema their writers keep to, and one fold that says what a stream of them means."""

import json

import pytest
from conftest import cli

from minigpt.runs.events import SCHEMA, always_written, event, field_names
from minigpt.runs.files import EVENTS_NAME
from minigpt.runs.log import read_events
from minigpt.runs.state import HANDLERS, RunState, replay, summarize_run


@pytest.fixture(scope="module")
def ablation_events(tmp_path_factory, english_text) -> list[dict]:
    """Every event of a real `minigpt ablate` (run in this process): its data's preparation, its
    variants' training."""
    root = tmp_path_factory.mktemp("ablation")
    data = root / "corpus.txt"
    data.write_text(english_text[:20_000], encoding="utf-8")
    result = cli("ablate", "attention", "--data", data, "--steps", 4, "--preset", "tiny",
                 "--out", root / "run", "-q")
    assert result.returncode == 0, result.stderr
    return read_events(root / "run")


def test_the_writers_keep_to_the_schema(ablation_events):
    """What a real run writes is what SCHEMA says: every field its record names, no other."""
    seen = set()
    for ev in ablation_events:
        record = SCHEMA[ev["type"]]
        assert always_written(record) <= ev.keys(), ev["type"]
        assert ev.keys() <= set(field_names(record)), ev["type"]
        seen.add(ev["type"])
    assert {"prepared", "ablation_start", "variant", "start", "step", "eval", "sample", "done",
            "result", "ablation_done"} <= seen


def test_an_event_outside_the_schema_is_refused():
    with pytest.raises(ValueError, match="no event type"):
        event("stpe", step=1)
    with pytest.raises(ValueError, match="no field"):
        event("step", step=1, val_los=2.0)


def test_the_fold_knows_every_type_of_event():
    assert set(HANDLERS) == set(SCHEMA)


def test_an_ablation_is_known_as_one_from_its_first_event(ablation_events, tmp_path):
    """Its data's preparation comes before "ablation_start" and a variant's "start" after it:
    neither makes the run picker list it as a training run."""
    assert ablation_events[0]["type"] in ("prepare", "prepared")
    for n in range(1, len(ablation_events) + 1):
        assert replay(ablation_events[:n]).kind == "ablate", ablation_events[n - 1]["type"]
    first_start = next(i for i, e in enumerate(ablation_events) if e["type"] == "ablation_start")
    variant_start = next(i for i, e in enumerate(ablation_events) if e["type"] == "start")
    for name, n in (("preparing", first_start), ("training", variant_start + 1)):
        run_dir = tmp_path / name
        run_dir.mkdir()
        (run_dir / EVENTS_NAME).write_text(
            "".join(json.dumps(ev) + "\n" for ev in ablation_events[:n]), encoding="utf-8")
        assert summarize_run(run_dir).kind == "ablate", name


def test_a_finished_ablation_holds_its_variants_curves_and_results(ablation_events):
    state = replay(ablation_events)
    assert (state.kind, state.status) == ("ablate", "finished")
    assert list(state.results) == state.variants == ["baseline", "attention"]
    assert all(steps for steps, _ in state.variant_curves.values())
    assert state.step_xs == [] and state.eval_xs == []  # a variant's curve is its own


def test_whether_the_process_lives_is_said_by_the_caller():
    running = replay([event("start", step=0, max_steps=10, pid=123)])
    assert running.status == "running"  # the fold never looks at processes
    running.process_ended("killed")
    assert (running.status, running.error) == ("ended", "killed")
    never_began = RunState()
    never_began.process_ended("minigpt: error: no such file or folder: x")
    assert never_began.status == "failed" and never_began.error.startswith("minigpt: error")
    finished = replay([event("start", step=0, max_steps=10), event("done", step=10,
                                                                  reason="finished")])
    finished.process_ended()
    assert finished.status == "finished"


def test_steps_per_second_leave_out_evaluations_and_saves():
    """Ten steps a second, an evaluation and a save of 10 s between two logged steps: the speed
    and the ETA stay what the steps take, not what the pause for the evaluation made them."""
    state = replay([event("start", step=0, max_steps=100),
                    event("step", step=10, max_steps=100, loss=3.0, time=1.0),
                    event("step", step=20, max_steps=100, loss=2.9, time=2.0),
                    event("eval", step=20, train_loss=2.9, val_loss=3.0),
                    event("checkpoint", step=20, path="model.pt"),
                    event("step", step=30, max_steps=100, loss=2.8, time=13.0)])
    assert (state.steps_per_s, state.eta_s) == (10.0, 7.0)
    state.apply(event("step", step=40, max_steps=100, loss=2.7, time=14.0))
    assert state.steps_per_s == 10.0


def test_a_timed_runs_length_and_eta_are_its_clock():
    """--time: its progress is the time spent of its budget, its ETA what is left of it (as of
    its latest step), whatever max_steps says; a run by steps goes by its steps."""
    timed = replay([event("start", step=0, max_steps=2000, time_budget=110.0, time_spent=0.0),
                    event("step", step=300, max_steps=2000, loss=2.5, time_spent=40.0)])
    assert (timed.length, timed.progress, timed.eta_s) == (110.0, 40.0, 70.0)
    resumed = replay([event("start", step=300, max_steps=2000, time_budget=110.0,
                            time_spent=40.0)])
    assert resumed.progress == 40.0  # the earlier runs' time, before its first step
    by_steps = replay([event("start", step=0, max_steps=2000, time_budget=None, time_spent=0.0),
                       event("step", step=300, max_steps=2000, loss=2.5, time_spent=40.0)])
    assert (by_steps.length, by_steps.progress) == (2000, 300)


def test_a_preference_run_keeps_its_latest_measures_and_a_plain_run_has_none():
    """DPO's accuracy, margin and log-ratio: the latest step's, and the latest evaluation's of
    the validation pairs; a field of the wrong kind is missing, never an error."""
    state = replay([event("start", step=0, max_steps=100),
                    event("step", step=10, max_steps=100, loss=0.6, accuracy=0.75, margin=0.3,
                          kl=0.05),
                    event("eval", step=10, train_loss=0.6, val_loss=0.65, accuracy=0.7,
                          margin=0.2, kl=0.04),
                    event("step", step=20, max_steps=100, loss=0.5, accuracy=0.83, margin=0.41,
                          kl=0.12)])
    assert (state.preferences.accuracy, state.preferences.margin, state.preferences.kl,
            state.preferences.step) == (0.83, 0.41, 0.12, 20)
    assert (state.val_preferences.accuracy, state.val_preferences.step) == (0.7, 10)
    state.apply({"type": "step", "step": 30, "loss": 0.4, "accuracy": "83%", "margin": [1],
                 "kl": True})  # nothing readable: the latest readable ones stay
    assert state.step == 30 and state.preferences.step == 20
    state.apply({"type": "step", "step": 40, "loss": 0.4, "accuracy": 0.9, "margin": "x"})
    assert (state.preferences.accuracy, state.preferences.margin) == (0.9, None)
    plain = replay([event("start", step=0, max_steps=100),
                    event("step", step=10, max_steps=100, loss=3.0),
                    event("eval", step=10, train_loss=3.0, val_loss=3.1)])
    assert plain.preferences is None and plain.val_preferences is None


def test_the_spread_of_a_variants_seeds_is_their_mean_lowest_and_highest():
    """Each step the seeds that logged it: all of them where all did, the first alone beyond
    the step the second has reached."""
    from minigpt.runs.state import seed_spread

    def step(variant, seed, n, loss):
        return event("step", step=n, max_steps=30, loss=loss, variant=variant, seed=seed)

    state = replay([event("ablation_start", variants=["baseline"], max_steps=30, seeds=2),
                    step("baseline", 0, 10, 3.0), step("baseline", 0, 20, 2.0),
                    step("baseline", 0, 30, 1.5), step("baseline", 1, 10, 3.2),
                    step("baseline", 1, 20, 2.4)])
    spread = seed_spread(state.seed_curves["baseline"])
    assert spread.steps == [10, 20, 30] and spread.seeds == [2, 2, 1]
    assert spread.mean == pytest.approx([3.1, 2.2, 1.5])
    assert (spread.low, spread.high) == ([3.0, 2.0, 1.5], [3.2, 2.4, 1.5])
    assert seed_spread({}).steps == []
