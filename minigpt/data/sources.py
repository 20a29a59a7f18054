"""Sources: a corpus named on the command line, read as a stream of documents.

`open_source(name, text_field)` understands:
- "builtin": the built-in English prose (see builtin.py), one document;
- a text file (.txt, or any name not below): one document, read in pieces of about a megabyte;
- JSON Lines (.jsonl, .ndjson): one document per line, the string in its `text` field
  (`--text-field` for another); blank lines are skipped;
- Parquet (.parquet): one document per row of its `text` column, read batch by batch (pyarrow);
- any of the text and JSON Lines kinds compressed with gzip (.txt.gz, .jsonl.gz);
- a folder: every file of the kinds above below it, in sorted order of their paths;
- an http(s) URL: downloaded once into the cache folder, then read as the file it is;
- "hf:owner/name": a Hugging Face hub dataset, its Parquet, JSON Lines and text files
  downloaded once by huggingface_hub where the network allows.

Nothing holds the whole corpus: `Source.pieces()` yields text a piece at a time, each piece marked
when it ends a document, and reports how many of the source's bytes (compressed bytes for .gz
files) it has read, for progress bars. `Source.identity()` names the exact files read (paths,
sizes, modification times) so prepared data can be cached under it.
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from minigpt.data.builtin import BUILTIN
from minigpt.errors import DataError
from minigpt.units import size

PIECE_BYTES = 1 << 20  # text files are read a megabyte at a time
TEXT_FIELD = "text"

JSONL_SUFFIXES = (".jsonl", ".ndjson")
TEXT_SUFFIXES = (".txt",)
PARQUET_SUFFIXES = (".parquet",)
# what a folder is searched for; a file named directly is read whatever its name
FOLDER_SUFFIXES = tuple(s + z for s in TEXT_SUFFIXES + JSONL_SUFFIXES for z in ("", ".gz")) \
    + PARQUET_SUFFIXES

_SURROGATE = re.compile("[\ud800-\udfff]")

# (text, ends_document): a piece of a document; a document may span many pieces
Piece = tuple[str, bool]
Progress = Callable[[int], None]  # told how many more bytes of the source were read


def _kind(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".gz"):
        name = name[:-3]
    if name.endswith(JSONL_SUFFIXES):
        return "jsonl"
    if name.endswith(PARQUET_SUFFIXES):
        return "parquet"
    return "text"


@dataclass
class Source:
    name: str  # "builtin", a URL, "hf:owner/name", or a file or folder's absolute path
    description: str  # for people: "3 files in poems/, 12.0 MB"
    files: list[Path]  # empty for builtin
    text_field: str = TEXT_FIELD
    builtin: bool = False  # the built-in corpus: made from files (its identity) when read

    @cached_property
    def _builtin(self) -> str | None:
        from minigpt.data.builtin import builtin_text

        return builtin_text() if self.builtin else None

    @property
    def total_bytes(self) -> int:
        if self._builtin is not None:
            return len(self._builtin.encode("utf-8"))
        return sum(p.stat().st_size for p in self.files)

    def identity(self) -> dict:
        """What the source's content depends on: a new key whenever a file changes. The built-in
        corpus is known by the files it is made from, so finding it prepared costs no parsing."""
        if self.builtin:
            from minigpt.data.builtin import builtin_files

            return {"builtin": [[str(p), p.stat().st_size, p.stat().st_mtime_ns]
                                for p in builtin_files()]}
        files = []
        for p in self.files:
            st = p.stat()
            files.append([str(p.resolve()), st.st_size, st.st_mtime_ns])
        ident: dict = {"files": files}
        if any(_kind(p) != "text" for p in self.files):
            ident["text_field"] = self.text_field
        return ident

    def pieces(self, progress: Progress | None = None) -> Iterator[Piece]:
        progress = progress or (lambda n: None)
        if self._builtin is not None:
            yield self._builtin, True
            progress(self.total_bytes)
            return
        for path in self.files:
            kind = _kind(path)
            if kind == "parquet":
                yield from _parquet_pieces(path, self.text_field, progress)
            elif kind == "jsonl":
                yield from _jsonl_pieces(path, self.text_field, progress)
            else:
                yield from _text_pieces(path, progress)


def kind_of_name(name: str | None) -> str:
    """What a --data value names: "builtin" (also no name), "url", "hub" (hf:owner/name) or
    "path" (a file or folder on this machine)."""
    if not name or name == BUILTIN:
        return "builtin"
    if name.startswith(("http://", "https://")):
        return "url"
    return "hub" if name.startswith("hf:") else "path"


def open_source(name: str | None = None, text_field: str | None = None) -> Source:
    """The source a --data value names; a missing file or an empty folder is a DataError."""
    from minigpt.data.download import download

    kind, name = kind_of_name(name), name or BUILTIN
    field = text_field or TEXT_FIELD
    if kind == "builtin":
        return Source(BUILTIN, f"builtin: Python {sys.version_info.major}."
                               f"{sys.version_info.minor}'s reference and docstrings", [], field,
                      builtin=True)
    if kind == "url":
        path = download(name)
        return Source(name, f"{name}, {size(path.stat().st_size)}", [path], field)
    if kind == "hub":
        folder = _hub_dataset(name[3:])
        return _folder(name, folder, field)
    path = Path(name).expanduser()
    # a file or folder is named by its absolute path (what runs record): --resume finds it from
    # any folder; the description keeps the user's spelling
    if path.is_dir():
        return _folder(str(path.resolve()), path, field, shown=name)
    if path.is_file():
        return Source(str(path.resolve()), f"{name}, {size(path.stat().st_size)}", [path], field)
    if path.exists():
        raise DataError(f"not a file or folder: {name}")
    raise DataError(f"no such file or folder: {name}")


def _folder(name: str, folder: Path, field: str, shown: str | None = None) -> Source:
    files = sorted(p for p in folder.rglob("*") if p.is_file()
                   and p.name.lower().endswith(FOLDER_SUFFIXES) and not p.name.startswith("."))
    shown = shown or name
    if not files:
        raise DataError(f"no .txt, .jsonl or .parquet files in folder {shown}")
    total = sum(p.stat().st_size for p in files)
    count = "1 file" if len(files) == 1 else f"{len(files)} files"
    return Source(name, f"{count} in {shown}, {size(total)}", files, field)


def _hub_dataset(repo_id: str) -> Path:
    """A hub dataset's data files, downloaded once into the cache (huggingface_hub's own)."""
    try:
        from huggingface_hub import snapshot_download
    except ImportError:
        raise DataError("hf: datasets need huggingface_hub (pip install huggingface_hub)") from None
    patterns = [f"*{s}" for s in FOLDER_SUFFIXES]
    try:
        return Path(snapshot_download(repo_id, repo_type="dataset", allow_patterns=patterns))
    except Exception as e:  # offline, unknown id, gated: the library raises many kinds
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise DataError(f"cannot download the hub dataset {repo_id}: {reason}") from None


# --- readers ---------------------------------------------------------------------------------------


class _Counted:
    """The raw file under a (possibly gzip) reader, reporting each read's bytes to progress."""

    def __init__(self, path: Path, progress: Progress):
        try:
            self.raw = open(path, "rb")  # noqa: SIM115  (closed by close())
        except OSError as e:
            raise DataError(f"cannot read {path}: {e.strerror}") from None
        self.progress = progress
        self.stream = gzip.GzipFile(fileobj=self.raw) if path.name.lower().endswith(".gz") \
            else self.raw
        self.path = path
        self._reported = 0

    def report(self) -> None:
        done = self.raw.tell()
        self.progress(done - self._reported)
        self._reported = done

    def close(self) -> None:
        self.stream.close()
        self.raw.close()


