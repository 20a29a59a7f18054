"""What `minigpt inspect` prints (Rich): a head's attention as a heatmap, the overview of every
head, and the logit-lens table, each fitted to the terminal's width (80 columns and up).

Token texts come from the model and the user: they are put on screen as rich Text, never parsed
as markup, with spaces, newlines and control characters drawn as visible symbols. Intensity is a
character as well as a colour, so the heatmap reads the same with NO_COLOR.
"""

from __future__ import annotations

import math

from rich.cells import cell_len
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from minigpt.infer.inspect import HEAD_KINDS, Inspection

RAMP = " .:-=+*#%@"  # exactly 0 (above the diagonal), then up to 1 in nine steps
KIND_LETTER = {"induction": "I", "previous": "P", "first": "F", "current": "C"}
KIND_STYLE = {"induction": "bold magenta", "previous": "bold cyan", "first": "bold yellow",
              "current": "bold green"}
KIND_WORDS = {"induction": "induction", "previous": "previous-token", "first": "first-token",
              "current": "current-token"}

SELECTED_MARK = "◂"  # after the letter of the head the heatmap draws, in the overview

# a token as a label: one line, every character visible
_VISIBLE = {0x20: "·", 0x0A: "↵", 0x09: "⇥", 0x7F: "␡"}
_VISIBLE |= {c: chr(0x2400 + c) for c in range(0x20) if c not in _VISIBLE}  # ␀ .. ␟
_VISIBLE |= {c: "\ufffd" for c in range(0x80, 0xA0)}  # C1 controls


def token_label(text: str) -> str:
    """A token's text on one line with nothing invisible: '·' for a space, '↵' for a newline,
    the Unicode control pictures (␛, ...) for control characters; '∅' for no text at all."""
    return text.translate(_VISIBLE) or "∅"


def fit(text: str, width: int, style: str = "") -> Text:
    """A label cut (with …) or padded to exactly `width` cells."""
    label = Text()
    label.append(text, style=style)  # a span, not the base style: what is appended later keeps its own
    label.truncate(width, overflow="ellipsis", pad=True)
    return label


def level(p: float) -> int:
    """0 for exactly 0, else 1..9: any weight at all shows."""
    return min(9, math.ceil(p * 9)) if p > 0 else 0


def _ramp_style(k: int) -> str:
    """From dark blue (level 1) to yellow (level 9)."""
    t = (k - 1) / 8 if k else 0.0
    r, g, b = (round(a + (z - a) * t) for a, z in ((40, 255), (60, 215), (140, 40)))
    return f"rgb({r},{g},{b})"


RAMP_STYLES = [_ramp_style(k) for k in range(10)]


# --- the heatmap ---------------------------------------------------------------------------------


