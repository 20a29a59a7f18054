import json
import subprocess
import sys

from textual.widgets import DataTable, SelectionList

from minigpt.events import read_events
from minigpt_tui.ablate_pane import AblatePane
from minigpt_tui.app import MinigptApp

from .waiting import wait_for

SIZE = (80, 24)


async def start_ablation(app, pilot, variants, corpus_file, steps: str) -> AblatePane:
    """Fill the Ablate pane's form as a user would and press ctrl+r."""
    await pilot.press("3")
    await wait_for(pilot, lambda: app.focused is app.query_one("#ablate-variants"),
                   what="the pane's focus")  # a key pressed before it lands goes nowhere
    checks = app.query_one(SelectionList)
    checks.deselect_all()
    for name in variants:
        checks.select(name)
    app.query_one("#ablate-data").value = str(corpus_file)
    app.query_one("#ablate-steps").value = steps
    app.query_one("#ablate-preset").value = "tiny"
    await pilot.press("ctrl+r")
    return app.query_one(AblatePane)


async def test_ablation_of_two_variants_fills_the_table_like_the_command(tmp_path, corpus_file):
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_ablation(app, pilot, ["attention", "tying"], corpus_file, "15")
        await wait_for(pilot, lambda: pane.state.status == "finished", timeout=300,
                       what="the ablation to finish")
        await pilot.pause(0.6)
        table = app.query_one(DataTable)
        assert table.row_count == 3
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == [  # cells are Text: no markup
            "baseline", "attention", "tying"]
        assert set(app.query_one("#ablate-chart").series) == {"baseline", "attention", "tying"}
        assert all(len(steps) > 0 for steps, _ in app.query_one("#ablate-chart").series.values())
        table.move_cursor(row=1)
        await pilot.pause()
        assert "attention" in str(app.query_one("#ablate-sample").render())
        pane_results = [e for e in read_events(pane.state.run_dir) if e["type"] == "result"]

    out = tmp_path / "headless.json"
    subprocess.run([sys.executable, "-m", "minigpt", "ablate", "attention", "tying", "--data",
                    str(corpus_file), "--steps", "15", "--preset", "tiny", "--json", str(out),
                    "--out", str(tmp_path / "headless"), "-q"], check=True, capture_output=True)
    headless = json.loads(out.read_text())
    for mine, theirs in zip(pane_results, headless, strict=True):
        assert mine["variant"] == theirs["variant"]
        assert mine["train_loss"] == theirs["train_loss"]
        assert mine["val_loss"] == theirs["val_loss"]


async def test_cancel_keeps_finished_variants(tmp_path, corpus_file):
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_ablation(app, pilot, ["attention"], corpus_file, "100000")
        await wait_for(pilot, lambda: pane.state.status == "running" and "step" in str(
            app.query_one("#ablate-status").render()), what="training")
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: pane.state.status == "cancelled", what="the cancel")
        assert app.query_one(DataTable).row_count == 0  # the interrupted baseline is not a result


async def test_the_form_passes_the_text_field(tmp_path, english_text):
    """Data x.jsonl and text field body in the form: the ablation reads the body field."""
    data = tmp_path / "corpus.jsonl"
    data.write_text("".join(json.dumps({"id": i, "body": english_text[i:i + 3000]}) + "\n"
                            for i in range(0, 30_000, 3000)), encoding="utf-8")
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        await wait_for(pilot, lambda: app.focused is app.query_one("#ablate-variants"),
                       what="the pane's focus")
        app.query_one("#ablate-text-field").value = "body"
        pane = await start_ablation(app, pilot, ["tying"], data, "3")
        await wait_for(pilot, lambda: pane.state.status not in ("starting", "preparing",
                                                                 "running"),
                       timeout=300, what="the ablation to end")
        assert pane.state.status == "finished", str(app.query_one("#ablate-status").render())
        prepared = next(e for e in read_events(pane.state.run_dir) if e["type"] == "prepared")
        assert prepared["tokens"] > 20_000  # the bodies, not a missing "text" field
        assert app.query_one(DataTable).row_count == 2
