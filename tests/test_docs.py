"""The documentation is current: the README's picture of the TUI was made from the TUI's code as
it is now (scripts/screenshot.py records a fingerprint of that code in the SVG)."""

from __future__ import annotations

import importlib.util
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