def heatmap(insp: Inspection, layer: int, head: int, width: int = 80) -> tuple[Text, str | None]:
    """The head's attention, one row per query token and one column (2 cells) per key token, with
    the tokens as labels; and, for a prompt wider than `width`, a note on what was left out.

    A long prompt shows its last positions, and the first column (where idle heads attend) before a
    '…' column."""
    pattern = insp.attention[layer, head]
    T = len(insp.ids)
    pos_width = len(str(T - 1))
    label_width = pos_width + 1 + 8
    fits = max(4, (width - label_width - 1) // 2)
    note = None
    if T <= fits:
        rows = cols = list(range(T))
    else:
        rows = list(range(T - (fits - 2), T))
        cols = [0, None, *rows]  # None: the gap
        note = (f"{T} tokens: rows show positions {rows[0]}-{T - 1}, columns 0 and "
                f"{rows[0]}-{T - 1} (a wider terminal shows more; --json has every position)")
    labels = [token_label(t) for t in insp.tokens]

    lines = []
    height = min(6, max(len(labels[j]) for j in cols if j is not None))
    for k in range(height):  # the key tokens written downwards, one character a line
        line = Text(" " * (label_width + 1))
        for j in cols:
            chars = "…" if j is None and k == 0 else "" if j is None else labels[j]
            if len(chars) > height and k == height - 1:
                piece = "…"
            else:
                piece = chars[k] if k < len(chars) else ""
            line.append(piece + " " * (2 - cell_len(piece)), style="bold")
        lines.append(line)
    for i in rows:
        line = Text.assemble((f"{i:>{pos_width}} ", "dim"))
        line.append_text(fit(labels[i], 8, "bold"))
        line.append(" ")
        for j in cols:
            if j is None:
                line.append("… ", style="dim")
                continue
            k = level(pattern[i, j].item())
            line.append(RAMP[k] * 2, style=RAMP_STYLES[k])
        lines.append(line)
    return Text("\n").join(lines), note


def chosen_head(insp: Inspection, layer: int | None = None,
                head: int | None = None) -> tuple[int, int, str]:
    """The head to draw: the one asked for; where --layer or --head is left out, the head that
    stands out most among those the other allows (an induction head first, in HEAD_KINDS's
    order), else the first of them; and why that one."""
    allowed = [m for m in insp.heads
               if (layer is None or m.layer == layer) and (head is None or m.head == head)]
    if layer is not None and head is not None:
        return layer, head, "asked for"
    for kind in HEAD_KINDS:
        found = [m for m in allowed if m.kind == kind]
        if found:
            best = max(found, key=lambda m: getattr(m, kind))
            return best.layer, best.head, f"the strongest {KIND_WORDS[kind]} head"
    return allowed[0].layer, allowed[0].head, "no head stands out"


# --- the overview of every head ------------------------------------------------------------------


def head_overview(insp: Inspection, width: int = 80,
                  selected: tuple[int, int] | None = None) -> tuple[Group, Group]:
    """One cell per (layer, head): a letter for the kind of head it stands out as, and its attention
    entropy (the grid, not to be wrapped); then the heads of each kind, strongest first, and a
    legend (lines that may wrap). The `selected` (layer, head), the one the heatmap draws, is
    marked with '◂' after its letter (and in reverse video), so it shows without colour too."""
    wide = 4 + insp.n_head * 5 <= width  # room for the entropy beside the letter
    cell = 5 if wide else 2
    header = Text("    ")
    for h in range(insp.n_head):
        header.append(f"H{h}".ljust(cell)[:cell], style="bold")
    lines = [header]
    for layer in range(insp.n_layer):
        line = Text.assemble((f"L{layer}".ljust(4), "bold"))
        for h in range(insp.n_head):
            m = insp.head_measures(layer, h)
            letter = KIND_LETTER.get(m.kind, "·")
            chosen = (layer, h) == selected
            line.append(letter, style=KIND_STYLE.get(m.kind, "dim") + (" reverse" if chosen else ""))
            line.append(f"{m.entropy:.1f}" if wide else "", style="" if m.kind else "dim")
            line.append(SELECTED_MARK if chosen else " ", style="bold" if chosen else "")
        lines.append(line)
    grid, lines = Group(*lines), []
    for kind in HEAD_KINDS:
        found = sorted((m for m in insp.heads if m.kind == kind),
                       key=lambda m: getattr(m, kind), reverse=True)
        if found:
            shown = ", ".join(f"L{m.layer}H{m.head} {getattr(m, kind):.0%}" for m in found[:8])
            more = f" and {len(found) - 8} more" if len(found) > 8 else ""
            lines.append(Text.assemble((f"{KIND_LETTER[kind]} {KIND_WORDS[kind]}: ",
                                        KIND_STYLE[kind]), shown + more))
    legend = ("P F C: at least half the attention on the previous, first or current token; "
              "I: at least 40% on the token after the current one's earlier occurrence (on a "
              "repeated random sequence)")
    if wide:
        legend += "; the number: attention entropy in nats (0: one place)"
    if selected is not None:
        legend += f"; {SELECTED_MARK}: the head drawn (layer {selected[0]} head {selected[1]})"
    lines.append(Text(legend, style="dim"))
    return grid, Group(*lines)


# --- the logit lens ------------------------------------------------------------------------------


LENS_CELL = 7  # the width of a position's column


def lens_fits(width: int) -> int:
    """How many positions the logit-lens table shows at this width (the last ones)."""
    return max(1, (width - 4) // (LENS_CELL + 1))


def lens_table(insp: Inspection, width: int = 80) -> tuple[Table, str | None]:
    """Layers down, positions across (the last that fit): the top token after each layer, and the
    probability that layer gives the token that really came next (✓ where it is the top one)."""
    T = len(insp.ids)
    cell = LENS_CELL
    cols = list(range(max(insp.lens_from, T - lens_fits(width)), T))
    note = None
    if len(cols) < T:
        note = (f"positions {cols[0]}-{T - 1} of {T} (a wider terminal shows more; --json has "
                f"every position)")
    table = Table(box=None, padding=(0, 1, 0, 0), pad_edge=False, show_edge=False)
    table.add_column("", width=3, no_wrap=True)
    for j in cols:
        then = token_label(insp.tokens[j + 1]) if j + 1 < T else "?"
        header = fit(token_label(insp.tokens[j]), cell, "bold")
        header.append("\n")
        header.append_text(fit("→" + then, cell, "dim"))
        table.add_column(header, width=cell, no_wrap=True)
    for layer in range(insp.n_layer):
        cells = []
        for j in cols:
            top = insp.lens_top[layer, j].item()
            hit = j + 1 < T and top == insp.ids[j + 1]
            label = fit(token_label(insp.lens_top_text[layer][j]), cell,
                        "bold green" if hit else "")
            label.append("\n")
            if j + 1 < T:
                label.append(percent(insp.lens_next_prob[layer, j].item()) + (" ✓" if hit else ""),
                             style="green" if hit else "dim")
            else:
                label.append("-", style="dim")
            cells.append(label)
        table.add_row(Text(f"L{layer}", style="bold"), *cells)
    return table, note


def percent(p: float) -> str:
    return "<1%" if p < 0.005 else f"{p:.0%}"


# --- all of it -----------------------------------------------------------------------------------


def print_inspection(insp: Inspection, console: Console, layer: int | None = None,
                     head: int | None = None) -> None:
    width = console.width
    T = len(insp.ids)
    title = f"{T} tokens"
    if insp.cut:
        title += f" (the last {T} of {T + insp.cut}: the context is {T} tokens)"
    console.print(Text.assemble(("prompt: ", "bold"), title, f"; {insp.n_layer} layers x "
                                f"{insp.n_head} heads"))
    if insp.n_head == 0:
        console.print(Text("this model has no attention (an ablation): no heatmap or head "
                           "overview", style="yellow"))
    else:
        layer, head, why = chosen_head(insp, layer, head)
        m = insp.head_measures(layer, head)
        console.print()
        console.print(Text.assemble(
            (f"attention of layer {layer} head {head}", "bold"), f" ({why})\n",
            (f"each row attends to the columns, '{RAMP[1]}' a little ... '{RAMP[-1]}' all; "
             "--layer/--head pick a head", "dim")))
        grid, note = heatmap(insp, layer, head, width)
        console.print(grid, no_wrap=True, crop=True)
        if note:
            console.print(Text(note, style="dim"))
        measures = (f"entropy {m.entropy:.2f} nats, mean distance {m.distance:.1f} tokens, "
                    f"previous {m.previous:.0%}, first {m.first:.0%}, current {m.current:.0%}")
        if m.induction is not None:
            measures += f", induction {m.induction:.0%}"
        console.print(Text(measures, style="dim"))
        console.print()
        console.print(Text("every head", style="bold"))
        grid, legend = head_overview(insp, width, selected=(layer, head))
        console.print(grid, no_wrap=True, crop=True)
        console.print(legend)
    console.print()
    console.print(Text.assemble(("logit lens", "bold"), ": the top token after each layer, and "
                                "the probability of the real next token"))
    table, note = lens_table(insp, width)
    console.print(table, no_wrap=True, crop=True)
    if note:
        console.print(Text(note, style="dim"))
