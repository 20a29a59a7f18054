"""Prepared data: sources streamed into memory-mapped token files in the cache, reused by runs."""

import errno
import gzip
import json

import numpy as np
import pytest
import torch
from conftest import assert_one_line_error, cli

from minigpt.data import prepare as prepare_module
from minigpt.data import sources
from minigpt.data.batches import TokenData, get_batch
from minigpt.data.prepare import TOKENS_NAME, prepare, separator
from minigpt.data.sources import open_source
from minigpt.errors import DataError
from minigpt.runs.log import read_events
from minigpt.runs.state import summarize_run

DOCS = ["The first document.\nIt has two lines.\n", "  Second: café, naïve — ✓\n\n",
        "third\tdocument with 'quotes' and numbers 123"]


def nothing_prepared(cache_dir) -> bool:
    folder = cache_dir / "prepared"
    return not folder.exists() or not any(folder.iterdir())


def stored(prepared) -> np.ndarray:
    return np.fromfile(prepared.path / TOKENS_NAME, dtype=prepared.manifest["dtype"])


@pytest.mark.parametrize("kind", ["char", "bpe"])
def test_tokens_equal_one_shot_tokenization_of_the_joined_documents(tmp_path, cache_dir, kind,
                                                                     english_text, monkeypatch):
    monkeypatch.setattr(sources, "PIECE_BYTES", 1000)  # many pieces per file, cut mid-text
    monkeypatch.setattr(prepare_module, "ENCODE_BATCH_CHARS", 3000)
    folder = tmp_path / "docs"
    folder.mkdir()
    docs = [english_text[:20_000], *DOCS, english_text[20_000:45_000]]
    for i, doc in enumerate(docs):
        (folder / f"{i:02}.txt").write_text(doc, encoding="utf-8")
    done = prepare(open_source(str(folder)), kind, vocab_size=300)
    whole = separator(done.tokenizer).join(docs)
    assert stored(done).tolist() == done.tokenizer.encode(whole)
    assert done.manifest["tokens"] == len(stored(done)) and done.manifest["dtype"] == "uint16"
    if kind == "bpe":  # documents are kept apart by GPT-2's end-of-text token
        eot = done.tokenizer.tokenizer.token_to_id("<|endoftext|>")
        assert stored(done).tolist().count(eot) == len(docs) - 1


def test_memmap_batches_equal_in_memory_batches(tmp_path, cache_dir):
    path = tmp_path / "a.txt"
    path.write_text("abcdefghij" * 500, encoding="utf-8")
    done = prepare(open_source(str(path)), "char")
    mapped = done.tokens(val_fraction=0.1, block_size=16)
    in_memory = TokenData.from_ids(done.tokenizer.encode(path.read_text()), 0.1, 16)
    assert isinstance(mapped.train, np.memmap) and len(mapped.train) == len(in_memory.train)
    for a, b in ((mapped.train, in_memory.train), (mapped.val, in_memory.val)):
        xa, ya = get_batch(a, 8, 16, torch.Generator().manual_seed(5), torch.device("cpu"))
        xb, yb = get_batch(b, 8, 16, torch.Generator().manual_seed(5), torch.device("cpu"))
        assert xa.dtype == torch.long and torch.equal(xa, xb) and torch.equal(ya, yb)


