"""JSON Lines files of records, as fine-tuning reads them (conversations, preferences): each
line an object, read one at a time, and anything wrong said as FILE:LINE, before any training."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

from minigpt.errors import DataError


def records(path: str | Path) -> Iterator[tuple[dict, str]]:
    """Each non-blank line's object and where it is ("FILE:LINE"); a line that is not valid
    UTF-8, not JSON or not an object is a DataError naming it."""
    path = Path(path)
    try:
        f = open(path, encoding="utf-8")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    with f:
        number = 0
        while True:
            try:
                line = f.readline()
            except UnicodeDecodeError:
                raise DataError(f"{path}:{number + 1}: not valid UTF-8") from None
            if not line:
                return
            number += 1
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                record = json.loads(line)
            except (ValueError, RecursionError) as e:
                raise DataError(f"{where}: not JSON ({e})") from None
            if not isinstance(record, dict):
                raise DataError(f"{where}: not a JSON object")
            yield record, where
