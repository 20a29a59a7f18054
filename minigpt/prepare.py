"""Prepare once: a source tokenized into a memory-mapped token file in the cache, reused by every run.

`prepare(source, kind, vocab_size)` (what `minigpt prepare` and the first `minigpt train` on a
corpus run) streams the source's documents twice at most, never holding the corpus:

1. The tokenizer. char: a vocabulary pass, the set of every character seen. bpe: byte-level BPE
   trained on a sample, the first BPE_SAMPLE_BYTES (16 MB) of the corpus's text. More buys
   little: 8,192 merges trained on 8, 16, 32 and 64 MB of Python's sources encode 8 MB of other
   sources at 2.746, 2.776, 2.778 and 2.783 bytes a token, and each doubling doubles the training
   time (3, 8, 18, 45 s on a 2-core AMD EPYC). Cached in
   `<cache>/tokenizers/<key>.json`, the key being the source's identity and these settings.
   Resuming or fine-tuning brings its own tokenizer instead.
2. The tokens. Pieces of text are encoded in batches (BPE: BPETokenizer.encode_batch, tiktoken
   or `tokenizers` in Rust on every core; char: a numpy lookup over code points) and appended to
   `tokens.bin`: raw uint16 where the vocabulary fits in 65,536 ids, uint32 otherwise. Documents
   are kept apart by GPT-2's <|endoftext|> token (BPE) or a blank line, "\\n\\n" (char), so the
   file holds exactly the ids of the documents joined by that separator, encoded in one go.

Prepared data lives in `<cache>/prepared/<key>/` (tokens.bin, tokenizer.json, manifest.json),
the key being a hash of the source's identity (every file's path, size and modification time,
or the built-in text's hash, and the JSON/Parquet text field) and of the tokenizer itself, so a
resumed run, which brings the tokenizer it trained with, finds what its first run prepared. It is
written in a temporary sibling folder and renamed into place when complete: a preparation that is
killed leaves only that folder, never used, removed by the next preparation; a full disk is one
line and leaves nothing behind.

The split is made when the data is opened, not stored: the last val_fraction of the token stream
validates, the rest trains, as for text held in memory (TokenData.split).
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from minigpt.errors import DataError, TokenizerError
from minigpt.sources import Piece, Source
from minigpt.tokenizer import (
    END_OF_TEXT,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    tokenizer_from_dict,
)

FORMAT = 1
BPE_SAMPLE_BYTES = 16 << 20
ENCODE_BATCH_CHARS = 4 << 20  # text encoded per batch: enough for every core to have work
EVENT_INTERVAL_S = 0.25  # progress events at most this often
TOKENS_NAME, MANIFEST_NAME, TOKENIZER_NAME = "tokens.bin", "manifest.json", "tokenizer.json"

OnEvent = Callable[[dict], None]


@dataclass
class Prepared:
    path: Path  # the folder
    manifest: dict
    tokenizer: Tokenizer
    cached: bool  # found ready, nothing was tokenized

    @property
    def key(self) -> str:
        return self.path.name

    def tokens(self, val_fraction: float, block_size: int):
        """The token file as a memory map, split into training and validation (TokenData)."""
        from minigpt.data import TokenData

        ids = np.memmap(self.path / TOKENS_NAME, dtype=self.manifest["dtype"], mode="r",
                        shape=(self.manifest["tokens"],))
        return TokenData.split(ids, val_fraction, block_size)


def separator(tokenizer: Tokenizer) -> str:
    """What goes between documents: GPT-2's <|endoftext|> for BPE, a blank line for char."""
    return END_OF_TEXT if tokenizer.kind == "bpe" else "\n\n"


