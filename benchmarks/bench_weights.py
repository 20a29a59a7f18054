"""What bf16 and int8 weights cost in quality: validation perplexity against fp32's.

    python benchmarks/bench_weights.py                       # trains the cpu preset first (~2 min)
    python benchmarks/bench_weights.py --ckpt run/model.pt   # a model you have, on its own data

The same model is converted with `minigpt.infer.quantize.convert_weights` (what `minigpt generate
--weights` does) and evaluated on the whole validation split of its data, cut into consecutive
windows of the model's context: mean cross-entropy, and perplexity = exp(loss). The headline is
each format's perplexity change against fp32. Without --ckpt, the `cpu` preset is trained on
../shared/corpora/tinyshakespeare.txt (skipped, with a message, when it is not there).
Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from pathlib import Path

CORPUS = Path(os.environ.get("MINIGPT_SHARED_CORPORA",
                             Path(__file__).resolve().parents[2] / "shared" / "corpora"))


def validation_loss(model, val, block_size: int, batch_size: int = 16) -> float:
    """Mean next-token cross-entropy over consecutive windows covering the validation tokens."""
    import torch

    n_windows = (len(val) - 1) // block_size
    starts = torch.arange(n_windows) * block_size
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, n_windows, batch_size):
            rows = starts[i:i + batch_size, None] + torch.arange(block_size + 1)
            chunk = val[rows]
            _, loss = model(chunk[:, :-1], chunk[:, 1:])
            total += loss.item() * chunk.size(0)
            count += chunk.size(0)
    return total / count


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ckpt", help="a checkpoint to measure (default: train the cpu preset)")
    p.add_argument("--data", help="its data (default: the checkpoint's own, or tinyshakespeare)")
    p.add_argument("--steps", type=int, default=2000, help="training steps without --ckpt")
    args = p.parse_args(argv)

    import torch

    from minigpt.checkpoint import load_checkpoint
    from minigpt.data.prepare import load_prepared, prepare
    from minigpt.data.sources import open_source
    from minigpt.infer.quantize import WEIGHT_FORMATS, convert_weights
    from minigpt.train.config import preset
    from minigpt.train.trainer import Trainer

    if args.ckpt:
        ckpt = load_checkpoint(args.ckpt)
        model, tokenizer = ckpt.build_model("cpu").eval(), ckpt.tokenizer
        data = args.data or ckpt.meta.get("data_source")
        val_fraction = ckpt.train_config.val_fraction if ckpt.train_config else 0.1
        source = f"{args.ckpt} (step {ckpt.step})"
    else:
        data = args.data or str(CORPUS / "tinyshakespeare.txt")
        if not Path(data).is_file():
            print(f"skipped: {data} not found (set MINIGPT_SHARED_CORPORA)")
            return 0
        cfg = preset("cpu").with_overrides(max_steps=args.steps, sample_tokens=0)
        trainer = Trainer(cfg, load_prepared(open_source(data), cfg), device="cpu")
        started = time.perf_counter()
        for _ in trainer.run():
            pass
        model, tokenizer, val_fraction = trainer.model.eval(), trainer.data.tokenizer, cfg.val_fraction
        source = (f"the cpu preset trained {args.steps} steps here "
                  f"({trainer.precision}, {time.perf_counter() - started:.0f} s)")
    block_size = model.config.block_size
    # the validation split of the data prepared with the model's own tokenizer (the cache's)
    val = prepare(open_source(data), tokenizer=tokenizer).tokens(val_fraction, block_size).val
    val = torch.from_numpy(val.astype("int64"))  # the validation split is small: in memory

    print("== quality of smaller weights: validation perplexity ==")
    print(f"torch {torch.__version__}; model: {source}; {model.num_params() / 1e6:.2f}M params, "
          f"context {block_size}; data {data}: {len(val):,} validation tokens")
    losses = {}
    for weights in WEIGHT_FORMATS:
        losses[weights] = validation_loss(convert_weights(copy.deepcopy(model), weights), val,
                                          block_size)
    for weights, loss in losses.items():
        ppl, ref = math.exp(loss), math.exp(losses["fp32"])
        print(f"  {weights:<5} loss {loss:.4f}  perplexity {ppl:.4f}  "
              f"change vs fp32 {100 * (ppl / ref - 1):+.2f}%")
    return 0


if __name__ == "__main__":
    sys.exit(main())
