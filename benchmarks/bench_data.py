"""Preparing corpora of any size: `minigpt prepare` against tiktoken into a memmap (nanoGPT's way).

    python benchmarks/bench_data.py                  # a 100 MB corpus (about 2 minutes on 2 cores)
    python benchmarks/bench_data.py --big            # 100 MB and 1 GB (about 15 minutes; run_all
                                                     # passes --big)
    python benchmarks/bench_data.py --sizes 20M,300M --train-steps 20
    python benchmarks/bench_data.py --sizes 10G --bpe-only --workdir BIG_DISK   # RESULTS.md's 10 GB

For each size it generates a corpus locally (JSON Lines of English-like documents: sentences of
minigpt's built-in text, the Python documentation, shuffled into paragraphs and documents with a
seeded generator), in a temporary folder (`--workdir` to choose where) that is removed at the end,
with its own $MINIGPT_CACHE there, so every preparation starts cold. Then, each as a fresh process
whose peak resident memory is read with os.wait4 (that process and its children):

1. `minigpt prepare --tokenizer char`: the vocabulary pass and the encoding pass.
2. `minigpt prepare --tokenizer bpe --vocab-size 8192`: training the BPE on the first 16 MB
   included.
3. The peer, nanoGPT's prepare.py with the same vocabulary: minigpt's BPE from step 2 converted to
   a `tiktoken.Encoding` (minigpt.data.tokenizer.as_tiktoken: GPT-2's regex, the same merges, so the
   same tokens; minigpt prepare encodes with it too, its own way), then documents read
   line by line, `encode_ordinary_batch` (one thread per core) plus <|endoftext|> after each,
   written into a uint16 `np.memmap`. Encoding only: the peer's vocabulary is given.
4. `minigpt train --preset tiny --tokenizer bpe --vocab-size 8192 --steps N` on the prepared
   corpus (found in the cache): seconds from the command's start to its first `step` event in
   events.jsonl, and the peak memory of the whole run.

Prints the times, peaks and the ratios minigpt/tiktoken (under 1: minigpt is faster), the CPU
model and the load average. Targets (from the issue): BPE with its training at most 1.5x
tiktoken's encoding, char at most 1x; at most 1 GB of memory while preparing or training on a
1 GB corpus; the first step within 3 s. Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
VOCAB = 8192


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)B?\s*", text.upper())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 100M, 1G)")
    return int(float(m.group(1)) * {"": 1, "K": 1e3, "M": 1e6, "G": 1e9}[m.group(2)])


def size_name(n: int) -> str:
    return f"{n / 1e9:g} GB" if n >= 1e9 else f"{n / 1e6:g} MB"


# --- the corpus ------------------------------------------------------------------------------------


def generate(path: Path, size: int, seed: int = 0) -> int:
    """JSON Lines of documents made of the built-in text's sentences, shuffled; returns documents."""
    import numpy as np

    from minigpt.data.builtin import builtin_text

    sentences = [s.strip() for s in re.split(r"(?<=[.!?])\s+", builtin_text()) if len(s.strip()) > 3]
    escaped = [json.dumps(s, ensure_ascii=False)[1:-1] for s in sentences]  # JSON string bodies
    rng = np.random.default_rng(seed)
    written = docs = 0
    with open(path, "w", encoding="utf-8") as f:
        while written < size:
            chunk = []
            picks = rng.integers(0, len(escaped), size=200_000)
            lengths = rng.integers(2, 9, size=50_000)  # sentences per paragraph
            paras = rng.integers(1, 7, size=10_000)  # paragraphs per document
            at = li = 0
            for n_para in paras:
                body = []
                for _ in range(n_para):
                    k = int(lengths[li])
                    li += 1
                    body.append(" ".join(escaped[i] for i in picks[at:at + k]))
                    at += k
                line = '{"text": "' + "\\n\\n".join(body) + '"}\n'
                chunk.append(line)
                written += len(line.encode("utf-8"))
                docs += 1
                if written >= size or at > len(picks) - 64 or li > len(lengths) - 8:
                    break
            f.write("".join(chunk))
    return docs