def _read(counted: _Counted, method: str, *args) -> bytes:
    try:
        return getattr(counted.stream, method)(*args)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(f"cannot read {counted.path}: {e}") from None


def _text_pieces(path: Path, progress: Progress) -> Iterator[Piece]:
    """A text file as one document, in pieces cut after a newline (invalid UTF-8: where)."""
    f = _Counted(path, progress)
    try:
        offset, lines, pending = 0, 0, b""
        text = ""
        while True:
            chunk = _read(f, "read", PIECE_BYTES)
            data = pending + chunk
            final = not chunk
            try:
                decoded, pending = data.decode("utf-8"), b""
            except UnicodeDecodeError as e:
                if not final and e.reason == "unexpected end of data" and e.end == len(data):
                    decoded, pending = data[:e.start].decode("utf-8"), data[e.start:]
                else:
                    line = lines + data.count(b"\n", 0, e.start) + 1
                    where = " of its decompressed text" if path.name.endswith(".gz") else ""
                    raise DataError(f"{path} is not valid UTF-8: byte 0x{data[e.start]:02x} at "
                                    f"offset {offset + e.start}{where} (line {line})") from None
            consumed = len(data) - len(pending)
            lines += data.count(b"\n", 0, consumed)
            offset += consumed
            text += decoded
            f.report()
            if final:
                break
            cut = _cut(text)
            if cut:
                yield text[:cut], False
                text = text[cut:]
        yield text, True
    finally:
        f.close()


