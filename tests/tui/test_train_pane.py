import json
import os
import signal
import subprocess
import sys

import pytest
from textual.widgets import ProgressBar

from minigpt.runs.events import event
from minigpt.runs.log import EventLog, process_alive, read_events
from minigpt.runs.state import list_runs, summarize_run
from minigpt_tui.app import MinigptApp
from minigpt_tui.panes.train import TrainPane
from minigpt_tui.screens.quit import QuitScreen
from minigpt_tui.screens.run_picker import RunPicker
from minigpt_tui.widgets.loss_chart import LossChart

from .runs import NO_PROCESS, live_ablation, live_run
from .screen import shown, shown_lines
from .waiting import wait_for, wait_until

SIZE = (80, 24)


@pytest.mark.slow
async def test_training_updates_the_train_pane(tmp_path, corpus_file, reap_runs):
    app = MinigptApp(data=str(corpus_file), preset="tiny", steps=60, runs_root=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(TrainPane)
        reap_runs.append(pane.state.run_dir)
        await wait_for(pilot, lambda: "finished" in shown(app, "#train-title"),
                       what="the finished run drawn")
        stats = shown(app, "#train-stats")
        assert "step 60/60" in stats and "tok/s" in stats and "cpu" in stats
        assert "FLOP/s" in stats  # a CPU's peak is unknown: the pane shows FLOP/s, not MFU
        assert pane.state.eval_xs == [0, 60] and len(pane.state.step_xs) > 3
        chart = app.query_one("#train-chart", LossChart)
        assert chart.series["val"][1] == pane.state.val_losses
        assert pane.state.sample
        assert "(read-only)" in str(app.query_one("#train-title").render())


async def test_attaching_to_a_finished_run_shows_its_curves(finished_run):
    app = MinigptApp(attach=finished_run, runs_root=finished_run.parent)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "finished" in shown(app, "#train-title"),
                       what="the run drawn")
        pane = app.query_one(TrainPane)
        assert pane.state.status == "finished" and pane.state.step == 4
        assert pane.state.eval_xs == [0, 2, 4]
        assert app.query_one("#train-chart", LossChart).series["train"][0] == [0, 2, 4]
        await pilot.press("p")  # a finished run is read-only: a notice, nothing else
        await pilot.pause()
        assert pane.state.status == "finished"


def logged_run(run_dir, *events):
    """A run directory whose events.jsonl holds these events, as a run's EventLog writes them."""
    log = EventLog(run_dir)
    for ev in events:
        log.write(ev)
    log.close()
    return run_dir


async def test_a_gpu_run_shows_its_mfu_precision_and_notes(tmp_path):
    """A run from a GPU box (events written as its trainer writes them) shows MFU, not FLOP/s."""
    run_dir = logged_run(
        tmp_path / "runs" / "h100",
        event("start", step=0, max_steps=100, device="cuda: NVIDIA H100 80GB HBM3",
              precision="bf16", peak_flops=989e12, params=124_000_000, data="owt", pid=None),
        event("step", step=10, max_steps=100, loss=6.5, lr=6e-4, grad_norm=1.0,
              tokens_per_s=540_000.0, flops_per_s=4.6e14, mfu=0.4651, elapsed=9.0),
        event("note", step=10, message="torch.compile failed, training without it: [x]"),
        event("done", step=10, reason="stopped"))
    app = MinigptApp(attach=run_dir, runs_root=run_dir.parent)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "stopped" in shown(app, "#train-title"),
                       what="the run drawn")
        stats = shown(app, "#train-stats")
        assert "MFU 47%" in stats and "FLOP/s" not in stats
        assert "NVIDIA H100 80GB HBM3 bf16" in stats
        assert "DPO" not in stats  # not a preference-tuning run
        assert "torch.compile failed, training without it: [x]" in str(
            app.query_one("#train-title").render())