# --- the peer: nanoGPT's prepare.py with tiktoken ---------------------------------------------------


def peer(tokenizer_path: str, corpus: str, out: str) -> None:
    """Run as its own process: the corpus into a uint16 memmap; prints the token count."""
    import numpy as np

    from minigpt.data.tokenizer import as_tiktoken, tokenizer_from_dict

    # minigpt's trained BPE as a tiktoken Encoding: GPT-2's regex, the same merges, the same ids
    enc = as_tiktoken(tokenizer_from_dict(json.loads(Path(tokenizer_path).read_text("utf-8"))))
    eot = enc.eot_token
    # nanoGPT sizes the memmap from the token counts it keeps in memory; streaming, we size it
    # from the corpus (every token is at least one byte of text; each JSON line's framing is
    # more than the <|endoftext|> after it) and cut the file to what was written
    arr = np.memmap(out, dtype=np.uint16, mode="w+", shape=(os.path.getsize(corpus),))
    threads = os.cpu_count() or 1
    at = 0

    def flush(texts, arr=arr):
        nonlocal at
        for ids in enc.encode_ordinary_batch(texts, num_threads=threads):
            ids.append(eot)
            arr[at:at + len(ids)] = ids
            at += len(ids)

    with open(corpus, encoding="utf-8") as f:
        batch, chars = [], 0
        for line in f:
            text = json.loads(line)["text"]
            batch.append(text)
            chars += len(text)
            if chars >= 4 << 20:  # as minigpt's batches
                flush(batch)
                batch, chars = [], 0
        if batch:
            flush(batch)
    arr.flush()
    del arr
    os.truncate(out, at * 2)
    print(at)


# --- measuring -------------------------------------------------------------------------------------