def prepare(source: Source, kind: str = "char", vocab_size: int = 4096,
            tokenizer: Tokenizer | None = None, on_event: OnEvent | None = None) -> Prepared:
    """The source's prepared data, from the cache or made now (see the module's docstring)."""
    on_event = on_event or (lambda ev: None)
    started = time.perf_counter()
    if tokenizer is None:
        tokenizer = corpus_tokenizer(source, kind, vocab_size, on_event)
    tokenizer_json = json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False)
    key = _hash({"format": FORMAT, "source": source.identity(),
                 "tokenizer": hashlib.sha256(tokenizer_json.encode()).hexdigest()})
    folder = _cache() / "prepared" / key
    if (folder / MANIFEST_NAME).is_file():
        manifest = json.loads((folder / MANIFEST_NAME).read_text(encoding="utf-8"))
        done = Prepared(folder, manifest, tokenizer, cached=True)
        on_event(_event("prepared", done, time.perf_counter() - started))
        return done
    _remove_abandoned(folder.parent)
    tmp = folder.parent / f".{key}.tmp-{os.getpid()}"
    try:
        tmp.mkdir(parents=True, exist_ok=True)
        counts = _encode(source, tokenizer, tmp / TOKENS_NAME, on_event, started)
        if counts["tokens"] == 0:
            raise _no_text(source)
        manifest = {"format": FORMAT, "source": source.name, "description": source.description,
                    "identity": source.identity(), "tokenizer": tokenizer.kind,
                    "vocab_size": tokenizer.vocab_size, "separator": separator(tokenizer),
                    **counts, "seconds": round(time.perf_counter() - started, 3),
                    "created": time.time()}
        (tmp / TOKENIZER_NAME).write_text(tokenizer_json, encoding="utf-8")
        (tmp / MANIFEST_NAME).write_text(json.dumps(manifest, indent=1, ensure_ascii=False),
                                         encoding="utf-8")
        try:
            os.replace(tmp, folder)
        except OSError:  # another process finished the same preparation first: use theirs
            if not (folder / MANIFEST_NAME).is_file():
                raise
            shutil.rmtree(tmp, ignore_errors=True)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _disk_error(e, tmp.parent) from None
    except BaseException:  # a bad document, Ctrl-C: nothing half-made is left behind
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    done = Prepared(folder, manifest, tokenizer, cached=False)
    on_event(_event("prepared", done, time.perf_counter() - started))
    return done


