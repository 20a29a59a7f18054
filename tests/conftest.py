"""Shared fixtures: small real text and tiny models, so the suite runs in minutes on 2 cores."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from minigpt.data.builtin import builtin_text
from minigpt.model.config import GPTConfig
from minigpt.train.config import preset

# The reference corpora live beside the project (../shared/corpora), never inside it.
SHARED_CORPORA = Path(os.environ.get(
    "MINIGPT_SHARED_CORPORA", Path(__file__).resolve().parents[2] / "shared" / "corpora"))


def shared_corpus(name: str) -> Path:
    path = SHARED_CORPORA / name
    if not path.is_file():
        pytest.skip(f"{name} not found in {SHARED_CORPORA} (set MINIGPT_SHARED_CORPORA)")
    return path


@dataclass
class Corpus:
    """Text held in memory, with where it came from: what tests train on."""

    text: str
    source: str = "test"
    description: str = "test text"


def prepare_data(corpus: Corpus, cfg, tokenizer=None):
    """Text tokenized in memory (the tokenizer built from it unless given) and split, as a run's
    PreparedData: what `minigpt train` makes through the cache, without one."""
    from minigpt.data.batches import TokenData
    from minigpt.data.prepare import PreparedData
    from minigpt.data.tokenizer import BPETokenizer, CharTokenizer

    if tokenizer is None:
        tokenizer = (BPETokenizer.train(corpus.text, cfg.bpe_vocab_size) if cfg.tokenizer == "bpe"
                     else CharTokenizer.from_text(corpus.text))
    tokens = TokenData.from_ids(tokenizer.encode(corpus.text), cfg.val_fraction,
                                cfg.model.block_size)
    return PreparedData(tokenizer, tokens, corpus.source, corpus.description)


@pytest.fixture(scope="session", autouse=True)
def _checkout_left_alone():
    """No test leaves a run in the checkout's checkpoints/ (where `minigpt train` or `ablate`
    puts a new run when it is started from the repository without --out): the user's runs live
    there, and the TUI lists them."""
    runs = Path(__file__).resolve().parents[1] / "checkpoints"
    before = set(os.listdir(runs)) if runs.is_dir() else set()
    yield
    left = (set(os.listdir(runs)) if runs.is_dir() else set()) - before
    assert not left, f"the tests left {sorted(left)} in {runs}: give each run a tmp_path"


@pytest.fixture(scope="session", autouse=True)
def _private_cache(tmp_path_factory):
    """Prepared data and downloads go to a folder of the test session, never ~/.cache/minigpt
    (the `cache_dir` fixture gives a test one of its own)."""
    saved = os.environ.get("MINIGPT_CACHE")
    os.environ["MINIGPT_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if saved is None:
        os.environ.pop("MINIGPT_CACHE", None)
    else:
        os.environ["MINIGPT_CACHE"] = saved


# The tests' models are tiny: a second thread makes each of their products wait on a barrier, and
# on a shared 2-core machine for a thread that is not running (decoding 100 tokens in this
# process: 0.1 s on one thread, 3 s on two, with other jobs beside). The session's fixtures and
# each test run on one, and so do the processes the slow tests start (minigpt, torchrun), through
# OMP_NUM_THREADS, which torch reads as it starts (a 3-step `minigpt train`: 3.4 s on one, 12.9 s
# on two, on the same loaded machine); what those tests check of a process (its exit status,
# signals, output, imports) does not depend on its threads. A value set outside is kept.
torch.set_num_threads(1)
os.environ.setdefault("OMP_NUM_THREADS", "1")

# The tests of stopping a run send signals, and read what minigpt makes of them. A suite started
# in the background (`nohup .ci/run &`) inherits SIGHUP and SIGINT ignored, which minigpt rightly
# leaves alone: the tests start from the dispositions a terminal gives.
signal.signal(signal.SIGINT, signal.default_int_handler)
if hasattr(signal, "SIGHUP"):
    signal.signal(signal.SIGHUP, signal.SIG_DFL)


@pytest.fixture(autouse=True)
def _deterministic_threads():
    """Each test starts seeded, on one thread (whatever the test before it set)."""
    torch.manual_seed(0)
    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def builtin_corpus() -> str:
    """The built-in corpus, about 1.2 MB: parsed from the standard library once a session (about
    2 s), not by each test that reads it."""
    return builtin_text()


@pytest.fixture(scope="session")
def english_text(builtin_corpus) -> str:
    """60 kB of real English prose from the built-in corpus."""
    return builtin_corpus[:60_000]


@pytest.fixture
def corpus(english_text) -> Corpus:
    return Corpus(english_text, "test", "test text")


@pytest.fixture
def tiny_model_config() -> GPTConfig:
    return GPTConfig(vocab_size=50, block_size=16, n_layer=2, n_head=2, n_embd=32)


@pytest.fixture(scope="session")
def tiny_train_config():
    """A training recipe that takes a second or two (a frozen TrainConfig: shared)."""
    return preset("tiny").with_overrides(
        block_size=32, n_embd=32, n_head=2, n_layer=2, batch_size=8, max_steps=40,
        warmup_steps=5, eval_interval=20, eval_iters=2, log_interval=5, sample_tokens=20,
    )


@pytest.fixture
def broken_compile(monkeypatch):
    """torch.compile as it is where compiling fails: the compiled module raises when called."""
    def compile_that_fails(module, **kwargs):
        def run(*args, **kw):
            raise RuntimeError("InductorError: no working C++ compiler\n(details)")
        return run
    monkeypatch.setattr(torch, "compile", compile_that_fails)


@pytest.fixture
def cache_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "cache"
    monkeypatch.setenv("MINIGPT_CACHE", str(path))
    return path


def minigpt(*args, input=None, env=None, cwd=None, timeout=240) -> subprocess.CompletedProcess:
    """Run the real command line, as a user would, on a wide terminal unless env says otherwise:
    Rich wraps a pipe's output at 80 columns, which would break a long temporary path in two."""
    env = os.environ | {"COLUMNS": "1000"} if env is None else env
    return subprocess.run([sys.executable, "-m", "minigpt", *map(str, args)], input=input,
                          capture_output=True, text=True, env=env, cwd=cwd, timeout=timeout)


def assert_one_line_error(result, *fragments) -> None:
    """A user error: non-zero exit, no traceback, one line on stderr naming the problem."""
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("minigpt: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


@dataclass
class Ran:
    """What a command printed and its exit status: a child process's, or an in-process run's."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args, input=None) -> Ran:
    """Run the command line in this process (Typer's CliRunner): a user's view of it, without the
    second a new process spends importing torch. A traceback is a bug: it is raised here."""
    from typer.testing import CliRunner

    from minigpt.cli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return Ran(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory, english_text) -> Path:
    """A tiny char-level model saved as `minigpt train` saves one (resumable), built in this
    process in a second: for commands that read a checkpoint."""
    from minigpt.checkpoint import save_checkpoint
    from minigpt.data.tokenizer import CharTokenizer
    from minigpt.model.gpt import GPT

    tok = CharTokenizer.from_text(english_text)
    cfg = preset("tiny").with_overrides(vocab_size=tok.vocab_size, block_size=32, n_embd=32,
                                        n_head=2, n_layer=2)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tiny") / "model.pt"
    save_checkpoint(path, GPT(cfg.model), tok, cfg, {"step": 0}, {"step": 0, "data": "test"})
    return path
