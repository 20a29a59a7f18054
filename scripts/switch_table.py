"""Write the switches' table into docs/inspect-and-ablate.md, from model/switches.py: the docs'
list of switches is made from the one table, never kept by hand (tests/test_docs.py checks it).

    python scripts/switch_table.py          # rewrite the table in the page
    python scripts/switch_table.py --check  # exit 1 if the page's table is not the current one
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

PAGE = ROOT / "docs" / "inspect-and-ablate.md"
BEGIN = "<!-- switches: made by scripts/switch_table.py from minigpt/model/switches.py -->"
END = "<!-- end of the switches -->"


def shown(value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if value is None:
        return "as n_head"
    return f"{value:g}" if isinstance(value, float) else str(value)


def held(switch, fmt: str) -> str:
    """The values a format's folder holds, as the table says them."""
    values = switch.values or ()
    if not values:
        return "any" if switch.exportable(object(), fmt) else shown(switch.gpt2) if \
            switch.exportable(switch.gpt2, fmt) else "no"
    kept = [shown(v) for v in values if switch.exportable(v, fmt)]
    return " or ".join(kept) if len(kept) < len(values) else "any"


def table() -> str:
    from minigpt.model.switches import COMBINATIONS, SWITCHES

    rows = ["| switch | GPT-2 | `train` option | ablate variants | what it is | GPT-2 folder "
            "| Llama folder |", "| --- | --- | --- | --- | --- | --- | --- |"]
    for s in SWITCHES:
        bar = "\\|"  # a | inside a Markdown table cell
        option = s.option if not s.values or isinstance(s.gpt2, bool) else \
            f"{s.option} {bar.join(s.values)}"
        groups = dict.fromkeys(v.group or v.name for v in s.variants)
        variants = ", ".join(f"`{name}`" for name in groups)
        rows.append(f"| {s.name} | {shown(s.gpt2)} | `{option}` | {variants} | {s.meaning} | "
                    f"{held(s, 'gpt2')} | {held(s, 'llama')} |")
    combos = "\n".join(f"- `{v.name}`: {v.description}" for v in COMBINATIONS)
    return "\n".join(rows) + "\n\nSets of switches (ablate variants, and `train --variant`):\n\n" + combos


def main() -> int:
    text = PAGE.read_text(encoding="utf-8")
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    current = f"\n{table()}\n"
    if "--check" in sys.argv:
        return 0 if text[start:end] == current else 1
    PAGE.write_text(text[:start] + current + text[end:], encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