async def test_a_dpo_run_shows_its_reward_margin_accuracy_and_kl(tmp_path):
    """A preference-tuning run's events (as `minigpt train --dpo` writes them): the
    latest step's measures on a line of their own, and the validation pairs' accuracy at the
    evaluation's step."""
    run_dir = logged_run(
        tmp_path / "runs" / "dpo",
        event("start", step=0, max_steps=40, device="cpu", precision="fp32", params=1000,
              data="pairs.jsonl", pid=None),
        event("step", step=10, max_steps=40, loss=0.6, accuracy=0.75, margin=0.3, kl=0.05),
        event("eval", step=10, train_loss=0.6, val_loss=0.65, accuracy=0.7, margin=0.2,
              kl=0.04),
        event("step", step=20, max_steps=40, loss=0.5, accuracy=0.83, margin=0.41, kl=0.12),
        event("done", step=20, reason="stopped"))
    app = MinigptApp(attach=run_dir, runs_root=run_dir.parent)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "stopped" in shown(app, "#train-title"),
                       what="the run drawn")
        lines = shown_lines(app.query_one("#train-stats"))
        assert len(lines) == 4 and "step 20/40" in lines[0]
        assert lines[3].strip() == ("DPO reward margin 0.410 · accuracy 83%, val 70% (step 10)"
                                    " · KL 0.120")


async def test_run_picker_lists_runs_and_attaches(finished_run):
    app = MinigptApp(runs_root=finished_run.parent)  # runs exist and no --data: the picker opens
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.screen, RunPicker), what="the run picker")
        await pilot.press("down", "enter")  # the first row is "new run"; the second is our run
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state is not None
                       and not isinstance(app.screen, RunPicker), what="the run attached")
        assert pane.state.run_dir == finished_run


