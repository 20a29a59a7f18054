"""Make docs/tui.svg, the README's picture of the TUI, from a real short run.

    python scripts/screenshot.py

Trains a tiny model on the built-in corpus in a temporary folder (`minigpt train`, a child
process, as the TUI itself starts runs), opens the TUI headless on that finished run, waits until
the Train pane shows it finished, and saves Textual's own SVG screenshot of the screen.

The SVG records a fingerprint of the TUI's code (every minigpt_tui/**/*.py and *.tcss file, its
path and bytes) in an XML comment, so that tests/test_docs.py can tell when the picture is older
than the code. Only the TUI's public API is used here (MinigptApp, and the Train pane found by
its class name), so the script keeps working when the TUI's modules move.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import html
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SVG = ROOT / "docs" / "tui.svg"
SIZE = (100, 32)  # columns, rows
MARK = "minigpt-tui-code"
STEPS = 300
TIMEOUT = 120.0  # seconds for the TUI to show the finished run


def tui_fingerprint(root: Path = ROOT) -> str:
    """sha256 over every minigpt_tui/**/*.py and *.tcss file: its path relative to the
    repository, then its bytes, in sorted order of the paths."""
    package = root / "minigpt_tui"
    files = sorted((p.relative_to(root).as_posix(), p) for p in package.rglob("*")
                   if p.suffix in (".py", ".tcss") and p.is_file())
    digest = hashlib.sha256()
    for name, path in files:
        data = path.read_bytes()
        digest.update(f"{name}\0{len(data)}\0".encode())
        digest.update(data)
    return digest.hexdigest()


def recorded_fingerprint(svg: str) -> str | None:
    """The fingerprint an SVG made by this script records, or None."""
    found = re.search(rf"<!-- {MARK}: ([0-9a-f]{{64}}) -->", svg)
    return found.group(1) if found else None


def with_fingerprint(svg: str, fingerprint: str) -> str:
    """The SVG with the fingerprint as an XML comment before its root element."""
    return f"<!-- {MARK}: {fingerprint} -->\n{svg}"


def train(run_dir: Path) -> None:
    """A real run, as `minigpt train` makes it, of this checkout's code."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]))
    command = [sys.executable, "-m", "minigpt", "train", "--preset", "tiny", "--steps",
               str(STEPS), "--data", "builtin", "--out", str(run_dir), "-q"]
    done = subprocess.run(command, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        sys.exit(f"minigpt train failed ({done.returncode}): {done.stderr.strip()}")


def screen_text(svg: str) -> str:
    """The text drawn in a Rich SVG: enough to check what the screen shows."""
    runs = re.findall(r"<text [^>]*>(.*?)</text>", svg)
    return html.unescape(" ".join(runs)).replace("\xa0", " ")


async def screenshot(run_dir: Path) -> str:
    from minigpt_tui.app import MinigptApp

    app = MinigptApp(attach=run_dir, runs_root=run_dir.parent)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one("TrainPane")  # by class name: wherever its module lives
        deadline = time.monotonic() + TIMEOUT

        def shown() -> bool:
            """The pane's run finished, its title says so, and the last sample is drawn."""
            state = getattr(pane, "state", None)
            if state is None or state.status != "finished":
                return False
            text = screen_text(app.export_screenshot())
            return "finished" in text and "(a sample appears" not in text

        while not shown():
            if time.monotonic() > deadline:
                sys.exit(f"the Train pane did not show the finished run within {TIMEOUT:.0f} s")
            await pilot.pause(0.1)
        await pilot.pause()  # one more frame, so the loss chart has drawn its last points
        return app.export_screenshot(title="minigpt tui")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=SVG, help=f"default: {SVG.relative_to(ROOT)}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="minigpt-screenshot-") as tmp:
        run_dir = Path(tmp) / "run"
        print(f"training a tiny model for {STEPS} steps on the built-in corpus ...")
        train(run_dir)
        svg = asyncio.run(screenshot(run_dir))
    if tmp in svg:
        sys.exit("the picture shows the temporary folder's path: not saved")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(with_fingerprint(svg, tui_fingerprint()), encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
