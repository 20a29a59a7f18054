"""Training tokens/s: minigpt against transformers' GPT2LMHeadModel, same shape, same run.

    python benchmarks/bench_train.py                  # 4 layers / 4 heads / 128 dims, ctx 256, batch 32
    python benchmarks/bench_train.py --shape gpt2     # GPT-2 124M shape at ctx 256, batch 4
    python benchmarks/bench_train.py --dtype fp32     # like for like: both in fp32

minigpt trains in its default precision (`--dtype auto`: bf16 autocast where the hardware has
bf16, as `minigpt train` does) and transformers as it comes (fp32); `--dtype` and `--peer-dtype`
set either one, so the same-precision ratio can be measured too.

Both models are built at the same configuration and trained on the same random token batches with
the same optimizer settings. One training step is forward + loss, backward, AdamW step and
zero_grad. After a few warm-up steps the two models take turns: each round times `--steps` steps of
one model and then of the other (the order flips every round), so a noisy neighbour on a shared
machine slows both rather than one. The figure for each model is the median over rounds; the
headline is the ratio minigpt / transformers (above 1: minigpt is faster).

Same work per step: both models get the same [B, T] input and compute logits for all B*T positions.
minigpt's targets are the next tokens (drawn with the batch, so all T positions have a target);
transformers gets labels=input and shifts them inside, so its loss covers T-1 positions of each row
(the last one is ignored, but its logits are still computed). tokens/s counts B*T for both.

Each timed block also shows "cpu": the process's CPU time over wall time, about the thread count
when the cores were ours. On a shared machine another process can take a core for a while; torch's
threads then wait on each other and a block runs several times slower for reasons that are not the
model's. Such rounds are flagged, and the ratio over the unflagged rounds is printed too.

This prints figures and asserts nothing about time: machines are shared and noisy, so only the
ratio measured in one run means much.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from minigpt.backends.hardware import (
    autocast_for,
    measured_matmul_flops,
    peak_flops,
    resolve_precision,
)
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT

# Per-shape defaults. "small" is configuration (a) of the project guide, with a char vocabulary;
# "gpt2" is GPT-2 small's shape at a shorter context, with fewer steps so it stays about two minutes.
SHAPES = {
    "small": dict(n_layer=4, n_head=4, n_embd=128, vocab_size=65, block_size=256,
                  batch_size=32, steps=8, rounds=10, warmup=3),
    "gpt2": dict(n_layer=12, n_head=12, n_embd=768, vocab_size=50257, block_size=256,
                 batch_size=4, steps=2, rounds=4, warmup=1),
}

# The optimizer recipe shared by both models (minigpt's training defaults).
LR = 1e-3
BETAS = (0.9, 0.99)
WEIGHT_DECAY = 0.1
SEED = 1337
N_BATCHES = 4  # distinct batches drawn up front and cycled, so drawing them is not timed


@dataclass
class Contender:
    """One model under test and how to run one training step on it."""

    name: str
    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    step_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # hides the two signatures


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=sorted(SHAPES), default="small",
                   help="small: 4/4/128, vocab 65 (default); gpt2: 12/12/768, vocab 50257")
    p.add_argument("--steps", type=int, help="timed steps per model per round")
    p.add_argument("--rounds", type=int, help="rounds; each times both models")
    p.add_argument("--warmup", type=int, help="untimed steps per model before the rounds")
    p.add_argument("--batch-size", type=int, help="sequences per step")
    p.add_argument("--block-size", type=int, help="context: tokens per sequence")
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own)")
    p.add_argument("--device", default="auto", help="cpu, cuda, ... (default: cuda if present)")
    p.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"],
                   help="minigpt's precision; auto is its default (bf16 autocast where the "
                        "hardware has bf16)")
    p.add_argument("--peer-dtype", default="fp32", choices=["fp32", "bf16"],
                   help="transformers' precision (default fp32, as it runs out of the box)")
    p.add_argument("--compile", action="store_true", help="torch.compile minigpt's model")
    args = p.parse_args(argv)
    # Flags left unset take the shape's defaults.
    for key in ("steps", "rounds", "warmup", "batch_size", "block_size"):
        if getattr(args, key) is None:
            setattr(args, key, SHAPES[args.shape][key])
    for key in ("steps", "rounds", "batch_size", "block_size"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be at least 1")
    if args.warmup < 0:
        p.error("--warmup must be at least 0")
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    return args


def decay_groups(model: torch.nn.Module) -> list[dict]:
    """minigpt's rule (configure_optimizer): weight decay on matrices only, not biases or gains.

    Applied to the transformers model so both optimizers update the same tensors the same way.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def build_minigpt(shape: dict, block_size: int, device: torch.device, precision: str,
                  compile: bool) -> Contender:
    config = GPTConfig(vocab_size=shape["vocab_size"], block_size=block_size,
                       n_layer=shape["n_layer"], n_head=shape["n_head"], n_embd=shape["n_embd"],
                       dropout=0.0)
    model = GPT(config).to(device).train()
    # minigpt's own optimizer setup, the one its training loop uses
    optimizer = model.configure_optimizer(WEIGHT_DECAY, LR, BETAS, device.type)
    forward = torch.compile(model) if compile else model

    def step_loss(idx, targets):
        with autocast_for(device, precision):
            _, loss = forward(idx, targets)
        return loss

    return Contender("minigpt", model, optimizer, step_loss)