def corpus_tokenizer(source: Source, kind: str, vocab_size: int,
                     on_event: OnEvent | None = None) -> Tokenizer:
    """The tokenizer built from the source (cached): char's vocabulary or BPE trained on a sample."""
    on_event = on_event or (lambda ev: None)
    if kind not in ("char", "bpe"):
        raise TokenizerError(f"unknown tokenizer {kind!r}; choose 'char' or 'bpe'")
    settings = {"kind": kind}
    if kind == "bpe":
        settings.update(vocab_size=vocab_size, sample_bytes=BPE_SAMPLE_BYTES)
    path = _cache() / "tokenizers" / f"{_hash({'source': source.identity(), **settings})}.json"
    if path.is_file():
        return tokenizer_from_dict(json.loads(path.read_text(encoding="utf-8")))
    if kind == "char":
        chars: set[str] = set()
        for text in _texts(_documents(source, "\n\n", _Meter(source, "vocabulary", on_event))):
            chars.update(text)
        if not chars:  # said now: an empty vocabulary cached would be the next run's error
            raise _no_text(source)
        tokenizer: Tokenizer = CharTokenizer("".join(sorted(chars)))
    else:
        meter = _Meter(source, "sample", on_event, total=min(BPE_SAMPLE_BYTES, source.total_bytes))
        tokenizer = BPETokenizer.train_from(_sample(source, meter), vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        tmp.write_text(json.dumps(tokenizer.to_dict(), ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise _disk_error(e, path.parent) from None
    return tokenizer


def _no_text(source: Source) -> DataError:
    return DataError(f"{source.name} has no text")


# --- the passes ------------------------------------------------------------------------------------


class _Meter:
    """Progress of one pass: source bytes read and tokens written, sent as throttled events."""

    def __init__(self, source: Source, stage: str, on_event: OnEvent, total: int | None = None,
                 started: float | None = None):
        self.stage, self.on_event = stage, on_event
        self.total = source.total_bytes if total is None else total
        self.bytes = self.tokens = 0
        self.started = time.perf_counter() if started is None else started
        self.pass_started = time.perf_counter()
        self._last = 0.0

    def read(self, n: int) -> None:
        self.bytes += n
        self.emit()

    def emit(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not force and now - self._last < EVENT_INTERVAL_S:
            return
        self._last = now
        seconds = max(now - self.pass_started, 1e-9)
        from minigpt.events import event

        self.on_event(event("prepare", stage=self.stage, bytes_done=min(self.bytes, self.total),
                            bytes_total=self.total, tokens=self.tokens,
                            tokens_per_s=self.tokens / seconds, elapsed=now - self.started))


def _documents(source: Source, sep: str, meter: _Meter) -> Iterator[Piece]:
    """The source's pieces with the separator, as a piece of its own, between documents."""
    between = False
    for text, ends in source.pieces(meter.read):
        if between:
            yield sep, False
        yield text, False
        between = ends
    meter.emit(force=True)


def _texts(pieces: Iterator[Piece]) -> Iterator[str]:
    return (text for text, _ in pieces)


def _sample(source: Source, meter: _Meter) -> Iterator[str]:
    """The first BPE_SAMPLE_BYTES of the corpus's text, documents kept apart."""
    taken = 0
    for text, _ in source.pieces(meter.read):  # BPE's pre-tokenizer splits documents anyway
        if taken >= BPE_SAMPLE_BYTES:
            break
        text = text[: BPE_SAMPLE_BYTES - taken]  # characters, at most as many bytes
        taken += len(text.encode("utf-8"))
        yield text


def _batches(pieces: Iterator[str]) -> Iterator[list[str]]:
    batch, size = [], 0
    for text in pieces:
        batch.append(text)
        size += len(text)
        if size >= ENCODE_BATCH_CHARS:
            yield batch
            batch, size = [], 0
    if batch:
        yield batch


def _encoder(tokenizer: Tokenizer) -> Callable[[list[str]], list[np.ndarray]]:
    """Encodes a batch of texts into id arrays, in parallel (BPE) or vectorized (char)."""
    if isinstance(tokenizer, BPETokenizer):
        return tokenizer.encode_batch
    if isinstance(tokenizer, CharTokenizer):
        points = np.array([ord(c) for c in tokenizer.chars], dtype=np.uint32)
        order = np.argsort(points)
        ordered = points[order]

        def encode_char(texts):
            out = []
            for text in texts:
                cps = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
                at = np.minimum(np.searchsorted(ordered, cps), len(ordered) - 1)
                if not np.array_equal(ordered[at], cps):
                    tokenizer.encode(text)  # raises, naming the characters the vocabulary lacks
                out.append(order[at].astype(np.uint32))
            return out
        return encode_char
    return lambda texts: [np.asarray(tokenizer.encode(t), dtype=np.uint32) for t in texts]


def _encode(source: Source, tokenizer: Tokenizer, path: Path, on_event: OnEvent,
            started: float) -> dict:
    dtype = np.uint16 if tokenizer.vocab_size <= 1 << 16 else np.uint32
    encode = _encoder(tokenizer)
    meter = _Meter(source, "encode", on_event, started=started)
    with open(path, "wb") as out:
        for batch in _batches(_texts(_documents(source, separator(tokenizer), meter))):
            for ids in encode(batch):
                out.write(ids.astype(dtype).tobytes())
                meter.tokens += len(ids)
            meter.emit()
        out.flush()
        os.fsync(out.fileno())
    meter.emit(force=True)
    return {"dtype": np.dtype(dtype).name, "tokens": meter.tokens, "bytes": source.total_bytes}


# --- the cache -------------------------------------------------------------------------------------


def _cache() -> Path:
    from minigpt.data import cache_dir

    return cache_dir()


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:24]


def _event(type_: str, done: Prepared, seconds: float) -> dict:
    from minigpt.events import event

    m = done.manifest
    return event(type_, path=str(done.path), cached=done.cached, tokens=m["tokens"],
                 dtype=m["dtype"], tokenizer=m["tokenizer"], vocab_size=m["vocab_size"],
                 seconds=seconds)


def _remove_abandoned(folder: Path) -> None:
    """Temporary folders of preparations whose process is gone (killed half-way)."""
    from minigpt.events import process_alive

    if not folder.is_dir():
        return
    for tmp in folder.glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        # ours is from an earlier, failed attempt in this process: abandoned too
        if pid.isdigit() and (int(pid) == os.getpid() or not process_alive(int(pid))):
            shutil.rmtree(tmp, ignore_errors=True)


def _disk_error(e: OSError, where: Path) -> DataError:
    if e.errno == errno.ENOSPC:
        return DataError(f"the disk is full: cannot write the prepared data in {where}; free "
                         "some space or point $MINIGPT_CACHE at a bigger disk")
    return DataError(f"cannot write the prepared data in {where}: {e.strerror or e}")
