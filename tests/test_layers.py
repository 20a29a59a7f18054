"""The package's layers: what each folder may import. Read from the source, in this process: an
import graph, not a child process that imports and looks."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "minigpt"


def module_imports(path: Path) -> set[str]:
    """The modules a file imports when it is imported: its top-level imports (those inside a
    function wait for the call), `if TYPE_CHECKING` blocks left out."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = set()
    for node in tree.body:
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def file_of(module: str) -> Path | None:
    parts = module.split(".")
    if parts[0] != "minigpt":
        return None
    base = PACKAGE.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def loaded_by(module: str) -> set[str]:
    """Every module importing `module` loads, following minigpt's own (packages' __init__
    included); modules outside minigpt are listed, not followed."""
    seen, todo = set(), [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        parts = name.split(".")
        for i in range(1, len(parts)):  # a module's packages are imported first
            todo.append(".".join(parts[:i]))
        path = file_of(name)
        if path is not None:
            todo.extend(module_imports(path))
    return seen


@pytest.mark.parametrize("module", ["minigpt.runs.events", "minigpt.runs.files", "minigpt.runs.log",
                                    "minigpt.runs.state", "minigpt.runs.control"])
def test_the_run_contract_is_read_without_torch(module):
    """Whatever follows a run (the TUI, a script, `tui --attach`) reads it without torch's 1.5 s."""
    assert not {m for m in loaded_by(module) if m.split(".")[0] in ("torch", "numpy")}


@pytest.mark.parametrize("module", ["minigpt.model.config", "minigpt.model.switches",
                                    "minigpt.train.config", "minigpt.infer.config", "minigpt.rules",
                                    "minigpt.units", "minigpt.cli.app"])
def test_what_the_command_line_reads_first_needs_no_torch(module):
    assert "torch" not in {m.split(".")[0] for m in loaded_by(module)}
