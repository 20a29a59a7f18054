"""The cache folder, and corpora downloaded into it once (--data https://...)."""

from __future__ import annotations

import hashlib
import os
import urllib.request
from pathlib import Path

from minigpt.errors import DataError


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