def build_transformers(shape: dict, block_size: int, device: torch.device,
                       like: torch.optim.Optimizer, precision: str) -> Contender:
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    # transformers logs a one-off notice about the default loss at the first forward; it would
    # land in the middle of the figures and says nothing about speed.
    hf_logging.set_verbosity_error()

    kwargs = dict(n_layer=shape["n_layer"], n_head=shape["n_head"], n_embd=shape["n_embd"],
                  n_positions=block_size, vocab_size=shape["vocab_size"],
                  resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                  # no KV cache while training: its bookkeeping is not part of a training step
                  use_cache=False,
                  # GPT-2's special token ids (50256) do not exist in a 65-token vocabulary
                  bos_token_id=None, eos_token_id=None)
    try:
        config = GPT2Config(**kwargs, attn_implementation="sdpa")
        model = GPT2LMHeadModel(config)
    except (TypeError, ValueError, ImportError):
        # older transformers without the SDPA path for GPT-2: fall back to its eager attention
        config = GPT2Config(**kwargs)
        model = GPT2LMHeadModel(config)
    model = model.to(device).train()
    # Same AdamW implementation switches (fused / foreach) as minigpt's, so only the model differs.
    d = like.defaults
    optimizer = torch.optim.AdamW(decay_groups(model), lr=d["lr"], betas=d["betas"], eps=d["eps"],
                                  fused=d.get("fused"), foreach=d.get("foreach"))

    def step_loss(idx, targets):
        # labels=input: transformers shifts inside, so `targets` is not used (see the docstring)
        with autocast_for(device, precision):
            return model(input_ids=idx, labels=idx).loss

    return Contender("transformers", model, optimizer, step_loss)


