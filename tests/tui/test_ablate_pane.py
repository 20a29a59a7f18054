import json
import subprocess
import sys

import pytest
from textual.widgets import DataTable, SelectionList

from minigpt.runs.log import read_events
from minigpt_tui.app import MinigptApp
from minigpt_tui.panes.ablate import AblatePane

from .screen import shown
from .test_gradient_flow import write_events
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


async def test_the_form_starts_the_ablation_it_shows(tmp_path, launches):
    """The variants, data, text field, steps and preset in the form: the ablation asked for has
    them (the slow tests below run it)."""
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#ablate-text-field").value = "body"
        pane = await start_ablation(app, pilot, ["attention", "tying"], "x.jsonl", "3")
        await wait_for(pilot, lambda: pane.state is not None, what="the ablation followed")
    [(args, run_dir)] = launches
    assert pane.state.run_dir == run_dir and run_dir.parent == tmp_path / "runs"
    assert args == ["ablate", "attention", "tying", "--out", str(run_dir), "--quiet",
                    "--seeds", "1", "--steps", "3", "--data", "x.jsonl", "--text-field", "body",
                    "--preset", "tiny"]


async def test_seeds_and_a_time_start_the_ablation_with_them(tmp_path, launches):
    """Seeds 3 and time 2m, steps left empty: `ablate ... --seeds 3 --time 2m`, no --steps."""
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#ablate-seeds").value = "3"
        app.query_one("#ablate-time").value = "2m"
        pane = await start_ablation(app, pilot, ["rope"], "x.txt", "")
        await wait_for(pilot, lambda: pane.state is not None, what="the ablation followed")
    [(args, run_dir)] = launches
    assert args == ["ablate", "rope", "--out", str(run_dir), "--quiet", "--seeds", "3",
                    "--time", "2m", "--data", "x.txt", "--preset", "tiny"]


@pytest.mark.parametrize("field, value, steps, said", [
    ("#ablate-time", "5 minutes", "", "is not a time"),
    ("#ablate-time", "0s", "", "more than 0 seconds"),
    ("#ablate-seeds", "two", "", "seeds must be a whole number"),
    ("#ablate-seeds", "101", "", "seeds (--seeds) must be at most 100"),
    ("#ablate-steps", "", "0", "steps must be a whole number"),
    ("#ablate-time", "1m", "5", "not both"),
])
async def test_a_bad_seeds_time_or_steps_says_why_and_starts_nothing(tmp_path, launches, field,
                                                                      value, steps, said):
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one(field).value = value
        pane = await start_ablation(app, pilot, ["rope"], "x.txt", steps)
        await wait_for(pilot, lambda: app._notifications, timeout=10, what="the refusal")
        [note] = list(app._notifications)
        assert said in note.message and note.severity == "error"
        assert "\n" not in note.message
    assert launches == [] and pane.state is None


async def test_the_variants_are_listed_under_what_they_do(tmp_path):
    """Headings from the engine's kinds, each name once under its own; a heading is never a
    choice, select_all or not."""
    from minigpt.model.switches import KINDS
    from minigpt.train.ablation import VARIANTS
    from minigpt_tui.widgets.check_list import CheckList, Heading

    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("3")
        checks = app.query_one(CheckList)
        await wait_for(pilot, lambda: app.focused is checks, what="the list's focus")
        values = [checks.get_option_at_index(i).value for i in range(checks.option_count)]
        headings = [v.text for v in values if isinstance(v, Heading)]
        assert headings == list(KINDS.values())
        under = {}
        for value in values:
            if isinstance(value, Heading):
                heading = value.text
            else:
                under[value] = heading
        assert sorted(under) == sorted(VARIANTS)
        assert under["residual"] == "remove a part" and under["llama"] == "add a modern part"
        assert under["no-mask"] == "the questions" and under["size"] == KINDS["size"]
        assert checks.selected == ["residual"]
        await pilot.press("down", "space")  # the cursor steps over the headings
        assert checks.selected == ["residual", "attention"]
        await pilot.press("end")
        await wait_for(pilot, lambda: checks.scroll_offset.y > 0, what="the list scrolled")
        await pilot.press("home")  # back on the first variant, its heading in view above it
        await wait_for(pilot, lambda: checks.scroll_offset.y == 0, what="the first heading")
        assert checks.highlighted == 1
        checks.select_all()
        assert sorted(checks.selected) == sorted(VARIANTS)


