"""Text that did not come from this code (samples, replies, tokens, paths, fields of events.jsonl,
error messages) reaches the screen only as rich Text built here: never parsed as markup, so
`[/]` or `[@click=...]` in a sample is drawn as it is, and with control characters drawn as
symbols, so an escape sequence in a model's output cannot steer the terminal.

Styles come from this code only: assemble("step ", (str(step), "bold")), never f"[b]{x}[/b]".
A notification carries a plain string: notify(clean(message), markup=False).
"""

from __future__ import annotations

from rich.text import Text

# C0 controls but tab and newline, as the Unicode symbols for them (␛ for ESC); DEL; C1 controls
_CONTROLS = {c: 0x2400 + c for c in range(0x20) if c not in (0x09, 0x0A)}
_CONTROLS |= {0x7F: 0x2421} | {c: 0xFFFD for c in range(0x80, 0xA0)}


def clean(text: str) -> str:
    """The text with control characters replaced one for one by visible symbols."""
    return text.translate(_CONTROLS)


def plain(text: str, style: str = "") -> Text:
    """Text shown exactly as it is, in one style."""
    return Text(clean(text), style=style)


def assemble(*parts: str | tuple[str, str]) -> Text:
    """Text from pieces, each a string or (string, style): Text.assemble, with control
    characters made visible."""
    return Text.assemble(*(clean(p) if isinstance(p, str) else (clean(p[0]), p[1])
                           for p in parts))


def sent_text(sent: str, templated: bool) -> Text:
    """A prompt as the Chat pane's transcript shows it: a user's turn, with the assistant's
    answer to follow it; or, for a model without the chat template, the text it continues."""
    if not templated:
        return plain(sent, "bold")
    return assemble(("user: ", "bold cyan"), (sent, "bold"), "\n", ("assistant: ", "bold magenta"))
