"""A chat reply as it streams in: text appended at its end, drawn line by line.

A Static holding the whole reply wraps and draws all of it again at each update: over a
1000-token reply, some 500 times the reply's length. Here the wrapped lines are kept. Word
wrapping is greedy, so text appended at the end cannot move a line break before the start of the
last line: an append wraps the text again from there only, and redraws only the lines from there
on. The lines are Textual's own (Content's wrapping, as a Static holding the same text draws it);
a new width wraps everything once.

Text reaches it as rich Text (minigpt_tui.text): never parsed as markup.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rich.cells import cell_len
from rich.text import Text
from textual.content import Content
from textual.geometry import Region, Size
from textual.selection import Selection
from textual.strip import Strip
from textual.style import Style
from textual.visual import RenderOptions
from textual.widget import Widget

# a word as Rich's word wrapping (which textual.content uses) counts it: spaces, letters, spaces
_SPACES, _WORD = re.compile(r"\s*"), re.compile(r"\S+")


@dataclass
class _Line:
    content: Content  # as wrapped: a line of the screen
    x: int  # where it starts in its paragraph (a line of the text)
    y: int  # its paragraph's number: (x, y) is what a selection of the text counts in


class Reply(Widget):
    DEFAULT_CSS = "Reply { height: auto; }"

    def __init__(self, text: Text, grow_by: int = 1, **kwargs):
        """grow_by: while the reply streams, it grows that many lines at a time (the last ones
        blank until text reaches them): each growth lays out the whole screen again, which
        costs the app more than drawing a line. finish() makes it fit its text."""
        super().__init__(**kwargs)
        self.grow_by = grow_by
        self.text = Text()  # the whole reply, as drawn
        self.wrapped = 0  # characters wrapped so far: what drawing the reply has cost
        self._width = 0  # the width the lines are wrapped at; 0 until the first layout
        self._lines: list[_Line] = []
        self._strips: dict[int, Strip] = {}  # the lines drawn, by number
        self._paragraph = Content()  # the text after the last newline
        self._paragraph_y = 0  # its number
        self._paragraph_line = 0  # its first line
        self._fixed = 0  # the first line that text appended can change: the last one, but
        self._fixed_x = 0  # (where it starts in the paragraph) in a paragraph with a tab
        self.append(text)

    def append(self, text: Text) -> bool:
        """Add text at the end, redrawing the last line and those it becomes; whether that
        made more lines (the reply grew: a transcript scrolls to follow it)."""
        self.text.append_text(text)
        if not self._width:  # not laid out yet: wrapped then
            return True
        first, count, height = self._fixed, len(self._lines), self._height()
        self._add(Content.from_rich_text(text, self.app.console))
        for y in range(first, max(count, len(self._lines))):
            self._strips.pop(y, None)
        if self._height() != height:
            self.refresh(layout=True)
            return True
        self.refresh(Region(0, first, self._width, max(count, len(self._lines)) - first))
        return False

    def finish(self) -> None:
        """The reply is complete: from now on its height is its text's."""
        if self.grow_by != 1:
            self.grow_by = 1
            self.refresh(layout=True)

    def _height(self) -> int:
        """Lines of screen it takes: its text's, rounded up to a multiple of grow_by."""
        return -(-len(self._lines) // self.grow_by) * self.grow_by

    def _add(self, content: Content) -> None:
        for i, part in enumerate(content.split("\n", allow_blank=True)):
            if i:  # a newline: the paragraph is complete, all its lines fixed
                self._wrap_paragraph()
                self._paragraph = Content()
                self._paragraph_y += 1
                self._paragraph_line = self._fixed = len(self._lines)
                self._fixed_x = 0
            self._paragraph += part
        self._wrap_paragraph()

    def _wrap_paragraph(self) -> None:
        """Wrap the paragraph again from its first line that appending may have changed."""
        tabs = "\t" in self._paragraph.plain  # tab stops count from the paragraph's start
        if tabs:
            self._fixed, self._fixed_x = self._paragraph_line, 0
        tail = self._paragraph[self._fixed_x:]
        lines = tail._wrap_and_format(self._width)  # Content.wrap, with where each line starts
        self.wrapped += len(tail)
        del self._lines[self._fixed:]
        self._lines += [_Line(line.content, self._fixed_x + line.x, self._paragraph_y)
                        for line in lines]
        if not tabs:  # next time, from the last line that appending cannot move
            i = len(lines) - 1
            while i and not self._restartable(self._fixed_x + lines[i].x):
                i -= 1
            self._fixed += i
            self._fixed_x += lines[i].x

    def _restartable(self, x: int) -> bool:
        """Whether a line that starts at x in the paragraph starts there whatever follows, and
        wrapping from x draws the lines that wrapping the whole paragraph draws: at a word's
        start, or inside a word folded over lines with more than a line of it left (the rest
        of a word shorter than that would be wrapped as a word that fits, not as a fold)."""
        text = self._paragraph.plain
        if x == 0:
            return True
        if x >= len(text) or text[x].isspace():
            return False
        if text[x - 1].isspace() and x > _SPACES.match(text).end():
            return True  # a word's start (the first word holds the paragraph's leading spaces)
        return cell_len(_WORD.match(text, x).group()) > self._width

    def _wrap_all(self, width: int) -> None:
        self._width, self._lines, self._strips = width, [], {}
        self._paragraph, self._paragraph_y, self._paragraph_line = Content(), 0, 0
        self._fixed = self._fixed_x = 0
        self._add(Content.from_rich_text(self.text, self.app.console))

    # --- what Textual asks -------------------------------------------------------------------------

    def get_content_width(self, container: Size, viewport: Size) -> int:
        return container.width

    def get_content_height(self, container: Size, viewport: Size, width: int) -> int:
        if width != self._width:
            self._wrap_all(width)
        return self._height()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if width != self._width:
            self._wrap_all(width)
        if y >= len(self._lines):
            return Strip.blank(width, self.visual_style.rich_style)
        if y not in self._strips:
            self._strips[y] = self._draw(self._lines[y], width)
        return self._strips[y]

    def _draw(self, line: _Line, width: int) -> Strip:
        content = line.content
        selection = self.text_selection
        if selection is not None and (span := selection.get_span(line.y)) is not None:
            start, end = span
            end = len(content) if end == -1 else end - line.x
            style = Style.from_styles(self.screen.get_component_styles("screen--selection"))
            content = content.stylize(style, max(0, start - line.x), max(0, end))
        # a line wrapped at this width fits it: drawing it wraps nothing
        [strip] = content.render_strips(width, 1, self.visual_style,
                                        RenderOptions(self._get_style, self.styles))
        return strip.apply_offsets(line.x, line.y)

    def get_selection(self, selection: Selection) -> tuple[str, str] | None:
        return selection.extract(self.text.plain), "\n"

    def selection_updated(self, selection: Selection | None) -> None:
        self._strips = {}
        self.refresh()

    def notify_style_update(self) -> None:
        super().notify_style_update()
        self._strips = {}