@pytest.mark.slow
async def test_ablation_of_two_variants_fills_the_table_like_the_command(tmp_path, corpus_file):
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_ablation(app, pilot, ["attention", "tying"], corpus_file, "15")
        await wait_for(pilot, lambda: shown(app, "#ablate-status").startswith("finished"),
                       timeout=300, what="the finished ablation drawn")
        table = app.query_one(DataTable)
        assert table.row_count == 3
        assert [str(table.get_row_at(i)[0]) for i in range(3)] == [  # cells are Text: no markup
            "baseline", "attention", "tying"]
        assert set(app.query_one("#ablate-chart").series) == {"baseline", "attention", "tying"}
        assert all(len(steps) > 0 for steps, _ in app.query_one("#ablate-chart").series.values())
        table.move_cursor(row=1)
        await wait_for(pilot, lambda: "attention" in shown(app, "#ablate-sample"),
                       what="the attention variant's sample")
        pane_results = [e for e in read_events(pane.state.run_dir) if e["type"] == "result"]

    out = tmp_path / "headless.json"
    subprocess.run([sys.executable, "-m", "minigpt", "ablate", "attention", "tying", "--data",
                    str(corpus_file), "--steps", "15", "--preset", "tiny", "--json", str(out),
                    "--out", str(tmp_path / "headless"), "-q"], check=True, capture_output=True)
    headless = json.loads(out.read_text())["results"]
    for mine, theirs in zip(pane_results, headless, strict=True):
        assert mine["variant"] == theirs["variant"]
        assert mine["train_loss"] == theirs["train_loss"]
        assert mine["val_loss"] == theirs["val_loss"]


@pytest.mark.slow
async def test_cancel_keeps_finished_variants(tmp_path, corpus_file):
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await start_ablation(app, pilot, ["attention"], corpus_file, "100000")
        await wait_for(pilot, lambda: pane.state.status == "running" and "step" in str(
            app.query_one("#ablate-status").render()), what="training")
        await pilot.press("ctrl+k")
        await wait_for(pilot, lambda: pane.state.status == "cancelled", what="the cancel")
        assert app.query_one(DataTable).row_count == 0  # the interrupted baseline is not a result


@pytest.mark.slow
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


# --- a finished ablation, fed by hand: the results read with the keyboard alone ------------------

EVIDENCE = {
    "baseline": "GPT-2 as designed: val loss 2.80; distinct 4-grams in samples 99%",
    "residual": "no residual connections: layer 1 gradient norm 1/40 of the baseline's; "
                "distinct 4-grams in samples 100% against 99%; val loss +0.41",
    "attention": "no self-attention (MLP only): layer 1 gradient norm 0.5x the baseline's; "
                 "distinct 4-grams in samples 12% against 99%; val loss +0.01",
}
NORMS = {
    "baseline": {"embedding": 0.67, "1": 0.63, "2": 0.23, "head": 0.044},
    "residual": {"embedding": 0.017, "1": 0.016, "2": 0.38, "head": 0.031},
    "attention": {"embedding": 0.65, "1": 0.33, "2": 0.22, "head": 0.045},
}


def finished_ablation(tmp_path):
    run_dir = tmp_path / "ablate-x"
    write_events(
        run_dir,
        {"type": "ablation_start", "variants": list(EVIDENCE), "max_steps": 150, "pid": None},
        *[{"type": "result", "variant": name, "kind": "baseline" if name == "baseline" else "remove",
           "train_loss": 3.0, "val_loss": 3.1,
           "val_loss_delta": 0.0 if name == "baseline" else 0.4, "tokens_per_s": 100.0,
           "seconds": 2.0, "sample": f"the {name} sample", "distinct_4grams": 0.9,
           "grad_norms": NORMS[name], "evidence": EVIDENCE[name]} for name in EVIDENCE],
        {"type": "ablation_done", "reason": "finished", "results": []})
    return run_dir


def screen_lines(app) -> list[str]:
    """The screen as drawn, one string a row."""
    return ["".join(segment.text for segment in strip)
            for strip in app.screen._compositor.render_strips()]


def footer_keys(app) -> str:
    return " ".join(str(key.render()) for key in app.screen.query("FooterKey"))