def make_batches(n: int, batch_size: int, block_size: int, vocab_size: int,
                 device: torch.device) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Random tokens from a fixed generator: speed does not depend on what the tokens say."""
    gen = torch.Generator().manual_seed(SEED)
    batches = []
    for _ in range(n):
        tokens = torch.randint(vocab_size, (batch_size, block_size + 1), generator=gen)
        idx, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
        batches.append((idx.to(device), targets.to(device)))
    return batches


def sync(device: torch.device) -> None:
    # GPU work is asynchronous: wait for it before reading the clock
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass
class Timing:
    seconds: float  # wall clock
    cpu_seconds: float  # CPU time of this process, all threads together
    loss: float  # the last step's loss, to show both models really train


def train_steps(c: Contender, batches, n_steps: int, device: torch.device) -> Timing:
    """Run n_steps full training steps: forward + loss, backward, AdamW step, zero_grad."""
    sync(device)
    t0, cpu0 = time.perf_counter(), time.process_time()
    for i in range(n_steps):
        idx, targets = batches[i % len(batches)]
        loss = c.step_loss(idx, targets)
        loss.backward()
        c.optimizer.step()
        c.optimizer.zero_grad(set_to_none=True)
    sync(device)
    return Timing(time.perf_counter() - t0, time.process_time() - cpu0, loss.item())


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # tied weights are counted once


def describe_optimizer(opt: torch.optim.Optimizer) -> str:
    d = opt.defaults
    return (f"AdamW lr={d['lr']} betas={d['betas']} fused={d.get('fused')} "
            f"foreach={d.get('foreach')} groups={[len(g['params']) for g in opt.param_groups]}")


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    threads = torch.get_num_threads()
    device = torch.device(args.device)
    on_cpu = device.type == "cpu"
    shape = SHAPES[args.shape]
    B, T = args.batch_size, args.block_size
    tokens_per_step = B * T

    precision = resolve_precision(device, args.dtype)
    torch.manual_seed(SEED)
    ours = build_minigpt(shape, T, device, precision, args.compile)
    peer = build_transformers(shape, T, device, like=ours.optimizer, precision=args.peer_dtype)
    contenders = [ours, peer]
    batches = make_batches(N_BATCHES, B, T, shape["vocab_size"], device)

    import transformers

    print("== training tokens/s: minigpt vs transformers GPT2LMHeadModel ==")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"python {platform.python_version()}")
    if on_cpu:
        where = f"cpu (capability {torch.backends.cpu.get_cpu_capability()})"
    else:
        where = f"{device} ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else str(device)
    print(f"device {where}, torch threads {threads}, os cpus {os.cpu_count()}")
    print(f"shape {args.shape}: n_layer {shape['n_layer']}, n_head {shape['n_head']}, "
          f"n_embd {shape['n_embd']}, vocab {shape['vocab_size']}, context {T}, batch {B} "
          f"-> {tokens_per_step} tokens/step, dropout 0")
    print(f"minigpt      : {count_params(ours.model):,} params, {precision}"
          f"{' compiled' if args.compile else ''}, attn {ours.model.config.attn_impl}, "
          f"{describe_optimizer(ours.optimizer)}")
    print(f"transformers : {count_params(peer.model):,} params, {args.peer_dtype}, "
          f"attn {peer.model.config._attn_implementation}, "
          f"activation {peer.model.config.activation_function}, {describe_optimizer(peer.optimizer)}")
    print(f"schedule: {args.warmup} warm-up steps each, then {args.rounds} rounds x "
          f"{args.steps} steps each, alternating")

    # Warm-up: first steps allocate optimizer state and pick kernels; they are not timed.
    if args.warmup:
        for c in contenders:
            t = train_steps(c, batches, args.warmup, device)
            print(f"  warm-up {c.name:<12} {t.seconds:6.2f} s, loss {t.loss:.3f}")

    rates: dict[str, list[float]] = {c.name: [] for c in contenders}
    ratios, full_cpu_ratios = [], []
    for r in range(args.rounds):
        # Flip the order each round so neither model always runs right after the other.
        order = contenders if r % 2 == 0 else contenders[::-1]
        parts, starved = [], False
        for c in order:
            t = train_steps(c, batches, args.steps, device)
            rate = args.steps * tokens_per_step / t.seconds
            rates[c.name].append(rate)
            part = f"{c.name} {rate:8,.0f} tok/s"
            if on_cpu:
                # CPU time / wall time is about `threads` when the cores were ours. Much less
                # means another process took a core, and with it our threads' rendezvous: such
                # a block can be several times slower, for reasons that are not the model's.
                share = t.cpu_seconds / t.seconds
                starved |= share < 0.8 * threads
                part += f" (cpu {share:.2f})"
            parts.append(part + f", loss {t.loss:.3f}")
        ratio = rates["minigpt"][-1] / rates["transformers"][-1]
        ratios.append(ratio)
        if not starved:
            full_cpu_ratios.append(ratio)
        flag = "  <- cores shared with another process" if starved else ""
        print(f"  round {r + 1:2}: " + " | ".join(parts) + f" | ratio {ratio:.2f}{flag}")

    med = {name: statistics.median(v) for name, v in rates.items()}
    print("result (median over rounds, min..max in brackets):")
    for name, v in rates.items():
        print(f"  {name:<12} {med[name]:8,.0f} tokens/s  [{min(v):,.0f}..{max(v):,.0f}]  "
              f"{tokens_per_step / med[name] * 1000:7.1f} ms/step")
    print(f"  ratio minigpt/transformers: {med['minigpt'] / med['transformers']:.2f} "
          f"(median of per-round ratios {statistics.median(ratios):.2f}; above 1: minigpt is faster)")
    # The machine's limit: a training step is mostly matmuls, so its model FLOP/s (PaLM's count)
    # against what this device's matmuls reach (its data-sheet peak on a GPU; measured on a CPU,
    # where none is known) says how far either model could still go.
    flops = ours.model.flops_per_token()
    limit = peak_flops(device, precision)
    limit_kind = "data-sheet peak"
    if limit is None:
        limit = measured_matmul_flops(device, precision)
        limit_kind = f"a {precision} matmul measured in this run"
    print(f"  the limit: {limit / 1e9:,.0f} GFLOP/s ({limit_kind}); "
          f"{flops / 1e6:.1f} MFLOPs per token (forward and backward)")
    for name in rates:
        print(f"  {name:<12} {med[name] * flops / 1e9:8,.1f} GFLOP/s: "
              f"{med[name] * flops / limit:.0%} of the limit")
    n_starved = len(ratios) - len(full_cpu_ratios)
    if n_starved:
        # Said, not hidden: the reader decides whether the run is worth repeating.
        print(f"  note: {n_starved} of {len(ratios)} rounds got under 80% of {threads} threads' "
              "CPU time (another process was busy); "
              + (f"median ratio over the other rounds {statistics.median(full_cpu_ratios):.2f}"
                 if full_cpu_ratios else "no round had the cores to itself: run it again"))


if __name__ == "__main__":
    main()
