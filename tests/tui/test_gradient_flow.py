"""Gradient flow on screen: the Train pane's bars by layer, the Ablate pane's variants side by
side and each variant's evidence in words, from events written by hand."""

import json

from textual.widgets import DataTable

from minigpt.runs.files import EVENTS_NAME
from minigpt_tui.app import MinigptApp

from .screen import shown, shown_lines
from .waiting import focus, wait_for

SIZE = (80, 24)
NORMS = {"embedding": 1.2, "1": 0.6, "2": 0.004, "head": 0.09}
RATIOS = {"embedding": 2e-3, "1": 1e-3, "2": 5e-4, "head": 1e-2}


def write_events(run_dir, *events) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / EVENTS_NAME, "a", encoding="utf-8") as f:
        for ev in events:
            f.write(json.dumps({"time": 1.0, **ev}) + "\n")


def start(**fields):
    return {"type": "start", "step": 0, "max_steps": 100, "device": "cpu", "params": 1000,
            "data": "x", "pid": None, **fields}


async def test_the_train_pane_shows_each_layers_gradient_norm(tmp_path):
    run_dir = tmp_path / "run"
    write_events(run_dir, start(),
                 {"type": "step", "step": 10, "max_steps": 100, "loss": 3.0, "grad_norm": 1.0,
                  "grad_norms": NORMS, "update_ratios": RATIOS},
                 {"type": "done", "step": 10, "reason": "stopped"})
    app = MinigptApp(attach=run_dir, runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        grad = app.query_one("#train-grad")
        await wait_for(pilot, lambda: "stopped" in shown(app, "#train-title")
                       and grad.region.width > 0, what="the bars laid out")
        assert grad.display and grad.region.right <= SIZE[0]
        lines = shown_lines(grad)
        assert lines[0].startswith("gradient norm")
        rows = {line.split()[0]: line for line in lines[1:5]}
        assert list(rows) == ["emb", "L1", "L2", "head"]
        assert "1.2e+00" in rows["emb"] and "4.0e-03" in rows["L2"]
        # a log scale: the layer with the largest norm has the longest bar
        assert rows["emb"].count("█") > rows["L1"].count("█") > rows["L2"].count("█")


async def test_a_run_without_layer_norms_shows_no_chart(tmp_path):
    run_dir = tmp_path / "old"
    write_events(run_dir, start(),
                 {"type": "step", "step": 10, "max_steps": 100, "loss": 3.0, "grad_norm": 1.0},
                 {"type": "done", "step": 10, "reason": "stopped"})
    app = MinigptApp(attach=run_dir, runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: "stopped" in shown(app, "#train-title"),
                       what="the run drawn")
        assert not app.query_one("#train-grad").display


async def test_the_ablate_pane_shows_variants_side_by_side_and_the_evidence(tmp_path):
    run_dir = tmp_path / "ablate-x"
    starved = {"embedding": 0.03, "1": 0.015, "2": 0.004, "head": 0.09}
    result = {"type": "result", "train_loss": 3.0, "val_loss": 3.1, "tokens_per_s": 100.0,
              "seconds": 2.0, "sample": "abc", "distinct_4grams": 0.5}
    write_events(
        run_dir,
        {"type": "ablation_start", "variants": ["baseline", "residual"], "max_steps": 10,
         "pid": None},
        {**result, "variant": "baseline", "val_loss_delta": 0.0, "grad_norms": NORMS,
         "evidence": "GPT-2 as designed: val loss 3.10"},
        {**result, "variant": "residual", "val_loss_delta": 0.63, "grad_norms": starved,
         "evidence": "no residual: layer 1 gradient norm 1/40 of the baseline's [b]"},
        {"type": "ablation_done", "reason": "finished", "results": []})
    app = MinigptApp(attach=run_dir, runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="the results")
        await focus(pilot, table, what="the table's focus")
        await pilot.press("down")  # the residual variant
        await wait_for(pilot, lambda: "residual" in shown(app, "#ablate-sample"),
                       what="the residual variant's detail")
        evidence = " ".join(" ".join(shown_lines(app.query_one("#ablate-evidence"))).split())
        assert "▸residual no residual: layer 1 gradient norm 1/40 of the baseline's [b]" in evidence
        grad = app.query_one("#ablate-grad")
        assert grad.display
        lines = [line.split() for line in shown_lines(grad)]
        rows = {line[0]: line[1:] for line in lines if line and line[0] in ("emb", "L1", "L2")}
        assert rows == {"emb": ["1.2", "0.025"], "L1": ["0.6", "0.025"], "L2": ["0.004", "1"]}

