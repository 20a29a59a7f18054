"""The Inspect pane: on the Chat pane's model, what each head of a prompt attends to, the kind of
every head, and the logit lens. minigpt.infer.inspect computes them, minigpt.cli.inspect_view
draws them.

Enter runs inspect_prompt in a thread worker; the arrow keys (or h j k l) then move through the
layers (up, down) and heads (left, right) without computing again: the Inspection holds every
head. The heatmap's intensity is a character as well as a colour, so it reads the same with
NO_COLOR (which Textual applies to the whole screen).
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Group
from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.message import Message
from textual.widget import Widget
from textual.widgets import Input, Static
from textual.worker import get_current_worker

from minigpt.cli.inspect_view import RAMP, chosen_head, head_overview, heatmap, lens_table
from minigpt.infer.inspect import Inspection
from minigpt_tui.text import assemble, clean, plain

NO_MODEL = ("No model: open a checkpoint in the Chat pane (2, then ctrl+o), or start with "
            "minigpt chat --ckpt FILE.")

ABOUT = ("Enter inspects the prompt: the attention of one head at a time (←→ heads, ↑↓ layers, "
         "or h l k j), the kind of every head, and the logit lens (what each layer would predict).")


class HeadView(VerticalScroll):
    """The drawings; focused, its arrows move through the heads (page keys scroll)."""

    BINDINGS = [
        Binding("left,h", "move(0, -1)", "Head", show=False),
        Binding("right,l", "move(0, 1)", "Head"),
        Binding("up,k", "move(-1, 0)", "Layer", show=False),
        Binding("down,j", "move(1, 0)", "Layer"),
    ]

    def action_move(self, layers: int, heads: int) -> None:
        self.query_ancestor(InspectPane).move(layers, heads)


class InspectPane(Widget, can_focus=False):
    """Inside the Chat pane's model, on a prompt: one head's attention as a heatmap, every
    head's kind, and the logit lens."""

    # what the inspecting worker tells the pane
    @dataclass
    class Inspected(Message, bubble=False):
        inspection: Inspection

    @dataclass
    class Failed(Message, bubble=False):
        error: str

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.model = None
        self.tokenizer = None
        self.model_lock = None  # held while the model runs: the Chat pane's, shared with it
        self.suggested = ""  # the prompt last put in the box for the user, as the box shows it
        self.suggested_prompt = ""  # and as it is
        self.inspection: Inspection | None = None
        self.selected = (0, 0)  # the (layer, head) the heatmap shows

    def compose(self) -> ComposeResult:
        yield Static(NO_MODEL, id="inspect-model", markup=False)
        yield Input(placeholder="a prompt to look inside; Enter inspects it", id="inspect-prompt")
        yield Static("", id="inspect-status", markup=False)
        with HeadView(id="inspect-view"):
            yield Static(ABOUT, id="inspect-head", markup=False)
            yield Static("", id="inspect-heatmap", markup=False)
            yield Static("", id="inspect-heads", markup=False)
            yield Static("", id="inspect-lens", markup=False)

    # --- what the app hands over -------------------------------------------------------------------

    def use_model(self, model, tokenizer, description: Text, lock) -> None:
        """The Chat pane's model; lock: held by whoever runs it (inspect hooks its modules)."""
        self.model, self.tokenizer, self.model_lock = model, tokenizer, lock
        self.query_one("#inspect-model", Static).update(description)

    def suggest(self, prompt: str) -> None:
        """Put a prompt (the last chat exchange) in the box, unless the user typed there. The box
        is one line: it shows newlines and tabs as symbols (and control characters, as
        everywhere), and Enter on it inspects the exchange as it was."""
        box = self.query_one("#inspect-prompt", Input)
        if prompt and box.value in ("", self.suggested):
            self.suggested_prompt = prompt
            box.value = self.suggested = clean(prompt).replace("\n", "↵").replace("\t", "⇥")
            box.cursor_position = len(box.value)

    # --- inspecting --------------------------------------------------------------------------------

    @on(Input.Submitted, "#inspect-prompt")
    def run_inspect(self, event: Input.Submitted) -> None:
        if self.model is None:
            self.say(plain(NO_MODEL, "yellow"))
            return
        if not event.value:
            self.say(plain("the prompt is empty", "yellow"))
            return
        self.say(plain("inspecting ..."))
        suggested = event.value == self.suggested
        self._inspect(self.suggested_prompt if suggested else event.value)

    @work(thread=True, exclusive=True, group="inspect")
    def _inspect(self, prompt: str) -> None:
        from minigpt.errors import MinigptError
        from minigpt.infer.inspect import inspect_prompt

        try:
            with self.model_lock:
                found = inspect_prompt(self.model, self.tokenizer, prompt)
        except MinigptError as e:
            self.post_message(self.Failed(str(e)))
        except Exception as e:  # whatever else goes wrong: one line in the pane
            first = (str(e).strip().splitlines() or [""])[0]
            self.post_message(self.Failed(f"inspect failed: {type(e).__name__}: {first}"))
        else:
            if not get_current_worker().is_cancelled:  # a newer Enter's result is the one to show
                self.post_message(self.Inspected(found))

    @on(Failed)
    def _failed(self, message: Failed) -> None:
        first = (message.error.strip().splitlines() or [""])[0]
        self.say(plain(first, "red"))

    @on(Inspected)
    def _inspected(self, message: Inspected) -> None:
        self.inspection = found = message.inspection
        if found.n_head:
            self.selected = chosen_head(found)[:2]
        self.draw()
        self.query_one(HeadView).focus()

    def move(self, layers: int, heads: int) -> None:
        found = self.inspection
        if found is None or not found.n_head:
            return
        layer, head = self.selected
        self.selected = ((layer + layers) % found.n_layer, (head + heads) % found.n_head)
        self.draw()

    # --- drawing -----------------------------------------------------------------------------------

    def say(self, line: Text) -> None:
        line.no_wrap, line.overflow = True, "ellipsis"
        self.query_one("#inspect-status", Static).update(line)

    def on_resize(self) -> None:
        if self.inspection is not None:
            self.draw()

    def draw(self) -> None:
        found = self.inspection
        view = self.query_one(HeadView)
        width = view.scrollable_content_region.width or self.size.width or 80
        T = len(found.ids)
        layer, head = self.selected
        tokens = f"{T} tokens" + (f" (the last of {T + found.cut})" if found.cut else "")
        if found.n_head:  # first, so that a narrow pane never cuts it
            self.say(assemble((f"layer {layer} of {found.n_layer}, head {head} of "
                               f"{found.n_head}", "bold"), f" · {tokens} · ←→ head ↑↓ layer"))
        else:
            self.say(assemble(f"{tokens}, {found.n_layer} layers, no attention"))
        if found.n_head:
            m = found.head_measures(layer, head)
            about = assemble(
                (f"attention of layer {layer} head {head}", "bold"),
                f": entropy {m.entropy:.2f}, distance {m.distance:.1f}, previous "
                f"{m.previous:.0%}, first {m.first:.0%}, current {m.current:.0%}"
                + (f", induction {m.induction:.0%}" if m.induction is not None else ""),
                (f"\neach row attends to the columns, '{RAMP[1]}' a little ... '{RAMP[-1]}' all",
                 "dim"))
            grid, note = heatmap(found, layer, head, width)
            grid.no_wrap = True
            heads_grid, legend = head_overview(found, width, selected=(layer, head))
            heads = Group(Text("every head", style="bold"), _unwrapped(heads_grid), legend)
        else:
            about = Text("this model has no attention (an ablation): no heatmap or head overview",
                        style="yellow")
            grid, note, heads = Text(""), None, Text("")
        self.query_one("#inspect-head", Static).update(about)
        self.query_one("#inspect-heatmap", Static).update(
            Group(grid, Text(note, style="dim")) if note else grid)
        self.query_one("#inspect-heads", Static).update(heads)
        table, note = lens_table(found, width)
        title = Text.assemble(("logit lens", "bold"), ": the top token after each layer, and the "
                              "probability of the real next token")
        self.query_one("#inspect-lens", Static).update(
            Group(title, table, *([Text(note, style="dim")] if note else [])))


def _unwrapped(group: Group) -> Group:
    """The overview grid's lines, cropped rather than wrapped on a narrow pane."""
    for line in group.renderables:
        line.no_wrap, line.overflow = True, "crop"
    return group

