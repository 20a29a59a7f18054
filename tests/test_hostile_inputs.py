"""Tried as a hostile user would: each input that once lost data, crashed or misled, kept here so
that it never does again. One section per round of probing; each test names what it once did."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import assert_one_line_error, cli

from minigpt.runs.log import read_events

# --- round three -----------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["events.jsonl", "data.jsonl", "corpus.ndjson", "model.pt",
                                  "run.log", ".lock"])
def test_json_never_replaces_a_run_a_corpus_or_a_checkpoint(tiny_checkpoint, tmp_path, name):
    """inspect --json RUN/events.jsonl wrote over the run's history and said 'wrote', exit 0; a
    JSON Lines corpus became an inspect dump: the check looked at the first byte only."""
    target = tmp_path / name
    before = json.dumps({"type": "start", "step": 0}) + "\n" + json.dumps({"type": "done"}) + "\n"
    target.write_text(before, encoding="utf-8")
    result = cli("inspect", "--ckpt", tiny_checkpoint, "-p", "the", "--json", target)
    assert_one_line_error(result, name)
    assert target.read_text(encoding="utf-8") == before
    target.unlink()  # nor is a new file of such a name made
    assert_one_line_error(cli("inspect", "--ckpt", tiny_checkpoint, "-p", "the", "--json", target))
    assert not target.exists()


@pytest.mark.parametrize("content", ['{"tokens": []}\n', "[1, 2]\n", "notes\n", ""])
def test_json_replaces_only_what_an_earlier_json_wrote(tiny_checkpoint, tmp_path, content):
    """A user's own JSON (an object or a list), text, an empty file: kept, and the command refused
    before any work."""
    target = tmp_path / "out.json"
    target.write_text(content, encoding="utf-8")
    assert_one_line_error(cli("inspect", "--ckpt", tiny_checkpoint, "-p", "the", "--json", target),
                          "was not written by --json")
    assert target.read_text(encoding="utf-8") == content


def test_json_replaces_its_own_earlier_output(tiny_checkpoint, tmp_path):
    target = tmp_path / "out.json"
    for prompt in ("the", "the cat"):
        result = cli("inspect", "--ckpt", tiny_checkpoint, "-p", prompt, "--json", target)
        assert result.returncode == 0, result.stderr
        written = json.loads(target.read_text(encoding="utf-8"))
        assert written["written_by"] == "minigpt inspect"
        assert "".join(t["text"] for t in written["tokens"]) == prompt
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # no temporary file left


# the prepared-data cache: whatever is damaged is said once, naming the folder, and prepared again

def _damage_tokens_truncated(folder):
    path = folder / "tokens.bin"
    path.write_bytes(path.read_bytes()[:100])


def _damage_tokens_random(folder):
    path = folder / "tokens.bin"
    path.write_bytes(bytes(range(256)) * (path.stat().st_size // 256)
                     + b"\xff" * (path.stat().st_size % 256))


def _damage_manifest_garbled(folder):
    (folder / "manifest.json").write_text('{"tokens": 12', encoding="utf-8")


def _damage_manifest_keyless(folder):
    (folder / "manifest.json").write_text('{"format": 1}', encoding="utf-8")


def _damage_manifest_deleted(folder):
    (folder / "manifest.json").unlink()


def _damage_tokenizer(folder):
    (folder / "tokenizer.json").write_text("{", encoding="utf-8")


@pytest.mark.parametrize("damage", [_damage_tokens_truncated, _damage_tokens_random,
                                    _damage_manifest_garbled, _damage_manifest_keyless,
                                    _damage_manifest_deleted, _damage_tokenizer])
def test_a_damaged_prepared_folder_is_prepared_again(cache_dir, tmp_path, english_text, damage):
    """A truncated tokens.bin gave 'mmap length is greater than file size' and prepare still said
    'already prepared'; random bytes an IndexError; a damaged manifest a JSONDecodeError or
    KeyError; a deleted one 'Directory not empty', for ever."""
    data = tmp_path / "corpus.txt"
    data.write_text(english_text[:5000], encoding="utf-8")
    first = cli("prepare", "--data", data)
    assert first.returncode == 0, first.stderr
    [folder] = (cache_dir / "prepared").iterdir()
    expected = (folder / "tokens.bin").read_bytes()
    damage(folder)
    again = cli("prepare", "--data", data)
    assert again.returncode == 0, again.stderr
    [note] = [line for line in again.stdout.splitlines() if line.startswith("note:")]
    assert f"the prepared data in {folder} is damaged" in note and "preparing it again" in note
    assert "already prepared" not in again.stdout
    assert (folder / "tokens.bin").read_bytes() == expected  # whole again, and the same
    assert [p.name for p in (cache_dir / "prepared").iterdir()] == [folder.name]  # nothing left
    third = cli("prepare", "--data", data)
    assert "already prepared" in third.stdout and "note:" not in third.stdout


@pytest.mark.parametrize("damage", ["{", '{"tokenizer": {"kind": "char", "chars": "ab"}}', ""])
def test_a_damaged_cached_tokenizer_is_built_again(cache_dir, tmp_path, english_text, damage):
    """A damaged tokenizers/<key>.json gave a JSONDecodeError; a hand-edited one would have been
    trusted."""
    data = tmp_path / "corpus.txt"
    data.write_text(english_text[:5000], encoding="utf-8")
    assert cli("prepare", "--data", data).returncode == 0
    [cached] = (cache_dir / "tokenizers").iterdir()
    cached.write_text(damage, encoding="utf-8")
    again = cli("prepare", "--data", data)
    assert again.returncode == 0, again.stderr
    assert f"note: the cached tokenizer {cached} is damaged" in again.stdout
    assert "already prepared" in again.stdout  # the same tokenizer: its tokens were whole
    assert [p.name for p in (cache_dir / "tokenizers").iterdir()] == [cached.name]


def test_a_failed_preparation_is_the_run_s_last_event(cache_dir, tmp_path, monkeypatch):
    """A preparation that failed on something unforeseen left no error event: the TUI showed the
    run as 'ended', as if it had been killed."""
    from minigpt.data import prepare as prepare_module
    from minigpt.runs.log import read_events

    def broken(*args, **kwargs):
        raise RuntimeError("the unforeseen")

    monkeypatch.setattr(prepare_module, "_encode", broken)
    data = tmp_path / "corpus.txt"
    data.write_text("some text " * 100, encoding="utf-8")
    with pytest.raises(RuntimeError):
        cli("train", "--data", data, "--preset", "tiny", "--out", tmp_path / "run", "-q")
    last = read_events(tmp_path / "run")[-1]
    assert last["type"] == "error" and "the unforeseen" in last["message"]


def test_an_empty_cache_variable_is_the_default_not_the_current_folder(monkeypatch, tmp_path):
    from minigpt.data.download import cache_dir

    monkeypatch.setenv("MINIGPT_CACHE", "")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "minigpt"


# --data: what a corpus can hold

def test_a_lone_surrogate_in_json_lines_is_one_line_and_leaves_nothing(cache_dir, tmp_path):
    r"""{"text": "abc \ud800 def"} is valid JSON but no text: UnicodeEncodeError, and an empty
    .<hash>.json.tmp-PID left in the tokenizer cache by each try."""
    data = tmp_path / "data.jsonl"
    data.write_text('{"text": "fine"}\n{"text": "abc \\ud800 def"}\n', encoding="utf-8")
    for tokenizer in ("char", "bpe"):
        result = cli("prepare", "--data", data, "--tokenizer", tokenizer)
        assert_one_line_error(result, f"{data}:2", "lone surrogate", "\\ud800")
    assert not cache_dir.exists() or not [p for p in cache_dir.rglob("*") if p.is_file()]


def test_parquet_text_as_pandas_writes_it_is_text(tmp_path, cache_dir):
    """Dictionary-encoded (a pandas category column) and string_view columns were refused as
    'not text'."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["one document", "another one", "one document"]
    columns = {"dictionary": pa.array(texts).dictionary_encode(),
               "view": pa.array(texts, type=pa.string_view())}
    for name, column in columns.items():
        path = tmp_path / f"{name}.parquet"
        pq.write_table(pa.table({"text": column}), path)
        result = cli("prepare", "--data", path)
        assert result.returncode == 0, result.stderr
        chars = sum(map(len, texts)) + 2 * len("\n\n")  # the documents, a blank line between
        assert result.stdout.startswith(f"{path}, ") and f": {chars} char tokens" in result.stdout


