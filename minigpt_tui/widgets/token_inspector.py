"""The "next token" view: for a generated token, the candidates the model weighed and their
probabilities (the distribution it was drawn from, after temperature and filtering).

Focus it (Tab) and move with left / right, home / end; by default it follows the newest token.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.text import Text
from textual.binding import Binding
from textual.reactive import reactive
from textual.widget import Widget


@dataclass
class Candidates:
    chosen: str  # the token's text
    options: list[tuple[str, float]]  # (token text, probability), most likely first


def shown(token: str) -> str:
    return repr(token)[1:-1] if token.strip() != token or not token.isprintable() else token


TOKEN_CELLS = 10  # the widest a candidate's token is drawn


class TokenInspector(Widget, can_focus=True):
    BINDINGS = [
        Binding("left", "move(-1)", "Prev token"),
        Binding("right", "move(1)", "Next token"),
        Binding("home", "first", "First", show=False),
        Binding("end", "last", "Last", show=False),
    ]

    selected: reactive[int] = reactive(-1)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.tokens: list[Candidates] = []
        self.follow = True  # track the newest token until the user moves

    def clear(self) -> None:
        self.tokens = []
        self.follow = True
        self.selected = -1
        self.refresh()

    def extend(self, tokens: list[Candidates]) -> None:
        """Add tokens; the view stays as it is until show() (a reply streaming fast shows its
        newest token once in a while, not at every batch)."""
        self.tokens.extend(tokens)

    def show(self) -> None:
        """Draw the newest token where the view follows them."""
        if self.follow and self.tokens:
            self.selected = len(self.tokens) - 1
        self.refresh()

    def action_move(self, delta: int) -> None:
        if self.tokens:
            self.follow = False
            self.selected = max(0, min(len(self.tokens) - 1, self.selected + delta))

    def action_first(self) -> None:
        self.follow = False
        self.selected = 0 if self.tokens else -1

    def action_last(self) -> None:
        self.follow = True
        self.selected = len(self.tokens) - 1

    def render(self):
        if not self.tokens or self.selected < 0:
            return Text("next token: candidates appear as the model writes", style="dim")
        entry = self.tokens[self.selected]
        view = Text(f"token {self.selected + 1}/{len(self.tokens)}: ", no_wrap=True)
        view.append(shown(entry.chosen), style="bold")
        # one line a candidate: the token (at most TOKEN_CELLS wide), its probability, a bar;
        # laid out here, not by a Rich Table, which measures every cell at each redraw
        tokens = [Text(shown(token)) for token, _ in entry.options]
        width = min(TOKEN_CELLS, max(t.cell_len for t in tokens))
        for text, (token, p) in zip(tokens, entry.options, strict=True):
            text.truncate(width, overflow="ellipsis", pad=True)
            if token == entry.chosen:
                text.stylize("bold reverse")
            view.append("\n")
            view.append_text(text)
            view.append(f" {p:6.1%} " + "█" * round(p * 10))
        return view
