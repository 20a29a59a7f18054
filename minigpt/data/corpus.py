"""Corpora: where text comes from, how it becomes train/validation tokens, and batches.

A corpus is named by a string:
- "builtin" (the default): English prose that ships with every Python, so it needs no network
  and no file: the language reference in `pydoc_data.topics` plus the longer docstrings of the
  standard library's top-level modules (about 1.1 MB; it varies a little between Python versions).
- a UTF-8 text file, or a folder (every *.txt below it, in sorted order, joined by blank lines);
- an http(s) URL, downloaded once into the cache folder (~/.cache/minigpt, or $MINIGPT_CACHE).
"""

from __future__ import annotations

import ast
import hashlib
import os
import sysconfig
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from minigpt.errors import DataError

BUILTIN = "builtin"


@dataclass
class Corpus:
    text: str
    source: str  # "builtin", a URL, or a file or folder's absolute path (resume finds it anywhere)
    description: str  # for people: "builtin (Python 3.11 docs, 1.1 MB)", "3 files in poems/"


def load_corpus(source: str | None = None) -> Corpus:
    source = source or BUILTIN
    if source == BUILTIN:
        text = builtin_text()
        return Corpus(text, BUILTIN, f"builtin: Python's reference and docstrings, {_size(text)}")
    if source.startswith(("http://", "https://")):
        path = download(source)
        text = read_utf8(path)
        return Corpus(_non_empty(text, source), source, f"{source}, {_size(text)}")
    path = Path(source).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*.txt") if p.is_file())
        if not files:
            raise DataError(f"no .txt files in folder {source}")
        text = "\n\n".join(read_utf8(p) for p in files)
        return Corpus(_non_empty(text, source), str(path.resolve()),
                      f"{len(files)} .txt files in {source}, {_size(text)}")
    if path.is_file():
        text = read_utf8(path)
        return Corpus(_non_empty(text, source), str(path.resolve()), f"{source}, {_size(text)}")
    if path.exists():
        raise DataError(f"not a file or folder: {source}")
    raise DataError(f"no such file or folder: {source}")


def builtin_files() -> list[Path]:
    """The files the built-in corpus is made from: its identity, without the 2 s of parsing."""
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


def read_utf8(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise DataError(
            f"{path} is not valid UTF-8: byte 0x{data[e.start]:02x} at offset {e.start} (line {line})"
        ) from None


def _non_empty(text: str, source: str) -> str:
    if not text.strip():
        raise DataError(f"{source} has no text")
    return text


def _size(text: str) -> str:
    n = len(text.encode("utf-8"))
    return f"{n / 1e6:.1f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"


def cache_dir() -> Path:
    """$MINIGPT_CACHE, else ~/.cache/minigpt (an empty $MINIGPT_CACHE counts as unset: as a
    path it would be the current folder)."""
    return Path(os.environ.get("MINIGPT_CACHE") or Path.home() / ".cache" / "minigpt")


def download(url: str) -> Path:
    """Fetch url into the cache once (atomically, with a progress bar); later calls reuse the file."""
    from rich.progress import DownloadColumn, Progress, TransferSpeedColumn

    name = url.rstrip("/").rsplit("/", 1)[-1] or "index"
    digest = hashlib.sha256(url.encode()).hexdigest()[:12]
    dest = cache_dir() / "downloads" / f"{digest}-{name}"
    if dest.exists():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with Progress(*Progress.get_default_columns(), DownloadColumn(), TransferSpeedColumn(),
                          transient=True) as progress, open(partial, "wb") as out:
                task = progress.add_task(f"downloading {name}", total=total)
                while chunk := response.read(1 << 16):
                    out.write(chunk)
                    progress.advance(task, len(chunk))
    except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
        partial.unlink(missing_ok=True)
        reason = getattr(e, "reason", None) or e
        raise DataError(f"cannot download {url}: {reason}") from None
    os.replace(partial, dest)
    return dest


# --- tokens ---------------------------------------------------------------------------------------


@dataclass
class TokenData:
    """A corpus as token ids, split into the first (1 - val_fraction) for training, the rest to
    validate. The ids are a torch tensor (text tokenized in memory) or a numpy memory map (prepared
    data, see prepare.py): batches read only the windows they need from either."""

    train: torch.Tensor | np.ndarray  # noqa: F821  (torch and numpy are imported lazily)
    val: torch.Tensor | np.ndarray  # noqa: F821

    @classmethod
    def from_ids(cls, ids: list[int], val_fraction: float, block_size: int) -> TokenData:
        import torch

        return cls.split(torch.tensor(ids, dtype=torch.long), val_fraction, block_size)

    @classmethod
    def split(cls, data, val_fraction: float, block_size: int) -> TokenData:
        """The split rule, for any 1-D sequence of ids: the last val_fraction of them validate."""
        n_val = int(len(data) * val_fraction)
        train, val = data[: len(data) - n_val], data[len(data) - n_val:]
        for name, part in (("training", train), ("validation", val)):
            if len(part) <= block_size:
                raise DataError(
                    f"the text is too short: its {name} part has {len(part)} tokens, but one context "
                    f"window needs {block_size + 1}; use more text or a smaller --block-size"
                )
        return cls(train, val)


def get_batch(data, batch_size: int, block_size: int, generator, device):
    """batch_size random windows of block_size tokens (x) and the same shifted by one (y).

    data is a tensor or a numpy array (a memory map: only the chosen windows are read); the same
    generator state gives the same windows from either."""
    import numpy as np
    import torch

    starts = torch.randint(len(data) - block_size, (batch_size,), generator=generator)
    if isinstance(data, torch.Tensor):
        chunk = data[starts[:, None] + torch.arange(block_size + 1)]
    else:
        index = starts.numpy()[:, None] + np.arange(block_size + 1)
        chunk = torch.from_numpy(data[index].astype(np.int64))
    x, y = chunk[:, :-1].contiguous(), chunk[:, 1:].contiguous()
    if device.type == "cuda":
        return (x.pin_memory().to(device, non_blocking=True),
                y.pin_memory().to(device, non_blocking=True))
    return x.to(device), y.to(device)