@pytest.mark.slow
async def test_quit_while_training_asks_and_can_stop_the_run(tmp_path, corpus_file, reap_runs):
    app = MinigptApp(data=str(corpus_file), preset="tiny", steps=100_000,
                     runs_root=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(TrainPane)
        reap_runs.append(pane.state.run_dir)
        await wait_for(pilot, lambda: pane.state.step > 0, what="training steps")
        await pilot.press("q")
        await wait_for(pilot, lambda: isinstance(app.screen, QuitScreen),
                       what="the quit question")
        await pilot.press("s")
    run_dir = pane.state.run_dir
    wait_until(lambda: read_events(run_dir)[-1]["type"] == "done", what="the stopped run's done")
    assert read_events(run_dir)[-1]["reason"] == "stopped"


async def test_quit_while_runs_are_live_asks_and_stops_them_all(tmp_path, monkeypatch):
    """The run panes say their runs are live: q names both and stays on Esc; s stops both."""
    from textual.widgets import Label

    from minigpt.runs import control
    from minigpt_tui import runs
    from minigpt_tui.panes.ablate import AblatePane

    sent = []  # the runs' process is this one: record the signals instead of sending them
    monkeypatch.setattr(runs, "send", lambda pid, sig: sent.append((pid, sig)) or True)
    app = MinigptApp(attach=live_run(tmp_path), runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        train, ablate = app.query_one(TrainPane), app.query_one(AblatePane)
        ablate.attach(live_ablation(tmp_path))
        await wait_for(pilot, lambda: all(pane in app.followed and app.followed[pane].live
                                          for pane in (train, ablate)),
                       what="the app to hear both runs are live")
        asked = lambda: isinstance(app.screen, QuitScreen)  # noqa: E731
        await pilot.press("q")
        await wait_for(pilot, asked, what="the quit question")
        assert str(app.screen.query_one(Label).render()).startswith(
            "Training and An ablation still running")
        await pilot.press("escape")  # stay: the runs go on
        await wait_for(pilot, lambda: not asked(), what="the question to close")
        assert app.is_running and sent == []
        await pilot.press("q")
        await wait_for(pilot, asked, what="the quit question")
        await pilot.press("s")
    assert sent == [(os.getpid(), control.STOP)] * 2
    assert train.follower.stop_sent and ablate.follower.stop_sent


@pytest.mark.slow
def test_training_outlives_the_tui_process_and_can_be_attached(tmp_path, corpus_file, reap_runs):
    """The TUI is killed with SIGHUP (a closed SSH connection); its training child goes on."""
    runs_root = tmp_path / "runs"
    script = ("import signal\n"  # as a login shell has it, even where this suite runs under nohup
              "signal.signal(signal.SIGHUP, signal.SIG_DFL)\n"
              "from minigpt_tui.app import MinigptApp\n"
              f"MinigptApp(data={str(corpus_file)!r}, preset='tiny', steps=100_000, "
              f"runs_root={str(runs_root)!r}).run(headless=True)\n")
    tui = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        wait_until(lambda: list_runs(runs_root) and list_runs(runs_root)[0].step > 0,
                   what="the TUI's run to train")
        run_dir = list_runs(runs_root)[0].path
        reap_runs.append(run_dir)
        pid = next(e for e in read_events(run_dir) if e["type"] == "start")["pid"]
        assert pid != tui.pid
        tui.send_signal(signal.SIGHUP)
        tui.wait(timeout=30)
    finally:
        if tui.poll() is None:
            tui.kill()
    before = len(read_events(run_dir))
    assert process_alive(pid), "training died with its TUI"
    wait_until(lambda: len(read_events(run_dir)) > before, what="training to go on writing events")

    import asyncio

    async def attach():
        app = MinigptApp(attach=run_dir, runs_root=runs_root)
        async with app.run_test(size=SIZE) as pilot:
            pane = app.query_one(TrainPane)
            await wait_for(pilot, lambda: pane.state is not None and pane.state.step > 0,
                           what="the run's history")
            assert pane.state.status == "running"
            first = pane.state.step
            assert first > 0 and pane.state.eval_xs[0] == 0  # the history from the start
            await wait_for(pilot, lambda: pane.state.step > first, what="live steps")

    asyncio.run(attach())
    os.kill(pid, signal.SIGTERM)
    wait_until(lambda: not process_alive(pid), what="the run to stop")


async def test_a_run_that_cannot_start_says_why_and_stays_said(tmp_path, corpus_file):
    blocker = tmp_path / "runs"
    blocker.write_text("a file where the runs folder would go")
    app = MinigptApp(data=str(corpus_file), preset="tiny", steps=5, runs_root=blocker)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: shown(app, "#train-title").startswith("cannot start"),
                       what="the refusal")
        title = shown(app, "#train-title")
        assert title.startswith("cannot start a run:") and "runs" in title
        assert app.query_one(TrainPane).state is None


def preparing_run(root, pid):
    """A run directory as `minigpt train` leaves it while it tokenizes a big corpus."""
    run_dir = root / "big"
    log = EventLog(run_dir)
    log.write(event("prepare", stage="encode", bytes_done=0, bytes_total=4_000_000_000, tokens=0,
                    tokens_per_s=0.0, elapsed=1.0, pid=pid))
    log.write(event("prepare", stage="encode", bytes_done=1_000_000_000,
                    bytes_total=4_000_000_000, tokens=250_000_000, tokens_per_s=2_500_000.0,
                    elapsed=101.0, pid=pid))
    log.close()
    return run_dir


def test_a_run_preparing_its_data_is_listed_as_preparing(tmp_path):
    run_dir = preparing_run(tmp_path, os.getpid())
    summary = summarize_run(run_dir)
    assert summary.status == "preparing" and summary.pid == os.getpid()
    assert [r.path for r in list_runs(tmp_path)] == [run_dir]
    killed = preparing_run(tmp_path / "killed", NO_PROCESS)  # gone without a word: killed
    assert summarize_run(killed).status == "ended"
    log = EventLog(run_dir)
    log.write(event("error", message="big: 3: not JSON"))
    log.close()
    assert summarize_run(run_dir).status == "failed"


async def test_attaching_while_the_data_is_prepared_shows_it_then_training(tmp_path):
    run_dir = preparing_run(tmp_path, os.getpid())  # alive: this process stands in for the run
    app = MinigptApp(attach=run_dir, runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: "preparing data" in shown(app, "#train-title"),
                       what="the preparation drawn")
        assert pane.state.status == "preparing" and pane.is_live
        title = str(app.query_one("#train-title").render())
        assert "preparing data: tokenizing" in title and "read-only" not in title
        bar = app.query_one(ProgressBar)
        assert (bar.progress, bar.total) == (1_000_000_000, 4_000_000_000)
        stats = str(app.query_one("#train-stats").render())
        assert "1.0 GB of 4.0 GB (25%)" in stats and "tokens 250,000,000" in stats
        assert "2,500,000 tok/s" in stats
        assert "eta 5:00" in stats  # a quarter of the bytes in 100 s: 300 s to go
        await pilot.press("p")  # the child handles pause only once it trains: a notice, no signal
        await pilot.pause()
        assert pane.state.status == "preparing"

        log = EventLog(run_dir)
        log.write(event("prepared", path="/cache/x", cached=False, tokens=1_000_000_000,
                        dtype="uint16", tokenizer="bpe", vocab_size=4096, seconds=400.0,
                        pid=os.getpid()))
        # the follower reads the log twice a second: waited for, not a fixed pause, which a
        # loaded machine outlasts
        await wait_for(pilot, lambda: "data ready" in str(app.query_one("#train-title").render()),
                       what="the prepared event")
        title = str(app.query_one("#train-title").render())
        assert "data ready: 1,000,000,000 tokens, prepared in 400.0 s" in title
        assert app.query_one(ProgressBar).progress == 4_000_000_000

        log.write(event("start", step=0, max_steps=500, device="cpu", precision="fp32",
                        params=1000, data="big.jsonl", pid=os.getpid()))
        log.write(event("step", step=10, max_steps=500, loss=4.2, lr=1e-3, grad_norm=1.0,
                        tokens_per_s=1000.0, elapsed=2.0))
        log.close()
        await wait_for(pilot, lambda: pane.state.status == "running" and "step 10/500" in str(
            app.query_one("#train-stats").render()), what="the first step")
        title = str(app.query_one("#train-title").render())
        assert "running" in title and "data ready" not in title and "preparing" not in title
        stats = str(app.query_one("#train-stats").render())
        assert "step 10/500" in stats and "big.jsonl" in stats
        assert (app.query_one(ProgressBar).progress, app.query_one(ProgressBar).total) == (10, 500)
    assert summarize_run(run_dir).status == "running"


async def test_data_found_in_the_cache_says_so(tmp_path):
    run_dir = tmp_path / "cached"
    log = EventLog(run_dir)
    log.write(event("prepared", path="/cache/x", cached=True, tokens=12_345, dtype="uint16",
                    tokenizer="char", vocab_size=65, seconds=0.01, pid=os.getpid()))
    log.close()
    app = MinigptApp(attach=run_dir, runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "data ready" in shown(app, "#train-title"),
                       what="the prepared data drawn")
        assert app.query_one(TrainPane).state.status == "preparing"
        assert "data ready: 12,345 tokens, cached" in str(app.query_one("#train-title").render())


async def test_the_app_starts_its_run_as_the_command_line_asked(tmp_path, launches):
    """minigpt tui --data x.jsonl --text-field body --preset tiny --steps 2: the run it starts is
    `minigpt train` with those (the slow tests below train it)."""
    app = MinigptApp(data="x.jsonl", preset="tiny", steps=2, runs_root=tmp_path / "runs",
                     text_field="body")
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state is not None, what="the run followed")
    [(args, run_dir)] = launches
    assert pane.state.run_dir == run_dir and run_dir.parent == tmp_path / "runs"
    assert args == ["train", "--out", str(run_dir), "--quiet", "--data", "x.jsonl",
                    "--text-field", "body", "--preset", "tiny", "--steps", "2"]


