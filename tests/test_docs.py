"""The documentation is current: the README's picture of the TUI was made from the TUI's code as
it is now (scripts/screenshot.py records a fingerprint of that code in the SVG)."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _screenshot_script():
    """scripts/screenshot.py as a module: the fingerprint is defined once, there."""
    spec = importlib.util.spec_from_file_location("screenshot", ROOT / "scripts" / "screenshot.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tui_picture_is_current():
    script = _screenshot_script()
    picture = ROOT / "docs" / "tui.svg"
    if not picture.is_file():
        pytest.fail("docs/tui.svg is missing: run python scripts/screenshot.py", pytrace=False)
    recorded = script.recorded_fingerprint(picture.read_text(encoding="utf-8"))
    if recorded != script.tui_fingerprint(ROOT):
        pytest.fail("docs/tui.svg is older than the TUI's code: run python scripts/screenshot.py",
                    pytrace=False)


def test_readme_shows_the_picture():
    assert "docs/tui.svg" in (ROOT / "README.md").read_text(encoding="utf-8")


def _anchors(page: Path) -> set[str]:
    """The anchors GitHub gives a Markdown page's headings: lower case, punctuation dropped,
    spaces as hyphens."""
    text = re.sub(r"```.*?```", "", page.read_text(encoding="utf-8"), flags=re.S)
    return {re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
            for heading in re.findall(r"^#+ (.+)$", text, flags=re.M)}


@pytest.mark.parametrize("page", ["README.md", *sorted(
    p.relative_to(ROOT).as_posix() for p in (ROOT / "docs").glob("*.md"))])
def test_links_lead_somewhere(page):
    """Every relative link in the README and docs/ names a file or folder of the repository,
    and a heading of the page it names where it names one."""
    source = ROOT / page
    missing = []
    for target in re.findall(r"\]\(([^)\s]+)\)", source.read_text(encoding="utf-8")):
        if re.match(r"[a-z]+:", target):  # a web address
            continue
        path, _, anchor = target.partition("#")
        linked = source.parent / path if path else source
        if not linked.exists() or (anchor and linked.suffix == ".md"
                                   and anchor not in _anchors(linked)):
            missing.append(target)
    assert not missing, f"{page} links to what is not there: {', '.join(missing)}"


def test_the_docs_list_of_switches_is_made_from_the_table():
    """docs/inspect-and-ablate.md's table of switches is the one scripts/switch_table.py makes
    from minigpt/model/switches.py: a switch added there and not to the page fails here."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("switch_table", ROOT / "scripts" / "switch_table.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    text = (ROOT / "docs" / "inspect-and-ablate.md").read_text(encoding="utf-8")
    shown = text[text.index(script.BEGIN) + len(script.BEGIN):text.index(script.END)]
    assert shown == f"\n{script.table()}\n", \
        "docs/inspect-and-ablate.md's switches are not the table's: run python scripts/switch_table.py"

