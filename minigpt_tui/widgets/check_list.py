"""A SelectionList whose boxes read as ticked or empty without colour.

Textual draws the same "X" in every box and tells them apart by colour alone, which is lost with
NO_COLOR and in some terminals over SSH; here an unselected box is drawn empty.
"""

from __future__ import annotations

from rich.segment import Segment
from textual.strip import Strip
from textual.widgets import SelectionList
from textual.widgets._toggle_button import ToggleButton
from textual.widgets.option_list import OptionDoesNotExist


class CheckList(SelectionList):
    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        _, scroll_y = self.scroll_offset
        try:
            option = self.get_option_at_index(scroll_y + y)
        except OptionDoesNotExist:
            return strip
        segments = list(strip)
        if option.value not in self.selected and len(segments) > 1 \
                and segments[1].text == ToggleButton.BUTTON_INNER:
            segments[1] = Segment(" ", segments[1].style)
        return Strip(segments, strip.cell_length)
