"""events.jsonl lines that are valid JSON of the wrong shape, NaN losses of diverged runs, and
random JSON: the readers skip what they cannot use, and the panes and the run picker survive."""

import json
import math
import random

import pytest
import torch
from textual.widgets import DataTable, Sparkline

from minigpt.checkpoint import save_checkpoint
from minigpt.data.tokenizer import CharTokenizer
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT
from minigpt.runs.files import EVENTS_NAME
from minigpt.runs.log import EventTail, read_events
from minigpt.runs.state import list_runs, summarize_run
from minigpt_tui.app import MinigptApp
from minigpt_tui.panes.ablate import AblatePane
from minigpt_tui.panes.chat import ChatPane
from minigpt_tui.panes.train import TrainPane
from minigpt_tui.screens.run_picker import RunPicker, describe
from minigpt_tui.widgets.loss_chart import LossChart

from .waiting import wait_for

SIZE = (80, 24)
TYPES = ["start", "step", "eval", "sample", "checkpoint", "done", "paused", "resumed", "error",
         "note", "ablation_start", "variant", "result", "ablation_done", "prepare", "prepared"]
FIELDS = ["step", "max_steps", "loss", "lr", "grad_norm", "tokens_per_s", "flops_per_s", "mfu",
          "elapsed", "time", "device", "precision", "params", "data", "pid", "text", "path",
          "reason", "train_loss", "val_loss", "checkpoint", "message", "variant", "variants",
          "index", "count", "sample", "val_loss_delta", "seconds", "results", "peak_flops",
          "stage", "bytes_done", "bytes_total", "tokens", "cached", "tokenizer"]
# what the issue names, and what a diverged run writes
NAMED = ['{"type": "step"}', "[1, 2, 3]", '"step"', "null", '{"type": ["step"]}',
         '{"type": "step", "step": "10", "loss": "3.2"}',
         '{"type": "step", "step": 10, "max_steps": 100, "loss": NaN, "lr": 0.001, '
         '"grad_norm": NaN, "tokens_per_s": 1000.0, "time": 5.0}',
         '{"type": "step", "step": 11, "max_steps": 100, "loss": Infinity, "time": 6.0}',
         '{"type": "eval", "step": 10, "train_loss": NaN, "val_loss": -Infinity}',
         '{"type": "done", "step": 11, "reason": 7, "train_loss": NaN}',
         '{"type": "step", "variant": [], "step": 3, "loss": 1.0}', "not json at all", "{"]


def caught_up(pane) -> bool:
    """Whether the pane's follower has read its run's events file to the end."""
    tail = pane.follower.tail
    return tail._offset == tail.path.stat().st_size


def random_value(rng: random.Random, depth: int = 0):
    kinds = ["none", "bool", "int", "float", "special", "str"] + ["list", "dict"] * (depth < 3)
    kind = rng.choice(kinds)
    if kind == "none":
        return None
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "int":
        return rng.choice([0, 1, -1, 7, 10**30, -(10**30), rng.randint(-1000, 100_000)])
    if kind == "float":
        return rng.uniform(-1e6, 1e6) * rng.choice([1, 1e-300, 1e300])
    if kind == "special":
        return rng.choice([math.nan, math.inf, -math.inf, -0.0])
    if kind == "str":
        return "".join(rng.choice("ab [/]\\=@é\n\t\x1b\x00") for _ in range(rng.randint(0, 12)))
    if kind == "list":
        return [random_value(rng, depth + 1) for _ in range(rng.randint(0, 4))]
    return {rng.choice(FIELDS + ["type", "x"]): random_value(rng, depth + 1)
            for _ in range(rng.randint(0, 4))}


def plausible(rng: random.Random):
    """A value of about the right kind for most fields, so more events get past the type checks."""
    return rng.choice([rng.randint(0, 200), rng.uniform(0, 10), math.nan, math.inf, "baseline",
                       "residual", ["baseline", "residual"], None, random_value(rng)])


def random_line(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.7:  # an event of a real type, with random field values
        ev = {"type": rng.choice(TYPES)}
        for name in rng.sample(FIELDS, rng.randint(0, len(FIELDS))):
            ev[name] = plausible(rng) if rng.random() < 0.7 else random_value(rng)
        return json.dumps(ev)
    if roll < 0.95:
        return json.dumps(random_value(rng))
    return rng.choice(['{"type": "st', "\x00\xff", "[" * 5000 + "]" * 5000, "", "  "])


def write(run_dir, lines) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / EVENTS_NAME, "a", encoding="utf-8") as f:
        f.writelines(line + "\n" for line in lines)


def start(type_="start", **fields) -> str:
    return json.dumps({"type": type_, "time": 1.0, "step": 0, "max_steps": 100, "device": "cpu",
                       "params": 1000, "data": "test", "pid": None, "variants": ["baseline"],
                       **fields})


def test_tail_yields_only_events_with_a_type(tmp_path):
    write(tmp_path, NAMED + [start()])
    tail = EventTail(tmp_path)
    events = tail.read_new()
    assert all(isinstance(ev, dict) and isinstance(ev["type"], str) for ev in events)
    assert {"type": "step"} in events and events[-1]["type"] == "start"
    assert len(events) == len(read_events(tmp_path)) == 8
    assert tail.skipped == 6  # [1, 2, 3], "step", null, a list as type, and two broken lines


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_summaries_never_raise(tmp_path, seed):
    rng = random.Random(seed)
    for i in range(40):
        lines = [random_line(rng) for _ in range(rng.randint(0, 30))]
        if rng.random() < 0.7:  # a start of random fields, so more runs get summarized
            ev = {"type": rng.choice(["start", "ablation_start"]),
                  **{f: plausible(rng) for f in rng.sample(FIELDS, 8)}}
            lines.insert(rng.randint(0, len(lines)), json.dumps(ev))
        write(tmp_path / f"run{i}", lines)
    summaries = list_runs(tmp_path)
    assert summaries  # some had a start
    for summary in summaries:
        assert summary == summarize_run(summary.path)
        assert isinstance(summary.step, int) and isinstance(summary.max_steps, int)
        assert summary.pid is None or (isinstance(summary.pid, int) and summary.pid > 0)
        assert describe(summary)


