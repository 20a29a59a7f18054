"""What a widget shows, as text."""

from __future__ import annotations


def shown_lines(widget) -> list[str]:
    """The widget's lines as they are on the screen (scrolled into view or not)."""
    return ["".join(segment.text for segment in widget.render_line(y)).rstrip()
            for y in range(widget.size.height)]


def shown(app, selector: str) -> str:
    """What the widget the selector names on the app's screen draws, as one string."""
    return str(app.query_one(selector).render())
