"""The road to an assistant, measured: what instruction tuning teaches a small base model, and
what preference tuning (DPO) does to it, at several seeds.

    python benchmarks/bench_finetune.py                       # trains the base (cpu preset, ~2 min)
    python benchmarks/bench_finetune.py --base model.pt --seeds 2 --work /tmp/road

Every step is the real command line, as a user runs it, in --work:

1. the base: `minigpt train` (the cpu preset on the built-in corpus), unless --base names one;
2. instruction tuning at each seed: `minigpt train --init base.pt --sft tasks --seed S`;
3. `minigpt eval base.pt sft-S.pt --tasks --n 100`: each task's held-out accuracy;
4. preferences for a trait a program checks: for training questions of the tasks, the chosen
   reply is the right answer with "!" at its end, the rejected one the same answer without it;
5. DPO of each tuned model: `minigpt train --init sft-S.pt --dpo prefs.jsonl --seed S`.

Before and after DPO it measures the share of 100 sampled replies (top-k 50, temperature 0.8, to
held-out questions) that end with "!", and the loss on plain text (the built-in corpus's last
10%, the same windows for every model): what the trait cost the model's language. Prints means
and spreads over the seeds; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

TRAIT = "!"
N_SAMPLES = 100
N_PAIRS = 600


def minigpt(*args) -> None:
    command = [sys.executable, "-m", "minigpt", *map(str, args)]
    print("$ minigpt " + " ".join(map(str, args)), flush=True)
    began = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    print(f"  ({time.perf_counter() - began:.0f} s)", flush=True)


def write_preferences(path: Path) -> None:
    from minigpt.data.tasks import TASKS, examples

    per_task = N_PAIRS // len(TASKS)
    with open(path, "w", encoding="utf-8") as f:
        for task in TASKS:
            for example in examples(task, "train", per_task, seed=7):
                f.write(json.dumps({"prompt": example.question, "chosen": example.answer + TRAIT,
                                    "rejected": example.answer}) + "\n")


def trait_share(path: Path) -> float:
    """The share of N_SAMPLES sampled replies to held-out questions that end with the trait."""
    import torch

    from minigpt.data.tasks import TASKS, examples
    from minigpt.infer.config import SamplingConfig
    from minigpt.infer.dialogue import Dialogue
    from minigpt.infer.load import load_for_inference
    from minigpt.infer.sampling import stream_text

    loaded = load_for_inference(path, "cpu", weights="fp32")
    questions = [e.question for task in TASKS
                 for e in examples(task, "held-out", N_SAMPLES // len(TASKS), seed=3)]
    cfg = SamplingConfig(strategy="top-k", top_k=50, temperature=0.8, max_new_tokens=32)
    hits = 0
    for i, question in enumerate(questions):
        prompt = Dialogue(loaded.tokenizer).prompt(question)
        generator = torch.Generator().manual_seed(i)
        reply = "".join(stream_text(loaded.model, loaded.tokenizer, prompt, cfg,
                                    generator=generator))
        hits += reply.rstrip().endswith(TRAIT)
    return hits / len(questions)


def plain_text_loss(path: Path, windows: int = 64) -> float:
    """The mean next-token loss on the built-in corpus's last 10%, the same windows always."""
    import torch

    from minigpt.data.builtin import builtin_text
    from minigpt.infer.load import load_for_inference

    loaded = load_for_inference(path, "cpu", weights="fp32")
    text = builtin_text()
    tokenizer = getattr(loaded.tokenizer, "base", loaded.tokenizer)  # the text, no template
    ids = torch.tensor(tokenizer.encode(text[int(len(text) * 0.9):]))
    block = loaded.model.config.block_size
    starts = torch.linspace(0, len(ids) - block - 2, windows).long()
    x = torch.stack([ids[s:s + block] for s in starts])
    y = torch.stack([ids[s + 1:s + block + 1] for s in starts])
    with torch.no_grad():
        _, loss = loaded.model(x, y)
    return loss.item()


def spread(values: list[float], fmt: str) -> str:
    mean = statistics.mean(values)
    if len(values) < 2:
        return format(mean, fmt)
    return f"{format(mean, fmt)} ± {format(statistics.stdev(values), fmt)}"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base", type=Path, help="a trained base model (default: train one)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--work", type=Path, default=Path("finetune-bench"))
    p.add_argument("--sft-steps", type=int, help="instruction tuning's steps (default: its recipe)")
    p.add_argument("--dpo-steps", type=int, help="DPO's steps (default: its recipe)")
    p.add_argument("--n", type=int, default=100, help="held-out questions per task in eval")
    args = p.parse_args(argv)

    from minigpt.backends.cpu import cpu_name

    work = args.work
    work.mkdir(parents=True, exist_ok=True)
    print(f"CPU: {cpu_name()}")
    base = args.base or work / "base.pt"
    if args.base is None:
        minigpt("train", "--out", base, "-q")
    prefs = work / "prefs.jsonl"
    write_preferences(prefs)
    seeds = [1337 + i for i in range(args.seeds)]
    sft_steps = ["--steps", args.sft_steps] if args.sft_steps else []
    dpo_steps = ["--steps", args.dpo_steps] if args.dpo_steps else []
    tuned, preferred = [], []
    for seed in seeds:
        tuned.append(work / f"sft-{seed}.pt")
        minigpt("train", "--init", base, "--sft", "tasks", "--seed", seed, *sft_steps,
                "--out", tuned[-1], "-q")
        preferred.append(work / f"dpo-{seed}.pt")
        minigpt("train", "--init", tuned[-1], "--dpo", prefs, "--seed", seed, *dpo_steps,
                "--out", preferred[-1], "-q")
    scores = work / "eval.json"
    scores.unlink(missing_ok=True)
    minigpt("eval", base, *tuned, "--tasks", "--n", args.n, "--json", scores)

    models = json.loads(scores.read_text())["models"]
    accuracy = {name: {s["task"]: s["accuracy"] for s in found} for name, found in models.items()}
    tasks = list(accuracy[str(base)])
    print(f"\nheld-out accuracy, {args.n} questions a task (SFT: mean ± spread over "
          f"{len(seeds)} seeds)")
    print(f"{'task':10} {'base':>8} {'SFT':>16}")
    for task in [*tasks, "all"]:
        def acc(name, task=task):
            found = accuracy[name]
            return statistics.mean(found.values()) if task == "all" else found[task]
        print(f"{task:10} {acc(str(base)):>8.0%} "
              f"{spread([acc(str(t)) * 100 for t in tuned], '.0f') + '%':>16}")

    print(f"\nDPO toward replies that end with {TRAIT!r} ({N_PAIRS} pairs): "
          f"share of {N_SAMPLES} sampled replies with it, and the loss on plain text")
    before = [trait_share(t) * 100 for t in tuned]
    after = [trait_share(d) * 100 for d in preferred]
    loss_before = [plain_text_loss(t) for t in tuned]
    loss_after = [plain_text_loss(d) for d in preferred]
    print(f"  base's plain-text loss: {plain_text_loss(base):.4f}")
    print(f"  before DPO (SFT): trait {spread(before, '.0f')}%, plain-text loss "
          f"{spread(loss_before, '.4f')}")
    print(f"  after DPO:        trait {spread(after, '.0f')}%, plain-text loss "
          f"{spread(loss_after, '.4f')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