def test_a_corrupt_parquet_file_is_named(tmp_path, cache_dir):
    """'cannot write or read: Corrupt snappy compressed data.' named no file."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "data.parquet"
    pq.write_table(pa.table({"text": [f"document {i} of some length " * 40 for i in range(2000)]}),
                   path, compression="snappy")
    raw = bytearray(path.read_bytes())
    for at in range(200, len(raw) // 2, 7):  # the pages, not the footer that names them
        raw[at] ^= 0x5A
    path.write_bytes(bytes(raw))
    assert_one_line_error(cli("prepare", "--data", path), f"cannot read {path} as Parquet",
                          "Corrupt snappy compressed data")


def test_a_folder_of_one_file_says_one_file(tmp_path, cache_dir):
    folder = tmp_path / "docs"
    folder.mkdir()
    (folder / "a.txt").write_text("some text\n" * 20, encoding="utf-8")
    result = cli("prepare", "--data", folder)
    assert result.returncode == 0 and result.stdout.startswith(f"1 file in {folder}, ")


# --- stops: a signal ends a run with the shell's status for it, after saving --------------------

TINY_RUN = ["--preset", "tiny", "--block-size", "32", "--n-embd", "32", "--batch-size", "4",
            "--steps", "100000", "--eval-interval", "100000"]


def _start_training(tmp_path, english_text, **popen):
    """A long tiny run, started as a user would; returns (process, run folder) once it steps."""
    data = tmp_path / "corpus.txt"
    data.write_text(english_text[:20_000], encoding="utf-8")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "minigpt", "train", "--data", str(data),
                             "--out", str(run_dir), *TINY_RUN],
                            preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL),
                            **popen)
    wait_until(lambda: any(e["type"] == "step" for e in read_events(run_dir)), "a step",
               proc=proc)
    return proc, run_dir


def wait_until(condition, what, proc=None, timeout=120):
    deadline = time.monotonic() + timeout
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the process ended ({proc.returncode}) before {what}")
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} in {timeout} s")
        time.sleep(0.1)


def _stopped_as_saved(run_dir, signal_said):
    """The run's last event says it stopped and why, and the checkpoint holds its last step."""
    from minigpt.checkpoint import load_checkpoint

    events = read_events(run_dir)
    done = events[-1]
    assert done["type"] == "done" and done["reason"] == "stopped", done
    assert done["signal"] == signal_said
    assert load_checkpoint(run_dir).step == done["step"] > 0