def test_second_preparation_reuses_the_cache_without_encoding(tmp_path, cache_dir, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("some text to tokenize\n" * 200, encoding="utf-8")
    first = prepare(open_source(str(path)), "bpe", vocab_size=300)
    assert not first.cached

    def no_encoding(*args, **kwargs):
        raise AssertionError("tokenized again")
    monkeypatch.setattr(prepare_module, "_encode", no_encoding)
    monkeypatch.setattr(prepare_module.BPETokenizer, "train_from", no_encoding)
    second = prepare(open_source(str(path)), "bpe", vocab_size=300)
    assert second.cached and second.path == first.path
    # a resumed run brings its tokenizer: the same prepared data
    assert prepare(open_source(str(path)), tokenizer=first.tokenizer).path == first.path
    # a changed file is another corpus
    path.write_text("other text\n" * 300, encoding="utf-8")
    monkeypatch.undo()
    assert prepare(open_source(str(path)), "bpe", vocab_size=300).path != first.path


def test_a_killed_preparation_is_never_used_and_is_redone(tmp_path, cache_dir, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("text " * 2000, encoding="utf-8")
    real_encode = prepare_module._encode

    def killed(source, tokenizer, out, *args):
        out.write_bytes(b"\0\0" * 10)  # half-written
        raise KeyboardInterrupt
    monkeypatch.setattr(prepare_module, "_encode", killed)
    with pytest.raises(KeyboardInterrupt):
        prepare(open_source(str(path)), "char")
    assert nothing_prepared(cache_dir)
    # a process killed outright leaves its temporary folder: ignored, then removed
    (cache_dir / "prepared" / ".abc.tmp-999999999").mkdir()
    monkeypatch.setattr(prepare_module, "_encode", real_encode)
    done = prepare(open_source(str(path)), "char")
    assert not done.cached and len(stored(done)) == 10_000
    assert [p.name for p in (cache_dir / "prepared").iterdir()] == [done.path.name]


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, cache_dir, monkeypatch):
    path = tmp_path / "a.txt"
    path.write_text("text " * 2000, encoding="utf-8")

    def full(*args):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(prepare_module, "_encode", full)
    with pytest.raises(DataError, match="disk is full"):
        prepare(open_source(str(path)), "char")
    assert nothing_prepared(cache_dir)


def write_jsonl(path, records, opener=open):
    with opener(path, "wt", encoding="utf-8") as f:
        for r in records:
            f.write((r if isinstance(r, str) else json.dumps(r)) + "\n")


@pytest.mark.parametrize("name, opener", [("c.jsonl", open), ("c.jsonl.gz", gzip.open)])
def test_json_lines_plain_and_gzipped(tmp_path, cache_dir, name, opener):
    write_jsonl(tmp_path / name, [{"text": d, "id": i} for i, d in enumerate(DOCS)] + [""],
                opener)
    done = prepare(open_source(str(tmp_path / name)), "char")
    assert done.tokenizer.decode(stored(done).tolist()) == "\n\n".join(DOCS)


def test_another_text_field_and_a_folder_of_kinds(tmp_path, cache_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    write_jsonl(tmp_path / "a.jsonl", [{"body": DOCS[0]}])
    pq.write_table(pa.table({"body": DOCS[1:], "n": [1, 2]}), tmp_path / "b.parquet")
    with gzip.open(tmp_path / "c.txt.gz", "wt", encoding="utf-8") as f:
        f.write("zipped text")
    done = prepare(open_source(str(tmp_path), text_field="body"), "char")
    assert done.tokenizer.decode(stored(done).tolist()) == "\n\n".join([*DOCS, "zipped text"])


@pytest.mark.parametrize("lines, message", [
    (['{"text": "fine"}', '{"text": "fine", oops}'], r"c.jsonl:2: not JSON"),
    (['{"text": "fine"}', '{"body": "x", "id": 3}'], r"c.jsonl:2: no 'text' field \(body, id\)"),
    (['{"text": 3}'], r"c.jsonl:1: the 'text' field is int, not text"),
    (["", "  "], r"has no text"),
])
def test_bad_json_lines_name_the_line(tmp_path, cache_dir, lines, message):
    write_jsonl(tmp_path / "c.jsonl", lines)
    with pytest.raises(DataError, match=message):
        prepare(open_source(str(tmp_path / "c.jsonl")), "char")
    assert nothing_prepared(cache_dir)


def test_an_empty_corpus_says_so_every_time(tmp_path, cache_dir):
    """Not only the first time: that run cached an empty vocabulary, and the next one read it
    back and said "the tokenizer has no tokens"."""
    (tmp_path / "empty.txt").write_text("")
    for _ in range(2):
        with pytest.raises(DataError, match="empty.txt has no text"):
            prepare(open_source(str(tmp_path / "empty.txt")), "char")
    assert not list(cache_dir.rglob("*.json"))  # no tokenizer kept for it


def test_parquet_without_the_column_lists_its_columns(tmp_path, cache_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"content": ["a"], "url": ["u"]}), tmp_path / "d.parquet")
    with pytest.raises(DataError, match=r"no column 'text' \(its columns: content, url\)"):
        prepare(open_source(str(tmp_path / "d.parquet")), "char")


