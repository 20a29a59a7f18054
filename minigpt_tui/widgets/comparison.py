"""Two replies to one prompt, side by side, for the user to pick the better one (the Chat pane's
compare mode): A on the left, B on the right, each titled with how it was drawn. Once both are
written it takes focus: a (or left) picks A, b (or right) picks B, n neither. It says what was
picked, and the pane writes the preference."""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.widgets import Static

from minigpt_tui.text import plain
from minigpt_tui.widgets.reply import Reply

NAMES = ("A", "B")


class Comparison(Vertical, can_focus=False):
    DEFAULT_CSS = """
    Comparison { height: auto; margin-bottom: 1; }
    Comparison:focus { background-tint: $foreground 5%; }
    Comparison Horizontal { height: auto; }
    Comparison Reply { width: 1fr; border: round $primary-darken-2; padding: 0 1; }
    Comparison Reply.-chosen { border: round $success; }
    Comparison Reply.-rejected { color: $text-muted; }
    """

    BINDINGS = [Binding("a,left", "pick(0)", "A is better"),
                Binding("b,right", "pick(1)", "B is better"),
                Binding("n", "pick(-1)", "Neither")]

    @dataclass
    class Picked(Message):
        comparison: Comparison
        choice: int | None  # 0 for A, 1 for B, None for neither

    def __init__(self, sent: Text, titles: tuple[str, str], grow_by: int = 1, **kwargs):
        """sent: the prompt as the transcript shows it; titles: how each reply is drawn."""
        super().__init__(**kwargs)
        self.sent = sent
        self.replies = tuple(Reply(Text(), grow_by=grow_by) for _ in NAMES)
        for name, reply, title in zip(NAMES, self.replies, titles, strict=True):
            reply.border_title = plain(f"{name}: {title}")
        self.texts = ["", ""]  # each reply's text, as generated
        self.choice: int | None = None  # once picked
        self.state = "writing"  # then "ready" (to pick), "picked", or "dropped"

    def compose(self) -> ComposeResult:
        yield Static(self.sent)
        with Horizontal():
            yield from self.replies

    def append(self, which: int, text: str) -> bool:
        self.texts[which] += text
        return self.replies[which].append(plain(text))

    def ready(self) -> None:
        """Both replies are written: ask for the choice."""
        for reply in self.replies:
            reply.finish()
        self.state = "ready"
        self.can_focus = True
        self.focus()

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return self.state == "ready" if action == "pick" else True

    def action_pick(self, choice: int) -> None:
        self.post_message(self.Picked(self, None if choice < 0 else choice))

    def picked(self, choice: int | None) -> None:
        """Show the choice made: the better reply marked, the other dimmed; or both, for
        neither."""
        self.state, self.choice, self.can_focus = "picked", choice, False
        for i, reply in enumerate(self.replies):
            better = i == choice
            reply.set_class(better, "-chosen")
            reply.set_class(not better, "-rejected")
            mark = "better" if better else ("neither" if choice is None else "worse")
            reply.border_subtitle = plain(mark)

    def dropped(self, why: str) -> None:
        """Not compared (stopped, failed, or left for another prompt): nothing to pick."""
        self.state, self.can_focus = "dropped", False
        for reply in self.replies:
            reply.finish()
            reply.add_class("-rejected")
            reply.border_subtitle = plain(why)