@pytest.mark.parametrize("steps, time, length", [("2", "", ["--steps", "2"]),
                                                 ("", "2s", ["--time", "2s"])])
async def test_the_new_run_form_starts_the_run_it_shows(tmp_path, launches, steps, time, length):
    """n, then the form's data, text field, preset and steps or time: the run asked for has
    them (the slow tests below train it)."""
    from textual.widgets import Input, Select

    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.focused, TrainPane), what="the pane's focus")
        await pilot.press("n")
        await wait_for(pilot, lambda: len(app.screen.query("#time")) == 1, what="the form")
        app.screen.query_one("#data", Input).value = "x.jsonl"
        app.screen.query_one("#text-field", Input).value = "body"
        app.screen.query_one("#preset", Select).value = "tiny"
        app.screen.query_one("#steps", Input).value = steps
        app.screen.query_one("#time", Input).value = time
        await pilot.click("#start")
        await wait_for(pilot, lambda: launches, what="the run to start")
    [(args, run_dir)] = launches
    assert args == ["train", "--out", str(run_dir), "--quiet", "--data", "x.jsonl",
                    "--text-field", "body", "--preset", "tiny", *length]


@pytest.mark.slow
async def test_a_json_lines_corpus_with_its_own_text_field_trains(tmp_path, english_text):
    """minigpt tui --data x.jsonl --text-field body: the child run reads the body field."""
    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps({"id": i, "body": english_text[i:i + 3000]}) + "\n"
                            for i in range(0, 30_000, 3000)), encoding="utf-8")
    app = MinigptApp(data=str(data), preset="tiny", steps=2, runs_root=tmp_path / "runs",
                     text_field="body")
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state.status not in ("starting", "preparing", "running"),
                       what="the run to end")
        assert pane.state.status == "finished", pane.state.error
        prepared = next(e for e in read_events(pane.state.run_dir) if e["type"] == "prepared")
        assert prepared["tokens"] > 20_000  # the bodies, not a missing "text" field