@pytest.mark.parametrize("seed", [0, pytest.param(1, marks=pytest.mark.slow),
                                  pytest.param(2, marks=pytest.mark.slow)])
async def test_panes_survive_random_events(tmp_path, seed):
    rng = random.Random(seed)
    train_dir, ablate_dir = tmp_path / "train-run", tmp_path / "ablate-run"
    write(train_dir, [start()] + NAMED)
    write(ablate_dir, [start("ablation_start", variants=["baseline", "residual"])] + NAMED)
    app = MinigptApp(attach=train_dir, runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        train, ablate = app.query_one(TrainPane), app.query_one(AblatePane)
        ablate.attach(ablate_dir)
        for round_ in range(6):  # followed live: lines arrive while both panes poll and redraw
            await pilot.press("1" if round_ % 2 else "3")
            write(train_dir, [random_line(rng) for _ in range(40)])
            write(ablate_dir, [random_line(rng) for _ in range(40)])
            table = app.query_one(DataTable)
            if round_ % 2 == 0 and table.row_count:
                table.focus()
                await pilot.press("down", "down")  # each highlighted row shows its sample
            await wait_for(pilot, lambda: caught_up(train) and caught_up(ablate),
                           what="both panes to read the new lines")
            assert app.is_running
        train.redraw()
        await pilot.pause()
        assert train.state.run_dir == train_dir and ablate.state.run_dir == ablate_dir
        assert "train-run" in str(app.query_one("#train-title").render())
        assert all(math.isfinite(v) for v in app.query_one(Sparkline).data)
        for pane in (train, ablate):
            for xs, ys in pane.query_one(LossChart).series.values():
                assert len(xs) == len(ys) and all(map(math.isfinite, [*xs, *ys]))
        app.push_screen(RunPicker(list_runs(tmp_path)))  # every row of the picker, drawn
        await wait_for(pilot, lambda: isinstance(app.screen, RunPicker), what="the picker")
        assert app.is_running


@pytest.fixture
def diverged_run(tmp_path):
    """A run that diverged: NaN losses in its events and NaN weights in its model.pt."""
    run_dir = tmp_path / "runs" / "diverged"
    chars = " abcdefghijklmnopqrstuvwxyz"
    model = GPT(GPTConfig(vocab_size=len(chars), block_size=16, n_layer=1, n_head=2, n_embd=16))
    path = save_checkpoint(run_dir / "model.pt", model, CharTokenizer(chars))
    payload = torch.load(path, weights_only=True)
    for tensor in payload["model"].values():
        if tensor.is_floating_point():
            tensor.fill_(math.nan)
    torch.save(payload, path)  # as the trainer saved them before it refused to
    write(run_dir, [
        start(max_steps=30),
        json.dumps({"type": "step", "time": 2.0, "step": 10, "max_steps": 30, "loss": 5.0,
                    "lr": 1e-3, "grad_norm": 1.0, "tokens_per_s": 100.0}),
        json.dumps({"type": "step", "time": 3.0, "step": 20, "max_steps": 30, "loss": math.nan,
                    "lr": 1e-3, "grad_norm": math.nan, "tokens_per_s": 100.0}),
        json.dumps({"type": "eval", "time": 3.0, "step": 20, "train_loss": math.nan,
                    "val_loss": math.nan}),
        json.dumps({"type": "sample", "time": 3.0, "step": 20, "text": ""}),
        json.dumps({"type": "checkpoint", "time": 4.0, "step": 30, "path": str(path)}),
        json.dumps({"type": "done", "time": 4.0, "step": 30, "reason": "finished",
                    "train_loss": math.nan, "val_loss": math.nan, "checkpoint": str(path)}),
    ])
    return run_dir


async def test_a_diverged_run_can_be_attached_and_its_checkpoint_is_refused(diverged_run):
    app = MinigptApp(attach=diverged_run, runs_root=diverged_run.parent)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "finished" in str(app.query_one("#train-title").render()),
                       what="the run drawn")
        pane = app.query_one(TrainPane)
        assert pane.state.status == "finished" and pane.state.step == 30
        assert "loss nan" in str(app.query_one("#train-stats").render())  # said, not drawn
        assert app.query_one(Sparkline).data == [5.0]
        assert app.query_one("#train-chart", LossChart).series["step loss"] == ([10], [5.0])
        await pilot.press("2")
        await wait_for(pilot, lambda: app.focused is app.query_one("#chat-prompt"),
                       what="focus in the Chat pane")
        await pilot.press("ctrl+o")  # the Chat pane offers the run's model.pt
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "OpenCheckpoint",
                       what="the open dialog")
        assert app.screen.query_one("Input").value == str(diverged_run / "model.pt")
        await pilot.press("enter")
        chat = app.query_one(ChatPane)
        shown = lambda: str(app.query_one("#chat-model").render())  # noqa: E731
        await wait_for(pilot, lambda: not shown().startswith("loading"), what="the load")
        assert chat.model is None
        assert "NaN" in shown() and "\n" not in shown()
        assert app.is_running
