"""The Ablate pane: pick variants, train them against the baseline in the background, compare.

The ablation is `minigpt ablate ... --out RUN_DIR` in a child process (its own session, like a
training run), so its numbers are the ones the command prints headless for the same arguments;
a RunFollower reads RUN_DIR/events.jsonl into the run's state, and this pane draws it. Cancelling
stops the variant in training; the finished ones stay in the table.

The table's cells are the command line's (runs/columns.py), with "±" for a spread over seeds; the
chart draws each variant's mean over its seeds with their lowest and highest loss about it. A size
sweep's scaling law, once fitted, is drawn in the chart's place (f3 goes back to the curves).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.validation import Integer
from textual.widget import Widget
from textual.widgets import Button, DataTable, Input, Label, Select, Static
from textual.widgets.selection_list import Selection

from minigpt.errors import ConfigError
from minigpt.model.switches import KINDS
from minigpt.runs.columns import COLUMNS, result_rows
from minigpt.runs.events import PREPARE_STAGES
from minigpt.runs.state import LIVE, RunState, VariantResult, seed_spread
from minigpt.train.ablation import STEPS, VARIANTS, by_kind, new_ablation_dir
from minigpt.train.config import PRESETS
from minigpt.train.plan import plan_ablation
from minigpt.train.scaling import Sweep
from minigpt.units import number, parse_duration
from minigpt_tui import runs
from minigpt_tui.panes.following import FollowingPane
from minigpt_tui.screens.new_run import Duration
from minigpt_tui.text import assemble, clean, plain
from minigpt_tui.widgets.check_list import CheckList
from minigpt_tui.widgets.grad_flow import variants_table
from minigpt_tui.widgets.loss_chart import LossChart
from minigpt_tui.widgets.scaling_chart import ScalingChart
from minigpt_tui.widgets.setting import labelled

PLUS_MINUS = "±"  # a mean's spread over seeds, and a difference's interval, in the table


@dataclass
class Ablation:
    """What the form asks for: `minigpt ablate`'s arguments."""

    variants: list[str]
    data: str | None
    steps: int | None  # None: ablate's own (STEPS), or the time
    preset: str
    text_field: str | None
    seeds: int
    time: str | None  # each model's time as typed (110s, 5m), instead of steps


def variant_choices() -> list:
    """The check list's lines: the variants under headings by what they do (ablation.by_kind,
    as `minigpt ablate --help` lists them), a sweep with its number of models; the residual
    ticked, as a first ablation to try."""
    lines = []
    for kind, names in by_kind().items():
        lines.append(CheckList.heading(KINDS[kind]))
        for name in names:
            prompt = Text(name)
            if len(VARIANTS[name]) > 1:
                prompt.append(f" x{len(VARIANTS[name])}", style="dim")
            lines.append(Selection(prompt, name, name == "residual"))
    return lines


def pair(*settings: tuple[str, Widget, str]) -> Horizontal:
    """Two settings on one line of the form: (label, widget, tooltip) each."""
    widgets = []
    for i, (label, widget, tooltip) in enumerate(settings):
        widget.tooltip = plain(tooltip)
        widgets += [Label(label, classes="setting-label" + (" more" if i else "")), widget]
    return Horizontal(*widgets, classes="setting pair")


class VariantTable(DataTable):
    """The results, a row a variant: its cursor picks the variant whose sample is shown."""

    BINDINGS = [
        Binding("up", "cursor_up", "Variant", show=False),
        Binding("down", "cursor_down", "Variant"),
    ]


class DetailBox(VerticalScroll, can_focus=True):
    """Every variant's evidence in words, then the picked variant's sample: scrolls by key."""

    BINDINGS = [
        Binding("up", "scroll_up", "Scroll", show=False),
        Binding("down", "scroll_down", "Scroll"),
    ]