@pytest.mark.slow
async def test_the_new_run_form_passes_the_text_field(tmp_path, english_text):
    """n, then data x.jsonl and text field body in the form: the run reads the body field."""
    from textual.widgets import Input, Select

    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps({"id": i, "body": english_text[i:i + 3000]}) + "\n"
                            for i in range(0, 30_000, 3000)), encoding="utf-8")
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.focused, TrainPane), what="the pane's focus")
        await pilot.press("n")
        await wait_for(pilot, lambda: len(app.screen.query("#text-field")) == 1, what="the form")
        app.screen.query_one("#data", Input).value = str(data)
        app.screen.query_one("#text-field", Input).value = "body"
        app.screen.query_one("#preset", Select).value = "tiny"
        app.screen.query_one("#steps", Input).value = "2"
        await pilot.click("#start")
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state is not None and pane.state.status not in (
            "starting", "preparing", "running"), what="the run to end")
        assert pane.state.status == "finished", pane.state.error
        prepared = next(e for e in read_events(pane.state.run_dir) if e["type"] == "prepared")
        assert prepared["tokens"] > 20_000  # the bodies, not a missing "text" field


@pytest.mark.slow
async def test_the_new_run_forms_time_makes_a_timed_run(tmp_path, corpus_file):
    """n, then a time of 2s in the form: the run's plan has that time budget, and it ends by it
    with its final evaluation; the pane shows its clock."""
    from textual.widgets import Input, Select

    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.focused, TrainPane), what="the pane's focus")
        await pilot.press("n")
        await wait_for(pilot, lambda: len(app.screen.query("#time")) == 1, what="the form")
        app.screen.query_one("#data", Input).value = str(corpus_file)
        app.screen.query_one("#preset", Select).value = "tiny"
        app.screen.query_one("#time", Input).value = "2s"
        await pilot.click("#start")
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state is not None and pane.state.status not in (
            "starting", "preparing", "running"), what="the run to end")
        assert pane.state.status == "finished", pane.state.error
        events = read_events(pane.state.run_dir)
        start = next(e for e in events if e["type"] == "start")
        assert start["time_budget"] == 2.0 and start["config"]["time_budget"] == 2.0
        done = events[-1]
        assert done["type"] == "done" and done["final_eval_seconds"] is not None
        assert [e for e in events if e["type"] == "eval"][-1]["step"] == done["step"]
        await wait_for(pilot, lambda: "finished" in shown(app, "#train-title"),
                       what="the finished run drawn")
        assert "time " in shown(app, "#train-stats")
        assert app.query_one(ProgressBar).percentage == 1.0  # finished: full, whatever time is left


