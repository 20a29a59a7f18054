"""Preferences people give: of two replies to one prompt, the better one. The Chat pane's compare
mode writes them; `minigpt train --init MODEL --dpo FILE` tunes a model on them (train/dpo.py).

A preferences file is JSON Lines in TRL's fields, one choice a line:

    {"prompt": "Reverse: cat", "chosen": "tac", "rejected": "cta"}

the prompt as text for a model that continues text, or as a messages list (the system prompt
and the turns before, then the user's turn) for a model with the chat template; the replies as
text. Each choice is appended as one line by one write to a file opened for appending: the file
is never rewritten, so a crash or a second writer leaves every earlier line whole. A file that
is there and is not a preferences file (its first line is not such an object: a corpus, a
conversation file) is refused before anything is written to it. No torch here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from minigpt.errors import DataError

FIELDS = ("prompt", "chosen", "rejected")  # TRL's, which train/dpo.py reads
DEFAULT_PREFERENCES = Path("prefs.jsonl")  # in the folder minigpt chat runs in (see docs)
_HEAD = 64 * 1024  # bytes of a file read to tell whether it is a preferences file


def check_preferences_file(path: str | os.PathLike) -> None:
    """Refuse (DataError) a path preferences cannot be appended to: a folder, a missing folder,
    or a file whose first line is not a preference. A new or empty file is fine."""
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path} is a folder: preferences go to a JSON Lines file")
    if not path.exists():
        if not path.parent.is_dir():
            raise DataError(f"no such folder: {path.parent} (for the preferences file {path})")
        return
    if not path.is_file():  # a device or a pipe is no preferences file (and a pipe would block)
        raise DataError(f"{path} is not a regular file: preferences go to a JSON Lines file")
    try:
        with open(path, "rb") as f:
            head = f.read(_HEAD)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    first = next((line for line in head.splitlines() if line.strip()), None)
    if first is None:
        return
    try:
        record = json.loads(first.decode("utf-8"))
    except (ValueError, RecursionError):
        record = None
    if not isinstance(record, dict) or any(name not in record for name in FIELDS):
        raise DataError(f"{path} is not a preferences file (its first line is not a "
                        '{"prompt", "chosen", "rejected"} object): choose another file')


def append_preference(path: str | os.PathLike, prompt: str | list[dict], chosen: str,
                      rejected: str) -> None:
    """Append one preference to path as one line (the file is made if it is not there). Refused
    with a DataError, with nothing written: a file check_preferences_file refuses, a reply that
    is empty (DPO learns nothing from it), two replies the same, a prompt that is neither text
    nor messages."""
    if not isinstance(prompt, str | list) or not prompt:
        raise DataError("a preference's prompt is text, or a list of messages")
    if not chosen or not rejected:
        raise DataError("an empty reply cannot be preferred or rejected")
    if chosen == rejected:
        raise DataError("the two replies are the same: there is nothing to prefer")
    check_preferences_file(path)
    try:
        line = json.dumps(dict(zip(FIELDS, (prompt, chosen, rejected), strict=True)),
                          ensure_ascii=False).encode("utf-8") + b"\n"
    except UnicodeEncodeError:  # a lone surrogate: not a character, and not UTF-8
        raise DataError("the text holds a lone surrogate, which is not a character") from None
    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None
    try:
        if os.fstat(fd).st_size and not _ends_with_newline(path):
            line = b"\n" + line  # a last line left unfinished stays apart from this one
        written = os.write(fd, line)  # one write: appended whole (O_APPEND)
        while written < len(line):  # a full disk, or a signal, wrote part of it
            written += os.write(fd, line[written:])
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None
    finally:
        os.close(fd)


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as f:
        f.seek(-1, os.SEEK_END)
        return f.read(1) == b"\n"