@pytest.mark.slow
def test_sigterm_saves_and_exits_143(tmp_path, english_text):
    """A SIGTERM'd run exited 0: `train && next`, a scheduler or `timeout` took it for a
    finished one."""
    proc, run_dir = _start_training(tmp_path, english_text, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, text=True)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "stopped (SIGTERM) at step" in out
    _stopped_as_saved(run_dir, "SIGTERM")


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="POSIX terminals")
def test_a_closed_terminal_saves_and_exits_129(tmp_path, english_text):
    """Closing the terminal of `minigpt train` (SIGHUP, a dropped SSH connection) killed it
    without saving: 120 steps lost, and `tui --attach` showed it 'ended' as if they were kept."""
    import pty
    import select
    import threading

    master, terminal = pty.openpty()
    reading = threading.Event()
    reading.set()

    def drain():  # a terminal that shows what it is sent, so the run never blocks on it
        while reading.is_set():
            if select.select([master], [], [], 0.1)[0]:
                try:
                    os.read(master, 65536)
                except OSError:
                    return

    reader = threading.Thread(target=drain)
    reader.start()
    try:
        proc, run_dir = _start_training(tmp_path, english_text, stdin=terminal, stdout=terminal,
                                        stderr=terminal, start_new_session=True)
    finally:
        os.close(terminal)
        reading.clear()
        reader.join()
    os.close(master)  # the terminal is gone: writing to it now fails
    proc.send_signal(signal.SIGHUP)
    assert proc.wait(timeout=120) == 129
    _stopped_as_saved(run_dir, "SIGHUP: the terminal closed")


