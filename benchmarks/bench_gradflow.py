"""What measuring gradient flow costs training: tokens/s with and without, taking turns.

    python benchmarks/bench_gradflow.py                   # the cpu preset, log_interval 10
    python benchmarks/bench_gradflow.py --log-interval 1  # the worst case: every step logged

Two trainers on the same data and recipe, one measuring each layer's gradient norm and update
ratio on its logged steps (minigpt/train/gradflow.py) and one not (Trainer.measure_gradient_flow).
Each round times --steps optimizer steps of one, then of the other (the order flips every
round), reading the measures off the device at each logged step as the training loop does; so a
noisy neighbour on a shared machine slows both rather than one. The headline is the median over
rounds of (tokens/s with) / (tokens/s without): 1 - that is the cost.

It prints figures and asserts nothing about time: machines are shared and noisy.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from minigpt.backends.cpu import cpu_name
from minigpt.data.prepare import load_prepared
from minigpt.data.sources import open_source
from minigpt.train.config import preset
from minigpt.train.trainer import Trainer


def timed_steps(trainer: Trainer, steps: int) -> float:
    """Tokens/s over `steps` optimizer steps, logged ones read as the loop reads them."""
    start = time.perf_counter()
    for _ in range(steps):
        loss, _, _ = trainer._train_step()
        if trainer.logs(trainer.step):
            float(loss)  # the loop reads the loss at a logged step
            trainer.gradient_flow.read()
    return steps * trainer.tokens_per_step / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="cpu")
    parser.add_argument("--log-interval", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed block")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()

    cfg = preset(args.preset).with_overrides(log_interval=args.log_interval, max_steps=10**6)
    data = load_prepared(open_source("builtin"), cfg)  # prepared once, in the cache
    trainers = {}
    for measured in (True, False):
        trainers[measured] = Trainer(cfg, data, device=args.device)
        trainers[measured].measure_gradient_flow = measured
        timed_steps(trainers[measured], max(2, args.log_interval))  # warm up
    ratios = []
    for round_ in range(args.rounds):
        speeds = {}
        for measured in ((True, False) if round_ % 2 == 0 else (False, True)):
            speeds[measured] = timed_steps(trainers[measured], args.steps)
        ratios.append(speeds[True] / speeds[False])
        print(f"round {round_ + 1}: with {speeds[True]:,.0f} tok/s, without "
              f"{speeds[False]:,.0f} tok/s, ratio {ratios[-1]:.3f}")
    ratio = statistics.median(ratios)
    print(f"\n{args.preset} preset, log_interval {args.log_interval}, {args.device} "
          f"({cpu_name()}, {torch.get_num_threads()} threads): tokens/s with gradient flow / "
          f"without = {ratio:.3f} (median of {args.rounds} rounds): cost {1 - ratio:+.1%}")


if __name__ == "__main__":
    main()
