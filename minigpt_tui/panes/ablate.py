"""The Ablate pane: pick variants, train them against the baseline in the background, compare.

The ablation is `minigpt ablate ... --out RUN_DIR` in a child process (its own session, like a
training run), so its numbers are the ones the command prints headless for the same arguments;
a RunFollower reads RUN_DIR/events.jsonl into the run's state, and this pane draws it. Cancelling
stops the variant in training; the finished ones stay in the table.
"""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.validation import Integer
from textual.widgets import Button, DataTable, Input, Select, Static

from minigpt.runs.events import PREPARE_STAGES
from minigpt.runs.state import LIVE, RunState, VariantResult
from minigpt.train.ablation import STEPS, VARIANTS, new_ablation_dir
from minigpt.train.config import PRESETS
from minigpt.units import number
from minigpt_tui import runs
from minigpt_tui.panes.following import FollowingPane
from minigpt_tui.text import assemble, clean, plain
from minigpt_tui.widgets.check_list import CheckList
from minigpt_tui.widgets.grad_flow import variants_table
from minigpt_tui.widgets.loss_chart import LossChart
from minigpt_tui.widgets.setting import labelled

COLUMNS = ("variant", "train", "val", "vs base", "tok/s", "time")


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
    ]
    RUN_NAME = "An ablation"

    def __init__(self, runs_root: Path, **kwargs):
        super().__init__(runs_root, **kwargs)
        self._rows: dict[str, VariantResult] = {}  # the table's: variant -> result shown
        self._highlighted: str | None = None  # the table's highlighted variant

    def compose(self) -> ComposeResult:
        with Horizontal(id="ablate-top"):
            with Vertical(id="ablate-form"):
                yield CheckList(*[(name, name, name == "residual") for name in VARIANTS],
                                    id="ablate-variants")
                yield labelled("data", Input(placeholder="builtin", id="ablate-data",
                                             compact=True),
                               "a text, JSON Lines or Parquet file, a folder of them, a URL or "
                               "hf:owner/dataset; empty: the built-in corpus")
                yield labelled("field", Input(placeholder="text", id="ablate-text-field",
                                              compact=True),
                               "the field (JSON Lines) or column (Parquet) holding the text; "
                               "empty: text")
                yield labelled("steps", Input(str(STEPS), id="ablate-steps",
                                              validators=[Integer(minimum=1)], compact=True),
                               "training steps for each model")
                yield labelled("preset", Select([(p, p) for p in PRESETS], value="cpu",
                                                allow_blank=False, id="ablate-preset",
                                                compact=True), "the baseline's preset")
                with Horizontal(classes="buttons"):
                    yield Button("Run", variant="primary", id="ablate-start", compact=True)
                    yield Button("Cancel", id="ablate-cancel", compact=True)
            yield LossChart(id="ablate-chart")
        yield Static("Pick variants, then Run (ctrl+r).", id="ablate-status")
        with Vertical(id="ablate-bottom"):
            with Horizontal(id="ablate-results"):
                yield VariantTable(id="ablate-table", cursor_type="row", zebra_stripes=True)
                yield Static("", id="ablate-grad", classes="grad-flow")
            with DetailBox(id="ablate-sample-box"):
                yield Static("", id="ablate-evidence")
                yield Static("", id="ablate-sample")

    def on_mount(self) -> None:
        self.query_one(DataTable).add_columns(*COLUMNS)

    # --- starting and following --------------------------------------------------------------------

    @on(Button.Pressed, "#ablate-start")
    @on(Input.Submitted, "#ablate-steps")
    def action_start(self) -> None:
        if self.is_live:
            self.notify("an ablation is running: cancel it first (ctrl+k)", severity="warning",
                        markup=False)
            return
        variants = list(self.query_one(CheckList).selected)
        steps_box = self.query_one("#ablate-steps", Input)
        if not variants:
            self.notify("pick at least one variant", severity="error", markup=False)
            return
        if not steps_box.is_valid:
            self.notify("steps must be a whole number of at least 1", severity="error",
                        markup=False)
            return
        data = self.query_one("#ablate-data", Input).value.strip() or None
        text_field = self.query_one("#ablate-text-field", Input).value.strip() or None
        preset = self.query_one("#ablate-preset", Select).value
        try:
            run_dir = new_ablation_dir(self.runs_root)
            process = runs.launch_ablation(run_dir, variants, data, int(steps_box.value),
                                           preset, text_field)
        except (OSError, ValueError) as e:  # an unwritable folder, a NUL in a typed path
            self.notify(clean(f"cannot start the ablation: {e}"), severity="error", markup=False)
            return
        self.attach(run_dir, process)

    def clear_run(self) -> None:
        self._rows.clear()
        self._highlighted = None
        self.query_one(DataTable).clear()
        self.query_one(LossChart).clear()

    def redraw(self) -> None:
        s = self.state
        if s is None:
            return
        chart = self.query_one(LossChart)
        for name, (steps, losses) in s.variant_curves.items():
            chart.set_series(name, steps, losses)
        chart.redraw()
        table = self.query_one(DataTable)
        for name, result in s.results.items():
            if self._rows.get(name) is result:
                continue
            if name in self._rows:  # a variant's result again: the newer one stands
                table.remove_row(name)
                del self._rows[name]
            delta = "" if name == "baseline" else number(result.val_loss_delta, "+.3f")
            cells = [name, number(result.train_loss, ".3f"), number(result.val_loss, ".3f"), delta,
                     number(result.tokens_per_s, ",.0f"),
                     "-" if result.seconds is None else f"{result.seconds:.0f}s"]
            table.add_row(*map(plain, cells), key=name)
            self._rows[name] = result
        self.query_one("#ablate-status", Static).update(self._status_line(s))
        self._show_detail()

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
