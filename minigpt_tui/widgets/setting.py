"""One line of a form: a setting's name, then the widget that holds its value (the Chat pane's
sampling settings, the Ablate pane's form; laid out by .setting in app.tcss)."""

from __future__ import annotations

from textual.containers import Horizontal
from textual.widget import Widget
from textual.widgets import Label

from minigpt_tui.text import plain


def labelled(label: str, widget: Widget, tooltip: str | None = None) -> Horizontal:
    """The setting's line: label, then widget, with the tooltip (plain text) on the widget."""
    widget.tooltip = plain(tooltip) if tooltip else None
    return Horizontal(Label(label, classes="setting-label"), widget, classes="setting")