class AblatePane(FollowingPane, can_focus=False):
    """One ablation: the form that starts it, every variant's loss curve, and the results table
    with each variant's evidence, sample and gradient flow."""

    BINDINGS = [
        Binding("ctrl+r", "start", "Run ablation"),
        Binding("ctrl+k", "cancel", "Cancel"),
        Binding("f2", "toggle_results", "Results"),
        Binding("f3", "toggle_scaling", "Scaling"),  # shown once a size sweep's law is fitted
    ]
    RUN_NAME = "An ablation"

    def __init__(self, runs_root: Path, **kwargs):
        super().__init__(runs_root, **kwargs)
        self._rows: dict[str, VariantResult] = {}  # the table's: variant -> result shown
        self._highlighted: str | None = None  # the table's highlighted variant
        self._sweep: Sweep | None = None  # a size sweep's fitted law, drawn

    def compose(self) -> ComposeResult:
        with Horizontal(id="ablate-top"):
            with Vertical(id="ablate-form"):
                yield CheckList(*variant_choices(), id="ablate-variants")
                yield labelled("data", Input(placeholder="builtin", id="ablate-data",
                                             compact=True),
                               "a text, JSON Lines or Parquet file, a folder of them, a URL or "
                               "hf:owner/dataset; empty: the built-in corpus")
                yield labelled("field", Input(placeholder="text", id="ablate-text-field",
                                              compact=True),
                               "the field (JSON Lines) or column (Parquet) holding the text; "
                               "empty: text")
                yield pair(("steps", Input(placeholder=str(STEPS), id="ablate-steps",
                                           validators=[Integer(minimum=1)], valid_empty=True,
                                           compact=True),
                            f"training steps for each model; empty: {STEPS}, or the time"),
                           ("time", Input(placeholder="-", id="ablate-time",
                                          validators=[Duration()], valid_empty=True,
                                          compact=True),
                            "or train each model for this long (110s, 5m), on the preset's "
                            "schedule: equal time, where a faster variant takes more steps"))
                yield pair(("seeds", Input(placeholder="1", id="ablate-seeds",
                                           validators=[Integer(minimum=1)], valid_empty=True,
                                           compact=True),
                            "train every model at this many seeds: a mean and its spread, and "
                            "whether a difference is within the noise"),
                           ("preset", Select([(p, p) for p in PRESETS], value="cpu",
                                             allow_blank=False, id="ablate-preset",
                                             compact=True), "the baseline's preset"))
                with Horizontal(classes="buttons"):
                    yield Button("Run", variant="primary", id="ablate-start", compact=True)
                    yield Button("Cancel", id="ablate-cancel", compact=True)
            yield LossChart(id="ablate-chart")
            yield ScalingChart(id="ablate-scaling")
        yield Static("Pick variants, then Run (ctrl+r).", id="ablate-status")
        with Vertical(id="ablate-bottom"):
            with Horizontal(id="ablate-results"):
                yield VariantTable(id="ablate-table", cursor_type="row", zebra_stripes=True,
                                   fixed_columns=1)
                yield Static("", id="ablate-grad", classes="grad-flow")
            with DetailBox(id="ablate-sample-box"):
                yield Static("", id="ablate-evidence")
                yield Static("", id="ablate-sample")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns("variant", *(header for header, _ in COLUMNS))
        self.query_one(ScalingChart).display = False

    # --- starting and following --------------------------------------------------------------------

    @on(Button.Pressed, "#ablate-start")
    @on(Input.Submitted, "#ablate-form Input")
    def action_start(self) -> None:
        if self.is_live:
            self.notify("an ablation is running: cancel it first (ctrl+k)", severity="warning",
                        markup=False)
            return
        try:
            asked = self.asked()
        except ConfigError as e:  # one line, as the command would say it; nothing started
            self.notify(clean(str(e)), severity="error", markup=False)
            return
        try:
            run_dir = new_ablation_dir(self.runs_root)
            process = runs.launch_ablation(run_dir, asked.variants, asked.data, asked.steps,
                                           asked.preset, asked.text_field, seeds=asked.seeds,
                                           time=asked.time)
        except (OSError, ValueError) as e:  # an unwritable folder, a NUL in a typed path
            self.notify(clean(f"cannot start the ablation: {e}"), severity="error", markup=False)
            return
        self.attach(run_dir, process)

    def asked(self) -> Ablation:
        """The ablation the form asks for, checked as `minigpt ablate` checks its arguments
        (plan_ablation): a ConfigError says what is wrong."""
        variants = list(self.query_one(CheckList).selected)
        if not variants:
            raise ConfigError("pick at least one variant")
        values = {}
        for name in ("steps", "seeds"):
            box = self.query_one(f"#ablate-{name}", Input)
            if not box.is_valid:
                raise ConfigError(f"{name} must be a whole number of at least 1")
            values[name] = int(box.value) if box.value.strip() else None
        time = self.query_one("#ablate-time", Input).value.strip() or None
        budget = None if time is None else parse_duration(time)
        preset = self.query_one("#ablate-preset", Select).value
        seeds = values["seeds"] or 1
        plan_ablation(variants, preset, values["steps"], seeds=seeds, time_budget=budget)
        return Ablation(variants, self.query_one("#ablate-data", Input).value.strip() or None,
                        values["steps"], preset,
                        self.query_one("#ablate-text-field", Input).value.strip() or None,
                        seeds, time)

    def clear_run(self) -> None:
        self._rows.clear()
        self._highlighted = None
        self.query_one(DataTable).clear()
        self.query_one(LossChart).clear()
        self._sweep = None
        self.query_one(ScalingChart).show(None)
        self._show_scaling(False)

    def redraw(self) -> None:
        s = self.state
        if s is None:
            return
        chart = self.query_one(LossChart)
        for name, (steps, losses) in s.variant_curves.items():
            seeds = s.seed_curves.get(name, {})
            if len(seeds) > 1:  # the mean over the seeds so far, their lowest and highest about it
                spread = seed_spread(seeds)
                chart.set_series(name, spread.steps, spread.mean, (spread.low, spread.high))
            else:
                chart.set_series(name, steps, losses)
        chart.redraw()
        if self._rows != s.results:
            self._fill_table(s)
        sweep = Sweep.from_dict(s.scaling)
        if sweep != self._sweep:
            self._sweep = sweep
            self.query_one(ScalingChart).show(sweep)
            self._show_scaling(sweep is not None)  # the law, once fitted, in the chart's place
        self.query_one("#ablate-status", Static).update(self._status_line(s))
        self._show_detail()

    def _fill_table(self, s: RunState) -> None:
        """The results as the command line's table has them (runs/columns.py), a variant's row
        in the order they came; the cursor stays on its variant."""
        headers, rows = result_rows(list(s.results.values()), PLUS_MINUS,
                                    timed=s.time_budget is not None)
        table = self.query_one(DataTable)
        table.clear(columns=True)
        table.add_column("variant", key="variant")
        for header in headers:
            table.add_column(Text(header, justify="right"), key=header)
        for name, row in rows.items():
            table.add_row(plain(name), *(Text(clean(row[h]), justify="right") for h in headers),
                          key=name)
        self._rows = dict(s.results)
        if self._highlighted in rows:
            table.move_cursor(row=list(rows).index(self._highlighted))

    def _show_scaling(self, shown: bool) -> None:
        """The scaling plot in the loss chart's place, or the curves again."""
        self.query_one(ScalingChart).display = shown
        self.query_one(LossChart).display = not shown
        self.refresh_bindings()

    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if action == "toggle_scaling":  # a key only where there is a law to draw
            return self._sweep is not None
        return True

    def action_toggle_scaling(self) -> None:
        self._show_scaling(not self.query_one(ScalingChart).display)

    def _status_line(self, s: RunState) -> Text:
        if s.status == "failed":
            return plain(f"failed: {s.error}", "red")
        if s.status == "ended":
            return plain(s.error or "the ablation ended early", "red")
        if s.status not in LIVE:  # finished or cancelled
            return plain(f"{s.status}: {len(s.results)} variant(s) in the table; {s.run_dir}")
        if s.status == "preparing":
            what = ("data ready" if s.prep.ready
                    else PREPARE_STAGES.get(s.prep.stage, s.prep.stage))
            return plain(f"preparing data: {what}")
        if not s.variant:
            return plain(f"starting the ablation in {s.run_dir}")
        current = s.variant + (f" ({s.variant_index + 1}/{s.variant_count})"
                               if s.variant_index is not None and s.variant_count is not None
                               else "")
        if s.seeds > 1 and s.seed is not None:
            current += f", seed {s.seed + 1}/{s.seeds}"
        if s.loss is None:
            return plain(f"training {current}")
        return plain(f"training {current}: step {s.step}/{s.max_steps}, loss {s.loss:.3f}, "
                     f"{number(s.tokens_per_s, ',.0f')} tok/s")

    @on(DataTable.RowHighlighted)
    def _show_sample(self, event: DataTable.RowHighlighted) -> None:
        self._highlighted = event.row_key.value if event.row_key else None
        self._show_detail()

    def _show_detail(self) -> None:
        """Under the table: every variant's evidence in words (the highlighted one marked),
        the highlighted variant's sample; beside it, every variant's gradient norm by layer
        against the baseline's."""
        s, name = self.state, self._highlighted
        evidence = Table.grid(padding=(0, 1))
        evidence.add_column(no_wrap=True)
        evidence.add_column()
        for variant, result in (s.results.items() if s else ()):
            mark, style = ("▸", "bold") if variant == name else (" ", "")
            evidence.add_row(plain(f"{mark}{variant}", style),
                             plain(result.evidence or "-", "italic"))
        shown = evidence.row_count > 0
        self.query_one("#ablate-evidence", Static).update(evidence if shown else "")
        result = s.results.get(name) if s and name else None
        sample = Text()
        if result:
            sample = assemble((f"{name}'s sample", "bold"), "\n")
            sample.append_text(plain(result.sample))
        self.query_one("#ablate-sample", Static).update(sample)
        table = None
        if s is not None:
            # a finished variant's mean over its logged steps; the one in training's latest
            norms = {v: (s.results[v].grad_norms if v in s.results and s.results[v].grad_norms
                         else s.variant_grad_norms.get(v, {}))
                     for v in dict.fromkeys([*s.variants, *s.variant_grad_norms, *s.results])}
            table = variants_table({v: n for v, n in norms.items() if n})
            if table is not None:  # a title wider than one variant's column is not wrapped
                table.min_width = len(str(table.title))
        grad = self.query_one("#ablate-grad", Static)
        grad.display = table is not None
        grad.update(table or "")
        self.query_one("#ablate-results").set_class(table is None, "-alone")

    def action_toggle_results(self) -> None:
        """The results take the whole pane (the form and the chart hidden), and the keys go to
        the table; again, the form comes back."""
        full = not self.has_class("-results")
        if full:
            self.query_one(DataTable).focus()  # before the form is hidden, focus in it or not
            self.add_class("-results")
        else:
            self.remove_class("-results")
            self.call_after_refresh(self.query_one("#ablate-variants").focus)

    @on(Button.Pressed, "#ablate-cancel")
    def action_cancel(self) -> None:
        if not self.is_live:
            self.notify("no ablation is running", severity="warning", markup=False)
            return
        self.follower.ask_to_stop()
        self.notify("cancelling: finished variants stay in the table", markup=False)
