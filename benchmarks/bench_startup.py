"""Start-up: `minigpt --help` wall time, and time to first token in `minigpt generate` and `chat`.

    python benchmarks/bench_startup.py               # 5 runs of each, medians
    python benchmarks/bench_startup.py --runs 3

Each run is a fresh `python -m minigpt ...` process (this checkout's minigpt, put first on
PYTHONPATH), timed from start to exit. For reference it also times `python -c "import torch"`, the
floor for any command that needs torch (the guide's target: `--help` under 0.3 s, so --help must not
import torch). Time to first token: `minigpt generate -n 1` on a small checkpoint (4 layers / 4 heads
/ 128 dims, char vocabulary, random weights) made once in a temporary folder: start-up, loading the
checkpoint, prefill and one token. In `minigpt chat --plain` (the line loop; the TUI's Chat pane
loads the same way), the time from start until the first character of the reply to a line given
on stdin reaches stdout. `minigpt inspect` on GPT-2 small's shape (12 layers, 12 heads, 768 dims,
50257 tokens, random weights, a character tokenizer over 50257 characters: the 500 MB checkpoint
is written once), a 64-token prompt: the whole command (the issue's target: under 2 s), and
beyond `import torch` (the same runs' median difference). Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from minigpt.backends.cpu import cpu_name

REPO = Path(__file__).resolve().parents[1]


def wall(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def until_output(cmd: list[str], env: dict, stdin: str, n_chars: int) -> float:
    """Seconds from start until the process has written n_chars characters to stdout."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)
    proc.stdin.write(stdin.encode())
    proc.stdin.flush()
    seen = b""
    while len(seen.decode(errors="ignore")) < n_chars:
        byte = proc.stdout.read(1)
        if not byte:
            raise RuntimeError(f"{' '.join(cmd)} ended after {seen!r}")
        seen += byte
    seconds = time.perf_counter() - t0
    proc.kill()
    proc.wait()
    return seconds


def make_checkpoint(path: Path) -> None:
    from minigpt.checkpoint import save_checkpoint
    from minigpt.data.tokenizer import CharTokenizer
    from minigpt.model.gpt import GPT
    from minigpt.train.config import preset

    tok = CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz ,.\n")
    cfg = preset("cpu").with_overrides(vocab_size=tok.vocab_size)
    save_checkpoint(path, GPT(cfg.model), tok, cfg, None, {})


def make_gpt2_checkpoint(path: Path) -> None:
    import torch

    from minigpt.checkpoint import save_checkpoint
    from minigpt.data.tokenizer import CharTokenizer
    from minigpt.model.config import GPTConfig
    from minigpt.model.gpt import GPT

    chars = "".join(c for c in map(chr, range(0x21, 0x30000))
                    if c.isprintable() and not c.isspace())[:GPTConfig().vocab_size]
    torch.manual_seed(0)
    save_checkpoint(path, GPT(GPTConfig()), CharTokenizer(chars))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args(argv)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        ckpt, gpt2 = Path(tmp) / "model.pt", Path(tmp) / "gpt2.pt"
        make_checkpoint(ckpt)
        make_gpt2_checkpoint(gpt2)
        cases = {
            "minigpt --help": [py, "-m", "minigpt", "--help"],
            'python -c "import torch"': [py, "-c", "import torch"],
            "minigpt generate -n 1 (first token)": [py, "-m", "minigpt", "generate", "--ckpt",
                                                    str(ckpt), "-p", "the ", "-n", "1",
                                                    "--device", "cpu"],
            "minigpt inspect (GPT-2 small, 64 tokens)": [py, "-m", "minigpt", "inspect", "--ckpt",
                                                         str(gpt2), "-p", "abcdefgh" * 8,
                                                         "--device", "cpu"],
        }
        chat = [py, "-m", "minigpt", "chat", "--ckpt", str(ckpt), "--plain", "--device", "cpu",
                "-n", "5"]
        chat_name = "minigpt chat --plain (first token)"
        print("== start-up: wall time of fresh processes ==")
        print(f"cpu {cpu_name()}, os cpus {os.cpu_count()}, load average "
              f"{os.getloadavg()[0]:.2f} (1 min)")
        times: dict[str, list[float]] = {name: [] for name in [*cases, chat_name]}
        wall(cases["minigpt --help"], env)  # warm the file cache
        for _ in range(args.runs):
            for name, cmd in cases.items():  # interleaved, so a busy moment hits all of them
                times[name].append(wall(cmd, env))
            # stdout shows the prompt "> ", the line echoed, then the reply
            times[chat_name].append(until_output(chat, env, "the \n", len("> the ") + 1))
    for name, v in times.items():
        print(f"  {name:<42} median {statistics.median(v):5.2f} s  "
              f"[{min(v):.2f}..{max(v):.2f}] over {len(v)} runs")
    ratio = statistics.median(times["minigpt --help"]) / statistics.median(
        times['python -c "import torch"'])
    print(f"  ratio --help / import torch: {ratio:.2f} (target for --help: under 0.3 s)")
    beyond = statistics.median(a - b for a, b in zip(
        times["minigpt inspect (GPT-2 small, 64 tokens)"], times['python -c "import torch"'],
        strict=True))
    print(f"  inspect beyond import torch: {beyond:.2f} s (median of the runs' differences; "
          f"target for the whole command: under 2 s)")


if __name__ == "__main__":
    main()