def _cut(text: str) -> int:
    """Where text may be cut without changing how byte-level BPE splits it: after a newline that
    a non-space follows (no pre-token of GPT-2's pattern spans that point); 0 if nowhere."""
    end = len(text) - 1
    while (i := text.rfind("\n", 0, end)) >= 0:
        if not text[i + 1].isspace():
            return i + 1
        end = i
    return 0


def _jsonl_pieces(path: Path, field: str, progress: Progress) -> Iterator[Piece]:
    f = _Counted(path, progress)
    try:
        number = 0
        while line := _read(f, "readline"):
            number += 1
            if number % 1024 == 0:
                f.report()
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except UnicodeDecodeError as e:
                raise DataError(f"{path}:{number}: not valid UTF-8 (byte 0x{line[e.start]:02x} "
                                f"at column {e.start + 1})") from None
            except ValueError as e:
                raise DataError(f"{path}:{number}: not JSON ({e})") from None
            if not isinstance(record, dict) or field not in record:
                fields = ", ".join(record) if isinstance(record, dict) else "it is not an object"
                raise DataError(f"{path}:{number}: no {field!r} field ({fields}); name the text's "
                                "field with --text-field")
            text = record[field]
            if text is None:
                continue
            if not isinstance(text, str):
                raise DataError(f"{path}:{number}: the {field!r} field is "
                                f"{type(text).__name__}, not text")
            lone = _SURROGATE.search(text)
            if lone:  # valid JSON ("\\ud800"), but no character: UTF-8 cannot encode it
                raise DataError(f"{path}:{number}: the {field!r} field holds a lone surrogate, "
                                f"\\u{ord(lone.group()):04x} at character {lone.start() + 1}, "
                                "which is not a character (half of a UTF-16 pair)")
            if text:
                yield text, True
        f.report()
    finally:
        f.close()


def _parquet_pieces(path: Path, field: str, progress: Progress) -> Iterator[Piece]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (OSError, pa.ArrowException) as e:
        raise DataError(f"cannot read {path} as Parquet: {e}") from None
    names = pf.schema_arrow.names
    if field not in names:
        raise DataError(f"{path} has no column {field!r} (its columns: {', '.join(names)}); "
                        "name the text's column with --text-field")
    kind = pf.schema_arrow.field(field).type
    if not _is_text(kind):
        raise DataError(f"{path}: column {field!r} is {kind}, not text")
    size, rows = path.stat().st_size, max(1, pf.metadata.num_rows)
    done_rows, reported = 0, 0
    try:
        for batch in pf.iter_batches(columns=[field], batch_size=4096):
            for text in batch.column(0).to_pylist():
                if text:
                    yield text, True
            done_rows += batch.num_rows
            now = size * done_rows // rows
            progress(now - reported)
            reported = now
    except (OSError, pa.ArrowException) as e:  # corrupt pages: pyarrow's OSError names no file
        raise DataError(f"cannot read {path} as Parquet: {e}") from None
    progress(size - reported)


def _is_text(kind) -> bool:
    """Whether a Parquet column reads as Python strings: string, large_string, string_view, or a
    dictionary of those (what pandas writes for a category column)."""
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return (pa.types.is_string(kind) or pa.types.is_large_string(kind)
            or getattr(pa.types, "is_string_view", lambda k: False)(kind))
