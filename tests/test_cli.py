"""The command line as users meet it: exit codes, error lines and output, run in this process
(Typer's CliRunner, `cli`); and, in the slow tier, the few things only a real process shows: a
whole `minigpt train`, Ctrl-C, and a start that never imports torch."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import assert_one_line_error, cli, minigpt

from minigpt.checkpoint import load_checkpoint

TINY = ["--preset", "tiny", "--block-size", "32", "--n-embd", "32", "--batch-size", "8",
        "--eval-interval", "20", "-q"]
STEPS = 4  # a run in this process: what the tests read is the run's record, not what it learnt


@pytest.fixture(autouse=True)
def _no_tui(monkeypatch):
    """`tui` and `chat` without --plain run the Textual app, which has no place in CliRunner:
    here each is refused before it would start, or the test fails at once."""
    from minigpt_tui.app import MinigptApp

    def started(self, *args, **kwargs):
        raise AssertionError("the TUI started")

    monkeypatch.setattr(MinigptApp, "run", started)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, english_text):
    """A tiny model trained through `minigpt train` (in this process), shared by the tests
    below. Its data and run have names Rich would read as markup: printed as they are."""
    root = tmp_path_factory.mktemp("cli")
    data = root / "[red]corpus.txt"
    data.write_text(english_text[:40_000], encoding="utf-8")
    ckpt = root / "[blue]run" / "model.pt"
    result = cli("train", "--data", data, "--steps", STEPS, "--out", ckpt, *TINY)
    assert result.returncode == 0, result.stderr
    return root, ckpt, data, result


def test_train_reports_and_saves(trained):
    _, ckpt, data, result = trained
    shown = "".join(result.stdout.split())  # long lines are wrapped at 80 columns
    assert f"doneatstep{STEPS}" in shown
    assert f"data{data}" in shown and f"savedto{ckpt}" in shown  # the names, not their markup
    assert load_checkpoint(ckpt).step == STEPS
    # the run's log: its data's preparation, then the run (that one process writes both: the
    # slow test_a_real_train_reports_saves_and_logs_from_one_process)
    kinds = [json.loads(line)["type"] for line in (ckpt.parent / "events.jsonl").open()]
    start = kinds.index("start")
    assert set(kinds[:start]) <= {"prepare", "prepared"} and kinds[start - 1] == "prepared"
    assert kinds[-1] == "done"


def test_default_run_directory_is_under_checkpoints(tmp_path, trained, monkeypatch):
    _, _, data, _ = trained
    monkeypatch.chdir(tmp_path)
    result = cli("train", "--data", data, "--steps", 2, "--name", "my run", *TINY)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "checkpoints" / "my-run" / "model.pt").is_file()
    assert (tmp_path / "checkpoints" / "my-run" / "events.jsonl").is_file()


def test_resume_continues_to_more_steps(trained, tmp_path):
    _, ckpt, _, _ = trained
    copy = tmp_path / "model.pt"
    copy.write_bytes(ckpt.read_bytes())
    result = cli("train", "--resume", copy, "--steps", STEPS + 2, "-q")
    assert result.returncode == 0, result.stderr
    assert load_checkpoint(copy).step == STEPS + 2
    again = cli("train", "--resume", copy, "--steps", STEPS + 2, "-q")
    assert_one_line_error(again, f"already at step {STEPS + 2}")
    changed = cli("train", "--resume", copy, "--steps", STEPS + 10, "--n-layer", 3)
    assert_one_line_error(changed, "only its length (--steps or --time) and --eval-interval")


def test_generate_prints_prompt_and_continuation(trained):
    import torch

    from minigpt.backends.cpu import SAID, limited_here
    from minigpt.backends.hardware import has_native_bf16

    _, ckpt, _, _ = trained
    result = cli("generate", "--ckpt", ckpt, "--prompt", "The ", "-n", 30, "--seed", 1,
                 "--strategy", "greedy", "--stats")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The ") and len(result.stdout) > len("The ") + 10
    assert "tokens/s" in result.stderr
    held = "bf16" if has_native_bf16(torch.device("cpu")) else "fp32"
    # oneDNN's limit is set only before torch loads: never in this process (the slow
    # test_generate_reads_bf16_weights_... sees it said by a real one)
    note = f"; {SAID}" if held == "bf16" and limited_here() else ""
    assert f"{held} weights (auto{note}), cpu" in result.stderr
    again = cli("generate", "--ckpt", ckpt, "--prompt", "The ", "-n", 30, "--seed", 1,
                "--strategy", "greedy")
    assert again.stdout == result.stdout


@pytest.mark.parametrize("weights", ["bf16", "int8"])
def test_generate_with_smaller_weights(trained, weights):
    _, ckpt, _, _ = trained
    result = cli("generate", "--ckpt", ckpt, "--prompt", "The ", "-n", 30, "--seed", 1,
                 "--weights", weights)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The ") and len(result.stdout) > len("The ") + 10


@pytest.mark.parametrize("strategy", ["temperature", "top-k", "top-p", "min-p"])
def test_every_strategy_is_reachable(trained, strategy):
    _, ckpt, _, _ = trained
    result = cli("generate", "--ckpt", ckpt, "-p", "a", "-n", 5, "--strategy", strategy)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("a") and len(result.stdout) > 1


def test_chat_plain_continues_each_line(trained):
    _, ckpt, _, _ = trained
    result = cli("chat", "--ckpt", ckpt, "--plain", "-n", 10, "--seed", 0,
                 input="The language\n/quit\n")
    assert result.returncode == 0, result.stderr
    assert "The language" in result.stdout


def test_info_describes_the_checkpoint(trained):
    _, ckpt, data, _ = trained
    result = cli("info", ckpt)
    assert result.returncode == 0, result.stderr
    for fragment in ("2 layers", "char", "step", f"{STEPS} of {STEPS}", "val loss", "resumable"):
        assert fragment in result.stdout
    shown = "".join(result.stdout.split())
    assert str(ckpt) in shown and str(data) in shown  # the names, not their markup


def test_ablate_prints_a_table_and_writes_json(trained, tmp_path, monkeypatch):
    _, _, data, _ = trained
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "results.json"
    result = cli("ablate", "attention", "--data", data, "--steps", 3, "--preset", "tiny",
                 "--json", out, "-q")
    assert result.returncode == 0, result.stderr
    assert "baseline" in result.stdout and "attention" in result.stdout
    written = json.loads(out.read_text())
    assert written["written_by"] == "minigpt ablate"
    rows = written["results"]
    assert [r["variant"] for r in rows] == ["baseline", "attention"]
    assert len(list((tmp_path / "checkpoints").glob("ablate-*/events.jsonl"))) == 1  # its run
    for r in rows:
        assert {"variant", "train_loss", "val_loss", "tokens_per_s", "seconds"} <= r.keys()
        assert 0 < r["distinct_4grams"] <= 1 and r["evidence"].startswith(r["description"])
        assert list(r["grad_norms"]) == ["embedding", "1", "2", "head"]
    # the per-layer summary and the evidence lines, as printed
    assert "gradient norm by layer" in result.stdout
    assert "distinct 4-grams in samples" in result.stdout


@pytest.mark.parametrize("args, fragments", [
    (["generate", "--ckpt", "missing.pt"], ["no such checkpoint"]),
    (["info", "missing.pt"], ["no such checkpoint"]),
    (["train", "--data", "missing.txt"], ["no such file or folder"]),
    (["train", "--preset", "huge"], ["unknown preset"]),
    (["train", "--steps", "many"], ["--steps"]),
    (["train", "--time", "0"], ["a time must be more than 0"]),
    (["train", "--time", "-5m"], ["'-5m' is not a time", "110s, 5m"]),
    (["train", "--time", "nan", "--data", "missing.txt"], ["'nan' is not a time"]),
    (["train", "--steps", "5", "--time", "5m"], ["--steps", "--time", "not both"]),
    (["train", "--dtype", "fp16", "--data", "missing.txt"], ["unknown dtype 'fp16'"]),
    (["prepare", "--tokenizer", "bpe", "--vocab-size", "99999999999"], ["--vocab-size"]),
    (["train", "--bogus"], ["No such option"]),
    (["ablate", "residuals", "--steps", "5"], ["unknown variant"]),
    (["frobnicate"], ["No such command"]),
    (["train", "--device", "cuda:9"], []),
    (["tui", "--data", "missing.txt"], ["no such file or folder"]),
    (["tui", "--attach", "."], ["not a run"]),
    (["tui", "--preset", "huge"], ["unknown preset"]),
    (["chat", "--ckpt", "missing.pt"], ["no such checkpoint"]),
])
def test_user_errors_are_one_line(tmp_path, monkeypatch, args, fragments):
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli(*args), *fragments)


def test_a_bad_dtype_is_refused_before_the_run_begins(tmp_path, monkeypatch):
    # before the data is prepared (minutes on a large corpus) or a run directory is made
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(cli("train", "--dtype", "fp16"), "unknown dtype")
    assert not (tmp_path / "checkpoints").exists()


def test_json_output_never_replaces_another_kind_of_file(trained, tmp_path, monkeypatch):
    """ablate refuses before any training (inspect's cases: test_hostile_inputs.py)."""
    _, _, data, _ = trained
    monkeypatch.chdir(tmp_path)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine\n", encoding="utf-8")
    assert_one_line_error(cli("ablate", "attention", "--data", data, "--steps", 2,
                              "--preset", "tiny", "--json", notes),
                          "was not written by --json")
    assert notes.read_text(encoding="utf-8") == "mine\n"
    assert not (tmp_path / "checkpoints").exists()  # refused before any training


def test_bad_sampling_values_are_one_line(tiny_checkpoint):
    for args, fragment in ((["--temperature", "-1"], "temperature"), (["--top-p", "0"], "top-p"),
                           (["--top-k", "0"], "top-k"), (["--weights", "fp16"], "--weights")):
        assert_one_line_error(cli("generate", "--ckpt", tiny_checkpoint, *args), fragment)


def test_prompt_outside_the_vocabulary_names_the_character(tiny_checkpoint):
    assert_one_line_error(cli("generate", "--ckpt", tiny_checkpoint, "-p", "猫"), "'猫' (U+732B")


def test_hostile_and_broken_checkpoints_are_one_line(tmp_path, tiny_checkpoint):
    import pickle

    evil = tmp_path / "evil.pt"
    evil.write_bytes(pickle.dumps({"x": os.system}))  # unpickling would import os.system
    assert_one_line_error(cli("info", evil), "refusing to load")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(tiny_checkpoint.read_bytes()[:1000])
    assert_one_line_error(cli("generate", "--ckpt", cut), "truncated or corrupt")
    assert_one_line_error(cli("chat", "--ckpt", cut), "truncated or corrupt")  # before the TUI
    assert_one_line_error(cli("chat", "--ckpt", tiny_checkpoint, "--weights", "int4"), "--weights")


@pytest.mark.parametrize("args, fragment", [
    (["train", "--lr", "nan"], "lr must be a finite number, got nan"),
    # a missing corpus too: the setting is refused before any data is read
    (["train", "--warmup-steps", "-5", "--data", "missing.txt"], "warmup_steps must be at least 0"),
    (["ablate", "attention", "--seed", "-1", "--data", "missing.txt"], "seed"),
    (["tui", "--steps", str(2**63), "--attach", "."], "max_steps (--steps) must be at most"),
    # a model too large for memory is refused before it is built
    (["train", "--preset", "tiny", "--n-embd", str(2**40), "--n-head", "1", "--steps", "1",
      "--data", "corpus.txt"], "parameters needs at least"),
    # a batch that cannot be allocated: one line, not torch's RuntimeError
    (["train", "--preset", "tiny", "--batch-size", str(2**62), "--steps", "1",
      "--data", "corpus.txt"], "out of memory"),
])
def test_bad_numbers_are_one_line(tmp_path, monkeypatch, english_text, args, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "corpus.txt").write_text(english_text[:5000], encoding="utf-8")
    assert_one_line_error(cli(*args), fragment)


@pytest.mark.parametrize("args", [
    ["generate", "--temperature", "nan"],
    ["chat", "--plain", "--repetition-penalty", "inf"],
    ["chat", "--temperature", "nan", "--weights", "int4"],  # the TUI's path: checked before it
])
def test_non_finite_sampling_settings_are_one_line(tiny_checkpoint, args):
    result = cli(*args, "--ckpt", tiny_checkpoint, input="hello\n")
    assert_one_line_error(result, "must be a finite number")


def tampered(ckpt, out, edit):
    import torch

    payload = torch.load(ckpt, weights_only=True)
    edit(payload)
    torch.save(payload, out)
    return out


HOSTILE = {
    "n_head 0": (lambda p: p["model_config"].update(n_head=0), "n_head must be at least 1"),
    "n_head 2.5": (lambda p: p["model_config"].update(n_head=2.5), "n_head must be a whole number"),
    "model null": (lambda p: p.update(model=None), "weights are not a mapping"),
    "meta step abc": (lambda p: p["meta"].update(step="abc"), "meta step must be a whole number"),
    "tokenizer too large": (lambda p: p["tokenizer"].update(chars=p["tokenizer"]["chars"] + "猫"),
                            "more than the model's vocabulary"),
}


@pytest.mark.parametrize("kind", HOSTILE)
def test_info_on_a_hand_edited_checkpoint_is_one_line(tiny_checkpoint, tmp_path, kind):
    edit, fragment = HOSTILE[kind]
    bad = tampered(tiny_checkpoint, tmp_path / "bad.pt", edit)
    assert_one_line_error(cli("info", bad), f"{bad}: ", fragment)


@pytest.mark.parametrize("command", ["generate", "chat", "resume", "init", "export-hf"])
def test_every_command_refuses_a_hand_edited_checkpoint_in_one_line(tiny_checkpoint, english_text,
                                                                    tmp_path, command):
    bad = tampered(tiny_checkpoint, tmp_path / "bad.pt", HOSTILE["model null"][0])
    data = tmp_path / "corpus.txt"
    data.write_text(english_text[:5000], encoding="utf-8")
    args = {"generate": ["generate", "--ckpt", bad],
            "chat": ["chat", "--plain", "--ckpt", bad],
            "resume": ["train", "--resume", bad, "--steps", 45, "--data", data],
            "init": ["train", "--init", bad, "--preset", "tiny", "--steps", 1, "--data", data],
            "export-hf": ["export-hf", bad, tmp_path / "hf"]}[command]
    assert_one_line_error(cli(*args, input="hello\n"), f"{bad}: ", "weights are not a mapping")
    assert not (tmp_path / "hf").exists()


def test_resume_refuses_another_preset_or_other_data(trained, tmp_path, monkeypatch):
    root, _, data, _ = trained
    # trained from one folder on a relative path, resumed from another: the same file
    monkeypatch.chdir(root)
    first = cli("train", "--data", data.name, "--steps", 2, "--out", tmp_path / "run", *TINY)
    assert first.returncode == 0, first.stderr
    ckpt = tmp_path / "run" / "model.pt"
    monkeypatch.chdir(tmp_path)
    resumed = cli("train", "--resume", ckpt, "--steps", 3, "-q")
    assert resumed.returncode == 0, resumed.stderr
    same = cli("train", "--resume", ckpt, "--steps", 4, "--data", data, "-q")
    assert same.returncode == 0, same.stderr
    assert load_checkpoint(ckpt).step == 4
    assert_one_line_error(cli("train", "--resume", ckpt, "--steps", 20, "--preset", "tiny"),
                          "only its length (--steps or --time) and --eval-interval", "preset")
    other = tmp_path / "other.txt"
    other.write_text(data.read_text(encoding="utf-8")[::-1], encoding="utf-8")  # same characters
    assert_one_line_error(cli("train", "--resume", ckpt, "--steps", 20, "--data", other),
                          f"was trained on {data}", "--init")
    assert_one_line_error(cli("train", "--resume", ckpt, "--steps", 20, "--data", "builtin"),
                          f"was trained on {data}")
    assert load_checkpoint(ckpt).step == 4


def test_a_run_folder_another_process_holds_is_refused(trained, tmp_path):
    """The run's lock held as another process holds it (its own lock file description, its pid
    written in it): train and ablate there are refused naming that process, before they write
    a line. That a real process's lock is seen, and goes with it when it is killed:
    test_events.py."""
    import fcntl

    _, _, data, _ = trained
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    holder = os.open(run_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.write(holder, b"4242\n")
        second = cli("train", "--data", data, "--steps", 10, "--out", run_dir, *TINY)
        assert_one_line_error(second, f"{run_dir} is in use by another run (pid 4242)")
        ablation = cli("ablate", "residual", "--steps", 2, "--out", run_dir, "--preset", "tiny")
        assert_one_line_error(ablation, "(pid 4242)")
    finally:
        os.close(holder)
    assert sorted(p.name for p in run_dir.iterdir()) == [".lock"]  # the refused wrote nothing


def test_a_new_run_never_overwrites_a_trained_model(trained):
    _, ckpt, data, _ = trained
    before = ckpt.read_bytes()
    result = cli("train", "--data", data, "--steps", 5, "--out", ckpt.parent, *TINY)
    assert_one_line_error(result, f"{ckpt} already exists: --resume {ckpt} continues its run")
    assert ckpt.read_bytes() == before


def test_a_new_run_never_writes_into_another_runs_log(trained, tmp_path, monkeypatch):
    """A run directory's events.jsonl is its own: an ablation there is refused before it writes a
    line (before, a run that failed on its data appended its preparation and its error to the
    trained run's log); another model named in the folder keeps its own log beside it."""
    _, ckpt, data, _ = trained
    monkeypatch.chdir(tmp_path)
    events = ckpt.parent / "events.jsonl"
    before = events.read_bytes()
    result = cli("ablate", "residual", "--steps", 2, "--out", ckpt.parent, "--preset", "tiny")
    assert_one_line_error(result, f"{ckpt.parent} holds another run (its events.jsonl)")
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    failed = cli("train", "--data", empty, "--steps", 5, "--out", ckpt.parent / "other.pt",
                 *TINY)
    assert_one_line_error(failed, "has no text")
    assert events.read_bytes() == before
    assert not (ckpt.parent / "other.pt").exists()
    assert (ckpt.parent / "other.events.jsonl").read_text().splitlines()[-1].count('"error"')


@pytest.mark.parametrize("out, fragment", [
    ("/proc/x.pt", "cannot write to /proc"),
    ("a-file", "a-file is a file, not a run directory"),
])
def test_an_unwritable_output_is_one_line(tmp_path, monkeypatch, out, fragment):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a-file").write_text("mine")
    result = cli("train", "--steps", 5, "--out", out, *TINY)
    assert_one_line_error(result, fragment)
    assert (tmp_path / "a-file").read_text() == "mine"


def test_help_lists_the_engines_choices_and_defaults():
    """The presets, strategies and sampling defaults the help shows are the engine's own."""
    from minigpt.infer.config import STRATEGIES, SamplingConfig
    from minigpt.train.config import PRESETS

    def help_of(command: str) -> str:
        result = cli(command, "--help")
        assert result.returncode == 0, result.stderr
        return " ".join(result.stdout.split())

    for command in ("train", "tui"):
        assert all(name in help_of(command) for name in PRESETS)
    for command in ("generate", "chat"):
        shown = help_of(command)
        assert all(name in shown for name in STRATEGIES)
        defaults = SamplingConfig()
        assert f"(>= 0). [default: {defaults.temperature}]" in shown  # --temperature
        assert f"[default: {defaults.strategy}]" in shown


def test_a_command_leaves_what_it_made_to_the_end_of_the_process(monkeypatch):
    """Python's last garbage collections would walk everything torch made at import, about half
    a second on the way out of every command: main() freezes it, even when the command fails."""
    import gc

    from minigpt.cli import app as cli_app

    monkeypatch.setattr(sys, "argv", ["minigpt", "generate", "--ckpt", "no-such.pt"])
    gc.unfreeze()
    try:
        with pytest.raises(SystemExit):
            cli_app.main()
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()


# --- real processes (slow): what only a process shows ------------------------------------------


@pytest.mark.slow
def test_a_real_train_reports_saves_and_logs_from_one_process(tmp_path, english_text):
    """`minigpt train` as a user starts it: its output, its checkpoint, and its log, whose
    preparation events come from the process that trains (a TUI attached while the data is
    prepared can tell the run lives)."""
    data = tmp_path / "corpus.txt"
    data.write_text(english_text[:40_000], encoding="utf-8")
    ckpt = tmp_path / "run" / "model.pt"
    result = minigpt("train", "--data", data, "--steps", 3, "--out", ckpt, *TINY, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "done at step 3" in result.stdout and str(ckpt) in result.stdout
    assert load_checkpoint(ckpt).step == 3
    events = [json.loads(line) for line in (ckpt.parent / "events.jsonl").read_text().splitlines()]
    kinds = [e["type"] for e in events]
    start = kinds.index("start")  # after the data's preparation, or finding it prepared
    assert set(kinds[:start]) <= {"prepare", "prepared"} and kinds[start - 1] == "prepared"
    assert {e["pid"] for e in events[:start]} == {events[start]["pid"]}
    assert [e["step"] for e in events if e["type"] == "eval"] == [0, 3]
    assert kinds[-1] == "done"


def onednn_kernels(verbose_output: str) -> set[str]:
    """The implementations oneDNN ran, from its ONEDNN_VERBOSE lines ('brg_matmul:avx512_...')."""
    return {line.split(",")[6] for line in verbose_output.splitlines()
            if line.startswith("onednn_verbose,") and ",exec,cpu," in line}


@pytest.mark.slow
def test_generate_reads_bf16_weights_with_avx512_kernels_where_the_cpu_has_amx(tiny_checkpoint):
    """On a CPU with AMX, oneDNN's AMX kernels read a batch-1 product's bf16 weights at half the
    bandwidth its AVX-512 BF16 ones do: generate limits it to those, says so, and leaves a limit
    the user set alone. Elsewhere nothing changes, and nothing is said."""
    from minigpt.backends.cpu import SAID, VARIABLE, cpu_flags

    env = {k: v for k, v in os.environ.items() if k != VARIABLE} | {"ONEDNN_VERBOSE": "1"}
    args = ("generate", "--ckpt", tiny_checkpoint, "-p", "the ", "-n", 5, "--weights", "bf16",
            "--stats")
    ours = minigpt(*args, env=env)
    users = minigpt(*args, env=env | {VARIABLE: "ALL"})  # oneDNN's name for no limit
    assert ours.returncode == 0 and users.returncode == 0, ours.stderr + users.stderr
    if "amx_bf16" in cpu_flags():
        assert onednn_kernels(ours.stdout) and not any("amx" in k for k in onednn_kernels(ours.stdout))
        assert SAID in ours.stderr
        assert any("amx" in k for k in onednn_kernels(users.stdout))
    else:
        assert SAID not in ours.stderr
    assert SAID not in users.stderr


@pytest.mark.slow
def test_file_names_are_printed_as_they_are_not_as_markup_on_a_terminal(tmp_path, english_text):
    """With colour on, as a terminal gets it, a file name is neither markup nor highlighted; the
    names in info's table are checked in this process (test_info_describes_the_checkpoint)."""
    data = tmp_path / "[red]d.txt"
    data.write_text(english_text[:20_000], encoding="utf-8")
    out = tmp_path / "[blue]run" / "[bold]t.pt"
    env = {**os.environ, "FORCE_COLOR": "1"}  # read by Rich when the process starts
    result = minigpt("train", "--data", data, "--steps", 1, "--out", out, *TINY, env=env)
    assert result.returncode == 0, result.stderr
    shown = "".join(result.stdout.split())  # long lines are wrapped at 80 columns
    assert f"data{data}" in shown and f"savedto{out}" in shown
    assert "\x1b[3" not in result.stdout and "\x1b]8" not in result.stdout  # no colour, no link
    info = minigpt("info", out, env=env)
    assert info.returncode == 0, info.stderr
    assert "\x1b[3" not in info.stdout and "\x1b]8" not in info.stdout


@pytest.mark.slow
def test_help_does_not_import_torch():
    code = ("import sys; sys.argv = ['minigpt', '--help']\n"
            "from minigpt.cli.app import main\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n"
            "print('torch imported:', 'torch' in sys.modules)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert "Usage: minigpt" in result.stdout
    assert "torch imported: False" in result.stdout


@pytest.mark.slow
def test_ctrl_c_saves_a_checkpoint_and_exits_cleanly(tmp_path, english_text):
    """A real run, interrupted after its first step: it saves and exits 130. While it runs, its
    folder is its own: a second trainer and an ablation there are refused, naming it, and write
    nothing (the refusal itself, fast: test_a_run_folder_another_process_holds_is_refused)."""
    data = tmp_path / "corpus.txt"
    data.write_text(english_text[:40_000], encoding="utf-8")
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minigpt", "train", "--data", str(data), "--steps", "100000",
         "--out", str(run_dir), *TINY, "--eval-interval", "100000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env=os.environ | {"COLUMNS": "1000"})  # a long path unwrapped, as conftest.minigpt
    try:
        events = run_dir / "events.jsonl"
        deadline = time.monotonic() + 120
        while not (events.exists() and '"type": "step"' in events.read_text()):
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        second = cli("train", "--data", data, "--steps", 10, "--out", run_dir, *TINY)
        assert_one_line_error(second, f"{run_dir} is in use by another run (pid {proc.pid})")
        ablation = cli("ablate", "residual", "--steps", 2, "--out", run_dir, "--preset", "tiny")
        assert_one_line_error(ablation, f"(pid {proc.pid})")
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted at step" in out and str(run_dir / "model.pt") in out
    assert load_checkpoint(run_dir).step > 0
    starts = [e for e in map(json.loads, events.read_text().splitlines()) if e["type"] == "start"]
    assert [e["pid"] for e in starts] == [proc.pid]  # the refused ones wrote nothing


@pytest.mark.slow
def test_ctrl_c_while_python_still_imports_is_one_line(tmp_path):
    """Ctrl-C in the first moments of a command lands in an import (of rich, say)."""
    interrupted_import = (
        "import sys, builtins\n"
        "real = builtins.__import__\n"
        "def imp(name, *a, **k):\n"
        "    if name.startswith('rich'):\n"
        "        raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = imp\n"
        "sys.argv = ['minigpt', 'train', '--steps', '5']\n"
        "from minigpt.__main__ import main\n"
        "main()\n")
    result = subprocess.run([sys.executable, "-c", interrupted_import], capture_output=True,
                            text=True, cwd=tmp_path, timeout=120)
    assert result.returncode == 130
    assert result.stderr.strip().splitlines() == ["minigpt: interrupted"]
