"""Prepare once: a source tokenized into a memory-mapped token file in the cache, reused by every run.

`prepare(source, kind, vocab_size)` (what `minigpt prepare` and the first `minigpt train` on a
corpus run) streams the source's documents twice at most, never holding the corpus:

1. The tokenizer. char: a vocabulary pass, the set of every character seen. bpe: byte-level BPE
   trained on a sample, the first BPE_SAMPLE_BYTES (16 MB) of the corpus's text. More buys
   little: each doubling of the sample barely changes how many bytes a token holds, and doubles
   the training time (see benchmarks/RESULTS.md, "Preparing corpora"). Cached in
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

What is found in the cache is checked before it is used: the manifest parses and is minigpt's,
the tokenizer stored beside the tokens is the one asked for, tokens.bin holds exactly the
manifest's count of ids, and every id is inside the vocabulary (a pass over the file, at the
speed memory or the disk reads it). A cached tokenizer carries its own checksum. Whatever fails a
check is damaged: a note says so, naming the folder, and it is prepared again (`minigpt prepare`
repairs it the same way).

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

from minigpt.data.batches import TokenData
from minigpt.data.sources import Piece, Source
from minigpt.data.tokenizer import (
    END_OF_TEXT,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
    tokenizer_from_dict,
)
from minigpt.errors import DataError, TokenizerError

FORMAT = 1
BPE_SAMPLE_BYTES = 16 << 20
ENCODE_BATCH_CHARS = 4 << 20  # text encoded per batch: enough for every core to have work
EVENT_INTERVAL_S = 0.25  # progress events at most this often
CHECK_CHUNK_BYTES = 64 << 20  # a cached token file is checked this much at a time
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

    def tokens(self, val_fraction: float, block_size: int) -> TokenData:
        """The token file as a memory map, split into training and validation."""
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
    if folder.exists():
        try:
            manifest = _check_prepared(folder, tokenizer, tokenizer_json, source, on_event)
        except _Damaged as e:
            on_event(_note(f"the prepared data in {folder} is damaged ({e}): preparing it again"))
            _discard(folder)
        else:
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
    if path.exists():
        try:
            return _read_tokenizer(path)
        except _Damaged as e:
            on_event(_note(f"the cached tokenizer {path} is damaged ({e}): building it again"))
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
    _write_tokenizer(path, tokenizer)
    return tokenizer


def _read_tokenizer(path: Path) -> Tokenizer:
    """A cached tokenizer, if its record parses and its checksum matches; else _Damaged."""
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
        body = json.dumps(record["tokenizer"], sort_keys=True, ensure_ascii=False)
        if hashlib.sha256(body.encode()).hexdigest() != record["sha256"]:
            raise _Damaged("its checksum does not match")
        return tokenizer_from_dict(record["tokenizer"])
    except (OSError, ValueError, RecursionError, KeyError, TypeError, TokenizerError) as e:
        raise _Damaged(_why(e)) from None


def _write_tokenizer(path: Path, tokenizer: Tokenizer) -> None:
    """Written beside its name and renamed: a kill or a full disk leaves no half of one."""
    body = tokenizer.to_dict()
    checksum = hashlib.sha256(json.dumps(body, sort_keys=True, ensure_ascii=False).encode())
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(path.parent)
        tmp.write_text(json.dumps({"tokenizer": body, "sha256": checksum.hexdigest()},
                                  ensure_ascii=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError as e:
        raise _disk_error(e, path.parent) from None
    finally:
        tmp.unlink(missing_ok=True)


def _no_text(source: Source) -> DataError:
    return DataError(f"{source.name} has no text")


# --- what the cache holds, checked before it is used -------------------------------------------------


class _Damaged(Exception):
    """A cache entry that cannot be trusted; the message says why, in a few words."""


def _why(e: BaseException) -> str:
    if isinstance(e, FileNotFoundError):
        return f"{Path(e.filename).name} is missing" if e.filename else "a file is missing"
    if isinstance(e, KeyError):
        return f"its record has no {e}"
    first = (str(e).strip().splitlines() or [type(e).__name__])[0]
    return first[:120]


def _check_prepared(folder: Path, tokenizer: Tokenizer, tokenizer_json: str, source: Source,
                    on_event: OnEvent) -> dict:
    """The manifest of a prepared folder whose files are whole (see the module's docstring);
    _Damaged otherwise."""
    try:
        text = (folder / MANIFEST_NAME).read_text(encoding="utf-8")
        stored = (folder / TOKENIZER_NAME).read_text(encoding="utf-8")
        size = (folder / TOKENS_NAME).stat().st_size
    except (OSError, ValueError) as e:
        raise _Damaged(_why(e)) from None
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise _Damaged(f"its {MANIFEST_NAME} is not JSON: {_why(e)}") from None
    if not isinstance(manifest, dict):
        raise _Damaged(f"its {MANIFEST_NAME} is not a record")
    tokens, dtype = manifest.get("tokens"), manifest.get("dtype")
    if isinstance(tokens, bool) or not isinstance(tokens, int) or tokens < 1:
        raise _Damaged(f"its {MANIFEST_NAME} gives no count of tokens")
    if dtype not in ("uint16", "uint32"):
        raise _Damaged(f"its {MANIFEST_NAME} gives no type of token (uint16 or uint32)")
    if (manifest.get("tokenizer"), manifest.get("vocab_size")) != (tokenizer.kind,
                                                                   tokenizer.vocab_size):
        raise _Damaged(f"its {MANIFEST_NAME} names another tokenizer")
    if stored != tokenizer_json:
        raise _Damaged(f"its {TOKENIZER_NAME} is not the tokenizer it was made with")
    expected = tokens * np.dtype(dtype).itemsize
    if size != expected:
        raise _Damaged(f"{TOKENS_NAME} holds {size:,} bytes, its {MANIFEST_NAME} says "
                       f"{expected:,}")
    highest = _highest_id(folder / TOKENS_NAME, dtype, tokens, source, on_event)
    if highest >= tokenizer.vocab_size:
        raise _Damaged(f"{TOKENS_NAME} holds id {highest:,}, past the vocabulary of "
                       f"{tokenizer.vocab_size:,}")
    return manifest


def _highest_id(path: Path, dtype: str, count: int, source: Source, on_event: OnEvent) -> int:
    """The largest id in a token file, read in chunks (progress as the "check" stage)."""
    ids = np.memmap(path, dtype=dtype, mode="r", shape=(count,))
    meter = _Meter(source, "check", on_event, total=ids.nbytes)
    highest, step = 0, CHECK_CHUNK_BYTES // ids.itemsize
    for at in range(0, count, step):
        highest = max(highest, int(ids[at:at + step].max()))
        meter.read(min(step, count - at) * ids.itemsize)
    meter.emit(force=True)
    return highest


def _discard(folder: Path) -> None:
    """A damaged folder out of the way at once (renamed), then removed: the name is free for the
    preparation that replaces it; a removal cut short is a temporary folder the next one clears."""
    aside = folder.with_name(f".{folder.name}.old.tmp-{os.getpid()}")
    try:
        os.replace(folder, aside)
    except OSError as e:
        raise _disk_error(e, folder.parent) from None
    shutil.rmtree(aside, ignore_errors=True)


def _note(message: str) -> dict:
    from minigpt.runs.events import event

    return event("note", step=0, message=message)


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
        from minigpt.runs.events import event

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
    from minigpt.data.download import cache_dir

    return cache_dir()


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:24]


def _event(type_: str, done: Prepared, seconds: float) -> dict:
    from minigpt.runs.events import event

    m = done.manifest
    return event(type_, path=str(done.path), cached=done.cached, tokens=m["tokens"],
                 dtype=m["dtype"], tokenizer=m["tokenizer"], vocab_size=m["vocab_size"],
                 seconds=seconds)


def _remove_abandoned(folder: Path) -> None:
    """Temporary folders and files of preparations whose process is gone (killed half-way)."""
    from minigpt.runs.log import process_alive

    if not folder.is_dir():
        return
    for tmp in folder.glob(".*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        # ours is from an earlier, failed attempt in this process: abandoned too
        if pid.isdigit() and (int(pid) == os.getpid() or not process_alive(int(pid))):
            if tmp.is_dir() and not tmp.is_symlink():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)


def _disk_error(e: OSError, where: Path) -> DataError:
    if e.errno == errno.ENOSPC:
        return DataError(f"the disk is full: cannot write the prepared data in {where}; free "
                         "some space or point $MINIGPT_CACHE at a bigger disk")
    return DataError(f"cannot write the prepared data in {where}: {e.strerror or e}")


# --- what a run trains on ----------------------------------------------------------------------


@dataclass
class PreparedData:
    """What a run trains on: the tokenizer, the tokens split in two, and where they came from."""

    tokenizer: Tokenizer
    tokens: TokenData
    source: str  # what the user named: "builtin", a path, a URL
    description: str  # for people
    key: str | None = None  # the prepared data's cache key; None for text tokenized in memory

    def sizes(self) -> tuple[int, int]:
        """The tokens of each split."""
        return len(self.tokens.train), len(self.tokens.val)

    def batches(self, batch_size: int, block_size: int, seed: int, device, rank: int = 0):
        from minigpt.data.batches import Batches

        return Batches(self.tokens, batch_size, block_size, seed, device, rank)

    def sample_prompt(self) -> list[int]:
        """The validation text's first token: what a run's samples continue."""
        return [int(i) for i in self.tokens.val[:1]]


def load_prepared(source: Source, cfg, tokenizer: Tokenizer | None = None,
                  on_event: OnEvent | None = None) -> PreparedData:
    """A source's prepared data (made once, then found in the cache), memory-mapped and split
    as cfg (a TrainConfig) says."""
    prepared = prepare(source, cfg.tokenizer, cfg.bpe_vocab_size, tokenizer, on_event)
    return PreparedData(prepared.tokenizer,
                        prepared.tokens(cfg.val_fraction, cfg.model.block_size),
                        source.name, source.description, prepared.key)

