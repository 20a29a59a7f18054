"""The built-in corpus: English prose that ships with every Python, so training needs no network
and no file. The language reference in `pydoc_data.topics`, then the longer docstrings of the
standard library's top-level modules (about 1.2 MB; it varies a little between Python versions).
"""

from __future__ import annotations

import ast
import sysconfig
from pathlib import Path

BUILTIN = "builtin"  # its name as --data takes it


def builtin_files() -> list[Path]:
    """The files the built-in corpus is made from: its identity, without parsing them."""
    import pydoc_data.topics

    stdlib = Path(sysconfig.get_paths()["stdlib"])
    return [Path(pydoc_data.topics.__file__), *sorted(stdlib.glob("*.py"))]


def builtin_text() -> str:
    import pydoc_data.topics

    parts = [pydoc_data.topics.topics[name] for name in sorted(pydoc_data.topics.topics)]
    for path in builtin_files()[1:]:
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
                doc = ast.get_docstring(node)
                if doc and len(doc) > 200:  # short docstrings are mostly one-liners, not prose
                    parts.append(doc)
    return "\n\n".join(parts)