def measured(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """Runs cmd as a fresh process: (seconds, peak resident MB of it and its children, stdout)."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = proc.stdout.read(), proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{err.decode()[-2000:]}")
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return seconds, usage.ru_maxrss * scale / 2**20, out.decode()


def first_step(cmd: list[str], env: dict, run_dir: Path) -> tuple[float, float, int, float]:
    """Seconds from the command's start to its `start` event (data opened, model built) and to
    its first `step` event (which step that is: one per log_interval), and the run's peak MB."""
    started = time.time()
    _, peak, _ = measured(cmd, env)
    times = {}
    for line in (run_dir / "events.jsonl").read_text(encoding="utf-8").splitlines():
        ev = json.loads(line)
        times.setdefault(ev.get("type"), ev)
    if "start" not in times or "step" not in times:
        raise RuntimeError(f"no start or step event in {run_dir / 'events.jsonl'}")
    return (times["start"]["time"] - started, times["step"]["time"] - started,
            times["step"]["step"], peak)


def prepared_folder(cache: Path, tokenizer: str) -> Path:
    for manifest in (cache / "prepared").glob("*/manifest.json"):
        if json.loads(manifest.read_text(encoding="utf-8"))["tokenizer"] == tokenizer:
            return manifest.parent
    raise RuntimeError(f"no prepared {tokenizer} data in {cache}")


def bench(size: int, work: Path, env: dict, steps: int, bpe_only: bool = False) -> None:
    py = sys.executable
    corpus = work / f"corpus-{size}.jsonl"
    cache = work / f"cache-{size}"
    env = dict(env, MINIGPT_CACHE=str(cache))
    t0 = time.perf_counter()
    docs = generate(corpus, size)
    print(f"\n== {size_name(size)}: {corpus.stat().st_size / 1e6:.0f} MB of JSON Lines, {docs:,} "
          f"documents (generated in {time.perf_counter() - t0:.0f} s) ==", flush=True)
    rows = {}
    mg = [py, "-m", "minigpt", "prepare", "--data", str(corpus), "-q"]
    if not bpe_only:
        rows["char"] = measured([*mg, "--tokenizer", "char"], env)[:2]
        print(f"  minigpt prepare, char               {rows['char'][0]:7.1f} s  "
              f"peak {rows['char'][1]:6.0f} MB", flush=True)
    rows["bpe"] = measured([*mg, "--tokenizer", "bpe", "--vocab-size", str(VOCAB)], env)[:2]
    print(f"  minigpt prepare, bpe {VOCAB} (training incl.) {rows['bpe'][0]:5.1f} s  "
          f"peak {rows['bpe'][1]:6.0f} MB", flush=True)
    bpe_dir = prepared_folder(cache, "bpe")
    ours = json.loads((bpe_dir / "manifest.json").read_text(encoding="utf-8"))["tokens"]
    if not bpe_only:
        seconds, peak, out = measured([py, __file__, "--peer", str(bpe_dir / "tokenizer.json"),
                                       str(corpus), str(work / "tiktoken.bin")], env)
        theirs = int(out.split()[-1])
        (work / "tiktoken.bin").unlink()
        print(f"  tiktoken into memmap (encode only)  {seconds:7.1f} s  peak {peak:6.0f} MB  "
              f"({theirs:,} tokens; minigpt {ours:,}, with one <|endoftext|> fewer at the end)")
        print(f"  ratio minigpt bpe / tiktoken: {rows['bpe'][0] / seconds:.2f} (target 1.5 at most)")
        print(f"  ratio minigpt char / tiktoken: {rows['char'][0] / seconds:.2f} (target 1 at most)")
    for run in (1, 2):  # the first may still find caches cold (torch's files); the second counts
        run_dir = work / f"run-{size}-{run}"
        start, secs, step, peak = first_step([py, "-m", "minigpt", "train", "--data", str(corpus), "--preset",
                                 "tiny", "--tokenizer", "bpe", "--vocab-size", str(VOCAB),
                                 "--steps", str(steps), "--device", "cpu", "--out", str(run_dir),
                                 "-q"], env, run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)
    print(f"  minigpt train --preset tiny (bpe, prepared): training starts after {start:.2f} s, "
          f"first step event (step {step}, after the step-0 evaluation) after {secs:.2f} s "
          f"(target: first step within 3 s); peak {peak:.0f} MB over {steps} steps", flush=True)
    print("  peak memory target 1 GB: prepare " + ", ".join(
        f"{kind} {seconds_peak[1]:.0f} MB" for kind, seconds_peak in rows.items())
        + f", train {peak:.0f} MB")
    corpus.unlink()
    shutil.rmtree(cache, ignore_errors=True)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="100M",
                   help="corpus sizes, comma-separated (default 100M)")
    p.add_argument("--big", action="store_true", help="add a 1 GB corpus to --sizes")
    p.add_argument("--train-steps", type=int, default=20)
    p.add_argument("--bpe-only", action="store_true",
                   help="prepare with BPE only, no char and no peer (the 10 GB run: 20 minutes "
                        "instead of an hour)")
    p.add_argument("--workdir", help="where the corpora and their cache go (default: a temporary "
                                     "folder); removed at the end")
    p.add_argument("--peer", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.peer:
        peer(*args.peer)
        return
    sizes = [parse_size(s) for s in args.sizes.split(",") if s.strip()]
    if args.big and 10**9 not in sizes:
        sizes.append(10**9)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        filter(None, [str(REPO), os.environ.get("PYTHONPATH")])))
    import tiktoken

    from minigpt.backends.cpu import cpu_name

    peer_version = f"tiktoken {tiktoken.__version__}"
    print(f"== preparing corpora: minigpt prepare against tiktoken into memmap ==\n"
          f"  CPU: {cpu_name()}, {os.cpu_count()} cores; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}; {peer_version}; Python "
          f"{platform.python_version()}")
    parent = Path(args.workdir) if args.workdir else None
    if parent:
        parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="bench-data-", dir=parent))
    try:
        for size in sizes:
            bench(size, work, env, args.train_steps, args.bpe_only)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"  load average at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
