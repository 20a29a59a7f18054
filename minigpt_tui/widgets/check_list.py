"""A SelectionList whose boxes read as ticked or empty without colour, with headings between its
groups.

Textual draws the same "X" in every box and tells them apart by colour alone, which is lost with
NO_COLOR and in some terminals over SSH; here an unselected box is drawn empty.

A heading (CheckList.heading) is a line of its own without a box: the cursor passes over it, and
it is never among the selected values, select_all() or not.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.segment import Segment
from rich.text import Text
from textual.strip import Strip
from textual.widgets import OptionList, SelectionList
from textual.widgets._toggle_button import ToggleButton
from textual.widgets.option_list import OptionDoesNotExist
from textual.widgets.selection_list import Selection


@dataclass(frozen=True)
class Heading:
    """A heading's value: never a value of the list's choices."""

    text: str


class CheckList(SelectionList):
    DEFAULT_CSS = """
    CheckList > .option-list--option-disabled { color: $text-accent; text-style: bold; }
    """

    @staticmethod
    def heading(text: str) -> Selection:
        """A heading to put among the options: text, in a line of its own."""
        return Selection(Text(text), Heading(text), disabled=True)

    def _select(self, value) -> bool:
        return False if isinstance(value, Heading) else super()._select(value)

    def _toggle(self, value) -> bool:
        return False if isinstance(value, Heading) else super()._toggle(value)

    def scroll_to_highlight(self, top: bool = False) -> None:
        """The highlighted option in view, and the heading above it where it is its group's
        first: home, or up to a group's first, shows what the group is. (An option is a line,
        as render_line reads them.)"""
        super().scroll_to_highlight(top)
        above = (self.highlighted or 0) - 1
        if above >= 0 and isinstance(self.get_option_at_index(above).value, Heading) \
                and self.scroll_offset.y > above:
            self.scroll_to(y=above, animate=False, immediate=True)

    def render_line(self, y: int) -> Strip:
        _, scroll_y = self.scroll_offset
        try:
            option = self.get_option_at_index(scroll_y + y)
        except OptionDoesNotExist:
            return super().render_line(y)
        if isinstance(option.value, Heading):  # the prompt alone, where the box would start
            line = OptionList.render_line(self, y)
            return line.extend_cell_length(self.scrollable_content_region.width)
        strip = super().render_line(y)
        segments = list(strip)
        if option.value not in self.selected and len(segments) > 1 \
                and segments[1].text == ToggleButton.BUTTON_INNER:
            segments[1] = Segment(" ", segments[1].style)
        return Strip(segments, strip.cell_length)