def test_invalid_utf8_in_a_streamed_file_says_where(tmp_path, cache_dir, monkeypatch):
    monkeypatch.setattr(sources, "PIECE_BYTES", 7)  # the bad byte lies pieces into the file
    path = tmp_path / "latin1.txt"
    path.write_bytes("line one\nline two caf\xe9\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"not valid UTF-8: byte 0xe9 at offset 21 \(line 2\)"):
        prepare(open_source(str(path)), "char")
    ok = tmp_path / "ok.txt"  # a character split between two reads is not an error
    ok.write_text("ab✓✓✓cd\n" * 5, encoding="utf-8")
    done = prepare(open_source(str(ok)), "char")
    assert done.tokenizer.decode(stored(done).tolist()) == "ab✓✓✓cd\n" * 5


def test_a_corpus_shorter_than_a_context_is_refused(tmp_path, cache_dir):
    (tmp_path / "short.txt").write_text("too short", encoding="utf-8")
    done = prepare(open_source(str(tmp_path / "short.txt")), "char")
    with pytest.raises(DataError, match="too short"):
        done.tokens(0.1, block_size=64)


def test_prepare_command_then_train_finds_it_and_resume_refuses_other_data(tmp_path, cache_dir,
                                                                           english_text):
    data = tmp_path / "a.jsonl"
    write_jsonl(data, [{"text": english_text[i:i + 5000]} for i in range(0, 30_000, 5000)])
    first = cli("prepare", "--data", data)
    assert first.returncode == 0, first.stderr
    assert "prepared in" in first.stdout and str(cache_dir) in first.stdout
    again = cli("prepare", "--data", data)
    assert "already prepared" in again.stdout
    tiny = ["--preset", "tiny", "--steps", "4", "--eval-interval", "2", "--quiet"]
    run = cli("train", "--data", data, "--out", tmp_path / "run", *tiny)
    assert run.returncode == 0, run.stderr
    events = [json.loads(line) for line in (tmp_path / "run" / "events.jsonl").open()]
    assert [e["cached"] for e in events if e["type"] == "prepared"] == [True]
    other = tmp_path / "b.txt"
    other.write_text(english_text[:20_000], encoding="utf-8")
    refused = cli("train", "--resume", tmp_path / "run", "--data", other, "--steps", "6")
    assert_one_line_error(refused, "--resume", "on its own data")


def test_bad_input_is_one_line_on_the_command_line(tmp_path, cache_dir):
    write_jsonl(tmp_path / "c.jsonl", ['{"text": "fine"}', "not json"])
    assert_one_line_error(cli("prepare", "--data", tmp_path / "c.jsonl"), "c.jsonl:2: not JSON")
    (tmp_path / "empty.txt").write_text("")
    assert_one_line_error(cli("prepare", "--data", tmp_path / "empty.txt"), "has no text")
    # train says it in the run's events too, so the TUI's run shows it: failed, not vanished
    run = tmp_path / "run"
    assert_one_line_error(cli("train", "--data", tmp_path / "c.jsonl", "--out", run,
                              "--preset", "tiny", "--steps", "2"), "c.jsonl:2: not JSON")
    last = read_events(run)[-1]
    assert last["type"] == "error" and "c.jsonl:2: not JSON" in last["message"]
    assert summarize_run(run).status == "failed"


def test_the_builtin_corpus_found_prepared_is_not_built_again(cache_dir, monkeypatch,
                                                             builtin_corpus):
    """Building the built-in text parses the standard library (about 2 s): a second run that finds
    it prepared must not pay that, nor tokenize."""
    import minigpt.data.builtin

    # the first preparation reads the text as builtin_text() gives it, parsed once a session
    monkeypatch.setattr(minigpt.data.builtin, "builtin_text", lambda: builtin_corpus)
    first = prepare(open_source("builtin"), "char")
    assert not first.cached and first.manifest["tokens"] > 1_000_000

    def not_again(*args, **kwargs):
        raise AssertionError("built again")
    monkeypatch.setattr(minigpt.data.builtin, "builtin_text", not_again)
    monkeypatch.setattr(prepare_module, "_encode", not_again)
    second = prepare(open_source("builtin"), "char")
    assert second.cached and second.path == first.path