@pytest.mark.slow
def test_nohup_keeps_a_run_going_through_a_hangup(tmp_path, english_text):
    """Two runs at once, one started as a shell starts it, the other under nohup (SIGHUP
    ignored): a hangup ends the first (129), the second trains on until stopped (143)."""
    other = tmp_path / "nohup"
    other.mkdir()
    (other / "corpus.txt").write_text(english_text[20_000:40_000], encoding="utf-8")
    nohup = subprocess.Popen([sys.executable, "-m", "minigpt", "train", "--data",
                              str(other / "corpus.txt"), "--out", str(other / "run"), *TINY_RUN],
                             preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc, run_dir = _start_training(tmp_path, english_text, stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
        try:
            proc.send_signal(signal.SIGHUP)  # the default kills it: this run was not under nohup
            assert proc.wait(timeout=120) == 129
        finally:
            if proc.poll() is None:
                proc.kill()
        wait_until(lambda: any(e["type"] == "step" for e in read_events(other / "run")),
                   "a step", proc=nohup)
        nohup.send_signal(signal.SIGHUP)
        steps = len(read_events(other / "run"))
        wait_until(lambda: len(read_events(other / "run")) > steps + 2, "more steps",
                   proc=nohup)
    finally:
        nohup.send_signal(signal.SIGTERM)
        nohup.wait(timeout=120)
    assert nohup.returncode == 143


@pytest.mark.slow
def test_a_stop_while_the_data_is_prepared_says_stopped(tmp_path, cache_dir, builtin_corpus):
    """Stopped with `x` while preparing, the TUI showed the run 'failed (read-only)' with no
    reason; it was stopped, and its folder can be used again."""
    data = tmp_path / "corpus.txt"
    data.write_text(builtin_corpus, encoding="utf-8")  # a BPE of 8,000 takes a few seconds
    run_dir = tmp_path / "run"
    args = [sys.executable, "-m", "minigpt", "train", "--data", str(data), "--out", str(run_dir),
            "--preset", "tiny", "--tokenizer", "bpe", "--vocab-size", "8000", "-q"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_until(lambda: any(e["type"] == "prepare" for e in read_events(run_dir)),
               "a preparation", proc=proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert err.strip() == "minigpt: stopped (SIGTERM) before training began; nothing was saved"
    events = read_events(run_dir)
    assert events[-1]["type"] == "done" and events[-1]["reason"] == "stopped"
    assert "start" not in [e["type"] for e in events]
    from minigpt.runs.state import summarize_run

    assert summarize_run(run_dir).status == "stopped"
    assert not list(cache_dir.rglob(".*tmp*"))  # nothing half-made left in the cache


# --- --out FILE.pt: several models, and their histories, side by side in one folder -----------

def test_two_models_train_side_by_side_in_one_folder(tmp_path, monkeypatch, english_text):
    """`train --out m.pt` then `train --data other.txt --out ja.pt` in the same folder was refused
    ('. holds another run (its events.jsonl)')."""
    from minigpt.checkpoint import load_checkpoint
    from minigpt.runs.state import list_runs

    monkeypatch.chdir(tmp_path)
    (tmp_path / "en.txt").write_text(english_text[:8000], encoding="utf-8")
    (tmp_path / "other.txt").write_text(english_text[8000:16000], encoding="utf-8")
    tiny = ["--preset", "tiny", "--block-size", "16", "--n-embd", "16", "--batch-size", "2",
            "--steps", "3", "-q"]
    for data, out in (("en.txt", "m.pt"), ("other.txt", "ja.pt")):
        result = cli("train", "--data", data, "--out", out, *tiny)
        assert result.returncode == 0, result.stderr
    for name, data in (("m", "en.txt"), ("ja", "other.txt")):
        assert load_checkpoint(tmp_path / f"{name}.pt").step == 3
        events = read_events(tmp_path / f"{name}.events.jsonl")
        start = next(e for e in events if e["type"] == "start")
        assert start["data"].startswith(data) and events[-1]["type"] == "done"
        assert events[-1]["checkpoint"] == f"{name}.pt"
        info = cli("info", f"{name}.pt")
        assert f"{name}.events.jsonl" in info.stdout
    assert not (tmp_path / "events.jsonl").exists()
    again = cli("train", "--data", "en.txt", "--out", "m.pt", *tiny)  # the rule still holds
    assert_one_line_error(again, "m.pt already exists")
    resumed = cli("train", "--resume", "m.pt", "--steps", "5", "-q")
    assert resumed.returncode == 0, resumed.stderr
    kinds = [e["type"] for e in read_events(tmp_path / "m.events.jsonl")]
    assert kinds.count("start") == 2 and kinds[-1] == "done"  # its history goes on in its file
    assert {r.path.name for r in list_runs(tmp_path)} == {"m.events.jsonl", "ja.events.jsonl"}
    from minigpt.runs.files import find_run
    from minigpt.runs.state import summarize_run

    assert summarize_run(find_run(tmp_path / "ja.pt")).step == 3  # what tui --attach ja.pt follows


# --- smaller ones ------------------------------------------------------------------------------

def test_export_into_the_current_folder(tiny_checkpoint, tmp_path, monkeypatch):
    """`export-hf RUN .` crashed: ValueError: PosixPath('.') has an empty name."""
    monkeypatch.chdir(tmp_path)
    result = cli("export-hf", tiny_checkpoint, ".")
    assert result.returncode == 0, result.stderr
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in tmp_path.iterdir()}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging left
    assert_one_line_error(cli("export-hf", tiny_checkpoint, ""), "empty")


def test_import_refuses_an_out_that_is_another_file(tmp_path):
    """`import-gpt2 X --out existing.txt` said 'cannot save existing.txt/model.pt: File exists'."""
    existing = tmp_path / "existing.txt"
    existing.write_text("mine\n", encoding="utf-8")
    assert_one_line_error(cli("import-gpt2", tmp_path / "nowhere", "--out", existing),
                          f"{existing} is a file and not a checkpoint")
    assert existing.read_text(encoding="utf-8") == "mine\n"


@pytest.mark.parametrize("field, value, fragment", [
    ("layer_norm_epsilon", "tiny", "layer_norm_epsilon must be a number, got 'tiny'"),
    ("tie_word_embeddings", "no", "tie_word_embeddings must be true or false, got 'no'"),
    ("n_layer", [2], "n_layer must be a whole number"),
])
def test_a_gpt2_config_field_of_the_wrong_type_is_one_line(tmp_path, field, value, fragment):
    """import-gpt2 of a config.json saying "layer_norm_epsilon": "tiny" ended in a traceback
    (ValueError from float()); "tie_word_embeddings": "no" read as true, a silently other model."""
    config = {"model_type": "gpt2", "vocab_size": 40, "n_positions": 16, "n_embd": 32,
              "n_layer": 1, "n_head": 2, field: value}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert_one_line_error(cli("import-gpt2", tmp_path, "--out", tmp_path / "x.pt"), fragment)
    assert not (tmp_path / "x.pt").exists()


@pytest.mark.parametrize("field, value, fragment", [
    ("model_type", ["llama"], "model_type is ['llama']"),
    ("rope_parameters", "default", "rope_parameters must be a JSON object, got 'default'"),
    ("rope_scaling", {"type": "yarn", "factor": 4.0}, "rope_scaling asks for 'yarn' RoPE"),
    ("num_attention_heads", "4", "num_attention_heads must be a whole number, got '4'"),
])
def test_a_llama_config_field_of_the_wrong_type_is_one_line(tmp_path, field, value, fragment):
    """import-hf of a config.json whose fields are of the wrong type: a list for model_type is
    no key of the table of architectures (a TypeError, unhashable, when looked up there)."""
    config = {"model_type": "llama", "vocab_size": 40, "hidden_size": 32, "intermediate_size": 64,
              "num_hidden_layers": 1, "num_attention_heads": 4, field: value}
    (tmp_path / "config.json").write_text(json.dumps(config), encoding="utf-8")
    assert_one_line_error(cli("import-hf", tmp_path, "--out", tmp_path / "x.pt"), fragment)
    assert not (tmp_path / "x.pt").exists()


def test_resumed_runs_report_their_own_speed(tmp_path, english_text, monkeypatch):
    """After --resume the end said 861,736 tokens/s where the steps ran at 52-55k: every token
    since step 0 over the time since the resume. With a clock where each step takes a second,
    the rate is one step's tokens a second, however many steps ran before."""
    import itertools

    from minigpt.checkpoint import load_checkpoint
    from minigpt.data.batches import TokenData
    from minigpt.data.prepare import PreparedData
    from minigpt.data.tokenizer import CharTokenizer
    from minigpt.train import trainer as train_module
    from minigpt.train.config import preset
    from minigpt.train.trainer import Trainer

    tok = CharTokenizer.from_text(english_text)
    data = PreparedData(tok, TokenData.from_ids(tok.encode(english_text[:20_000]), 0.1, 16),
                        "test", "test")
    cfg = preset("tiny").with_overrides(block_size=16, n_embd=16, n_head=2, n_layer=1,
                                        batch_size=2, max_steps=6, eval_interval=100,
                                        eval_iters=1, sample_tokens=0)
    list(Trainer(cfg, data, checkpoint_path=tmp_path / "m.pt").run())
    ticks = itertools.count()
    monkeypatch.setattr(train_module.time, "perf_counter", lambda: float(next(ticks)))
    saved = load_checkpoint(tmp_path / "m.pt")
    resumed = Trainer.resume(saved, data, saved.train_config.with_overrides(max_steps=8),
                             checkpoint_path=tmp_path / "m.pt")
    done = list(resumed.run())[-1]
    assert done["type"] == "done" and done["step"] == 8
    assert done["tokens_per_s"] == cfg.tokens_per_step  # 4x that before: 8 steps' over 2


@pytest.mark.slow
def test_generate_into_a_closed_pipe_is_quiet(tiny_checkpoint):
    """`generate --stats | head -c 100` ended with 'minigpt: error: cannot write or read:
    Broken pipe', exit 1."""
    proc = subprocess.Popen([sys.executable, "-m", "minigpt", "generate", "--ckpt",
                             str(tiny_checkpoint), "-p", "the", "-n", "3000", "--stats"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(100)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert "error" not in err and "Exception" not in err, err


def test_a_stop_from_the_tui_before_any_event_reads_as_stopped():
    """A stop that lands while Python starts ends the run with no word: the pane that sent it
    knows it was stopped, not that it failed."""
    from minigpt.runs.state import RunState

    for status in ("starting", "preparing"):
        state = RunState(status=status)
        state.process_ended("", asked_to_stop=True)
        assert state.status == "stopped"
    state = RunState(status="running")
    state.process_ended("", asked_to_stop=True)
    assert state.status == "ended"  # a training run saves when stopped: gone unsaid is killed