async def test_a_key_reaches_the_variants_and_their_cursor_picks_the_detail(tmp_path):
    app = MinigptApp(attach=finished_ablation(tmp_path), runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        focused = lambda selector: app.focused is app.query_one(selector)  # noqa: E731
        await wait_for(pilot, lambda: focused("#ablate-variants"), what="the form's focus")
        await pilot.press("f2")
        await wait_for(pilot, lambda: focused("#ablate-table") and "Variant" in footer_keys(app),
                       what="the table's focus and keys")
        sample = lambda: shown(app, "#ablate-sample")  # noqa: E731
        await wait_for(pilot, lambda: "the baseline sample" in sample(), what="the first sample")
        await pilot.press("down")
        await wait_for(pilot, lambda: "the residual sample" in sample(), what="the next sample")
        await pilot.press("down")
        await wait_for(pilot, lambda: "the attention sample" in sample(), what="the last sample")
        await pilot.press("tab")  # on to the box beside: it scrolls with the keys
        await wait_for(pilot, lambda: focused("#ablate-sample-box")
                       and "Scroll" in footer_keys(app), what="the box's focus and keys")
        await pilot.press("f2")  # back to the form
        await wait_for(pilot, lambda: focused("#ablate-variants"), what="the form's focus again")
        start = app.query_one("#ablate-start")
        assert start.region and app.screen.region.contains_region(start.region)


@pytest.mark.parametrize("size, keys", [((80, 24), ["f2"]), ((120, 40), [])])
async def test_the_gradient_flow_and_every_evidence_line_are_on_screen(tmp_path, size, keys):
    """At 80x24 after one key (the results take the pane), at 120x40 beside the form."""
    app = MinigptApp(attach=finished_ablation(tmp_path), runs_root=tmp_path)
    async with app.run_test(size=size) as pilot:
        await wait_for(pilot, lambda: app.focused is app.query_one("#ablate-variants"),
                       what="the form's focus")  # a key pressed before it lands goes nowhere
        await pilot.press(*keys)
        table = app.query_one("#ablate-table")
        await wait_for(pilot, lambda: (app.focused is table) == bool(keys)
                       and "grad norm by layer" in " ".join(screen_lines(app)),
                       what="the gradient flow on screen")
        lines = screen_lines(app)
        screen = " ".join(" ".join(line.split()) for line in lines)
        assert "grad norm by layer" in screen
        rows = {}  # layer: its row of the gradient-flow table, wherever it stands on the line
        for words in (line.split() for line in lines):
            for layer in ("emb", "L1", "L2"):
                if layer in words:
                    rows[layer] = words[words.index(layer) + 1:]
        assert rows["emb"][-3:] == ["0.67", "0.025", "0.97"]  # the residual's starved
        assert rows["L1"][-3:] == ["0.63", "0.025", "0.52"]
        for name, evidence in EVIDENCE.items():  # wrapped maybe, but whole
            first, last = evidence[:25], evidence[-14:]
            assert first in screen and last in screen, name
        for name in ("baseline", "residual", "attention"):  # the table's rows
            assert any(line.lstrip().startswith(name) for line in lines), name


# --- a size sweep at three seeds, fed by hand: the spread in the table and the chart, the law ---

SIZES = {"baseline": 400_000, "size-1x32": 6_000, "size-2x64": 40_000, "size-3x96": 120_000}


def size_sweep(tmp_path):
    """A finished `ablate size --seeds 3`, its events as the command writes them: three seeds'
    curves for each size, results with their spread and interval, and the law the engine fits."""
    from minigpt.runs.results import VariantResult
    from minigpt.train.ablation import scaling_laws

    results = []
    events = [{"type": "ablation_start", "variants": list(SIZES), "max_steps": 20, "seeds": 3,
               "pid": None}]
    for index, (name, n) in enumerate(SIZES.items()):
        loss = 20 * n ** -0.25 + 1.1
        events.append({"type": "variant", "variant": name, "index": index, "count": len(SIZES),
                       "max_steps": 20})
        for seed in range(3):
            events += [{"type": "step", "variant": name, "seed": seed, "step": step,
                        "max_steps": 20, "loss": loss + 1 / (step + 1) + 0.01 * seed}
                       for step in (0, 10, 20)]
        result = VariantResult(name, kind="baseline" if name == "baseline" else "size",
                               val_loss=loss, val_loss_std=0.0123, body_params=n,
                               params=n + 4000, steps=20, train_loss=loss - 0.1)
        if name != "baseline":
            result.val_loss_delta = loss - (20 * SIZES["baseline"] ** -0.25 + 1.1)
            result.delta_half_width, result.within_noise = 0.0456, False
        results.append(result)
        events.append({"type": "result", **result.to_dict()})
    events.append({"type": "ablation_done", "reason": "finished",
                   "results": [r.to_dict() for r in results],
                   "scaling": scaling_laws(results, tokens_per_step=64)})
    run_dir = tmp_path / "ablate-sizes"
    write_events(run_dir, *events)
    return run_dir


async def test_seeds_show_a_spread_and_a_size_sweep_its_scaling_law(tmp_path):
    """Each variant's val loss with its spread (±) and its difference with its interval, the
    chart's curve the seeds' mean with their lowest and highest; the sweep's fitted law drawn
    in the chart's place at 80x24, and f3 goes back to the curves."""
    from minigpt.runs.state import seed_spread
    from minigpt_tui.widgets.loss_chart import LossChart
    from minigpt_tui.widgets.scaling_chart import ScalingChart

    app = MinigptApp(attach=size_sweep(tmp_path), runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(AblatePane)
        table = app.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 4, what="the results")
        rows = {str(table.get_row_at(i)[0]): [str(c) for c in table.get_row_at(i)]
                for i in range(4)}
        headers = [str(c.label) for c in table.columns.values()]
        val, delta = headers.index("val loss"), headers.index("vs baseline")
        assert rows["baseline"][val].endswith(" ±0.012") and rows["baseline"][delta] == ""
        assert rows["size-1x32"][delta].startswith("+") and rows["size-1x32"][delta].endswith(
            " ±0.046")
        assert rows["size-2x64"][headers.index("noise")] == "outside"

        chart = app.query_one(LossChart)
        spread = seed_spread(pane.state.seed_curves["size-2x64"])
        assert chart.series["size-2x64"] == (spread.steps, spread.mean)
        assert chart.spreads["size-2x64"] == (spread.low, spread.high)
        assert spread.low[0] < spread.mean[0] < spread.high[0]

        scaling = app.query_one(ScalingChart)
        await wait_for(pilot, lambda: scaling.display and not chart.display,
                       what="the scaling plot in the chart's place")
        await wait_for(pilot, lambda: "α 0.25 " in " ".join(screen_lines(app)),
                       what="the law on screen")
        screen = " ".join(screen_lines(app))
        assert "L(N) = a·N^-α + c" in screen and "parameters (log)" in screen
        assert "10k" in screen and "100k" in screen  # the parameters' axis, in decades
        assert "Scaling" in footer_keys(app)
        await pilot.press("f3")
        await wait_for(pilot, lambda: chart.display and not scaling.display,
                       what="the curves again")


async def test_a_run_without_a_sweep_has_no_scaling_key(tmp_path):
    app = MinigptApp(attach=finished_ablation(tmp_path), runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 3, what="the results")
        assert "Scaling" not in footer_keys(app)
        assert not app.query_one("#ablate-scaling").display


@pytest.mark.parametrize("laws", [
    {"a": 1e300, "alpha": -1e300, "c": 1.0},  # overflows at every size
    {"a": -5.0, "alpha": 0.3, "c": 1.0},  # losses below zero: no log axis
    {"a": 1.0, "alpha": 0.1, "c": "1.0"},  # not a law: no plot
])
async def test_a_law_read_from_a_file_never_breaks_the_pane(tmp_path, laws):
    run_dir = tmp_path / "ablate-bad"
    points = [{"variant": f"size-{i}", "params": 10.0 ** i, "val_loss": 3.0 - i / 10}
              for i in (3, 4, 5)]
    write_events(run_dir, {"type": "ablation_start", "variants": ["baseline"], "pid": None},
                 {"type": "ablation_done", "reason": "finished",
                  "scaling": {"parameters": laws, "points": points}})
    app = MinigptApp(attach=run_dir, runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: shown(app, "#ablate-status").startswith("finished"),
                       what="the ablation drawn")
        shows_law = isinstance(laws["c"], float)
        await wait_for(pilot, lambda: app.query_one("#ablate-scaling").display == shows_law
                       and ("L(N)" in " ".join(screen_lines(app))) == shows_law,
                       timeout=10, what="the plot, or none")