async def test_the_new_run_form_refuses_a_bad_time_or_steps_and_a_time(tmp_path):
    """What `minigpt train` would refuse stays in the form, with the engine's words."""
    from textual.widgets import Input

    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: isinstance(app.focused, TrainPane), what="the pane's focus")
        await pilot.press("n")
        await wait_for(pilot, lambda: len(app.screen.query("#time")) == 1, what="the form")
        form = app.screen
        for steps, time, said in (("", "soon", "is not a time"), ("", "0", "more than 0"),
                                  ("5", "1m", "not both")):
            form.query_one("#steps", Input).value = steps
            form.query_one("#time", Input).value = time
            form.query_one("#time", Input).focus()
            said_before = len(app._notifications)
            await wait_for(pilot, lambda: app.focused is form.query_one("#time", Input),
                           what="focus in the time box")
            await pilot.press("enter")
            await wait_for(pilot, lambda before=said_before: len(app._notifications) > before,
                           what="the refusal")
            assert app.screen is form and app.query_one(TrainPane).state is None
            assert said in str(list(app._notifications)[-1].message)


async def test_the_stats_line_separates_its_fields(tmp_path):
    run_dir = tmp_path / "runs" / "seen"
    log = EventLog(run_dir)
    log.write(event("start", step=0, max_steps=100, device="cuda: NVIDIA H100 80GB HBM3",
                    precision="bf16", peak_flops=989e12, params=124_000_000, data="owt"))
    log.write(event("step", step=10, max_steps=100, loss=2.377, lr=6e-4, grad_norm=1.0,
                    tokens_per_s=540_000.0, flops_per_s=4.6e14, mfu=0.4651, elapsed=9.0))
    log.write(event("eval", step=10, train_loss=2.38, val_loss=2.385))
    log.write(event("done", step=10, reason="stopped"))
    log.close()
    app = MinigptApp(attach=run_dir, runs_root=run_dir.parent)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "stopped" in shown(app, "#train-title"),
                       what="the run drawn")
        assert shown_lines(app.query_one("#train-stats")) == [
            "step 10/100 · loss 2.377 · val 2.385 · eta -",
            "540,000 tok/s · - steps/s · MFU 47% · lr 6.00e-04 · grad 1.00",
            "cuda: NVIDIA H100 80GB HBM3 bf16 · 124.00M params · owt"]


async def test_a_loss_from_an_earlier_step_says_its_step(tmp_path):
    """Stopped at step 30, during the evaluation there, the run's last validation loss is the
    untrained model's at step 0: said with its step, in the stats line and in the runs' list,
    not as the loss of the model at step 30."""
    from minigpt.runs.state import summarize_run
    from minigpt_tui.screens.run_picker import describe

    run_dir = tmp_path / "runs" / "stopped"
    log = EventLog(run_dir)
    log.write(event("start", step=0, max_steps=100, device="cpu", precision="fp32", params=10))
    log.write(event("eval", step=0, train_loss=4.2, val_loss=4.25))
    log.write(event("step", step=30, max_steps=100, loss=2.377, lr=6e-4, grad_norm=1.0,
                    tokens_per_s=5_000.0, elapsed=9.0))
    log.write(event("done", step=30, reason="stopped"))
    log.close()
    assert "val 4.250 (step 0)" in describe(summarize_run(run_dir)).plain
    app = MinigptApp(attach=run_dir, runs_root=run_dir.parent)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "stopped" in shown(app, "#train-title"),
                       what="the run drawn")
        assert shown_lines(app.query_one("#train-stats"))[0] == \
            "step 30/100 · loss 2.377 · val 4.250 (step 0) · eta -"


async def test_the_loss_chart_marks_whole_steps(tmp_path):
    """125 steps: plotext's own ticks would split them evenly, at 31.2 and 62.5."""
    run_dir = tmp_path / "runs" / "steps"
    log = EventLog(run_dir)
    log.write(event("start", step=0, max_steps=125, device="cpu", params=1000, data="x"))
    for step in range(0, 126, 5):
        log.write(event("step", step=step, max_steps=125, loss=5 - step / 50))
    log.write(event("done", step=125, reason="finished"))
    log.close()
    app = MinigptApp(attach=run_dir, runs_root=run_dir.parent)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "finished" in shown(app, "#train-title"),
                       what="the run drawn")
        lines = shown_lines(app.query_one("#train-chart", LossChart))
        axis = next(i for i, line in enumerate(lines) if "└" in line)
        ticks = lines[axis + 1].split()
        assert len(ticks) >= 2 and all(tick.isdigit() for tick in ticks), ticks
        assert lines[axis + 2].strip() == "step"
