"""Decode tokens/s: minigpt's generate against transformers' generate (with its KV cache).

    python benchmarks/bench_decode.py                # GPT-2 124M shape, batch 1, greedy
    python benchmarks/bench_decode.py --rounds 5 --new-tokens 64
    python benchmarks/bench_decode.py --minigpt int8+compile   # only that one against the peer

minigpt runs in each of the `--minigpt` settings: a weight format (auto, fp32, bf16 or int8, as
`minigpt generate --weights` offers them, auto being its default: bf16 where the CPU multiplies
bf16 natively; see minigpt/infer/quantize.py), "+compile" for a compiled decode step (`generate
--compile`; compiling happens in the warm-up, before the rounds). transformers runs in fp32, as it
comes. The quality each weight format costs is measured by bench_weights.py, not here.

The limit: one token at batch 1 reads every weight once (and the KV cache so far), so memory
bandwidth bounds it at bandwidth / bytes read per token. The benchmark measures this machine's
read bandwidth (measured_read_bandwidth below: the sum of a 512 MB buffer) before and
after the rounds, and prints each setting's tokens/s as a percent of its limit.

Both models have GPT-2 small's shape (12 layers, 12 heads, 768 dims, vocabulary 50257) with random
weights: speed does not depend on what the weights say. Each gets the same 16-token prompt and
generates 128 new tokens greedily, batch 1: minigpt through `minigpt.infer.sampling.generate` (prefill,
then one position per token from its KV cache), transformers through `model.generate` with
`use_cache=True` (its default cache). The time covers the whole call: prefill and every decode step.
The two take turns for --rounds rounds, the order flipping each round; the figure for each is the
median, and the headline is the ratio minigpt / transformers (above 1: minigpt is faster).

Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import time

from minigpt.backends.cpu import SAID, limit_for_decoding, limited_here

limit_for_decoding()  # as generate and chat do, before torch loads (minigpt/backends/cpu.py)

import torch

from minigpt.backends.cpu import cpu_name
from minigpt.infer.load import AUTO, WEIGHT_CHOICES, weights_for
from minigpt.infer.quantize import convert_weights
from minigpt.infer.sampling import SamplingConfig, generate
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT

SEED = 1337



def measured_read_bandwidth(device: torch.device, megabytes: int = 512) -> float:
    """The bytes/s this device reads memory at now, best of a few: the sum of a buffer far larger
    than any cache (about a second on a CPU). It bounds work that reads more than it computes,
    such as decoding one token at batch 1, which reads every weight once."""
    import time

    buffer = torch.ones(megabytes * 2**20 // 4, device=device)
    best = float("inf")
    for _ in range(5):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        buffer.sum()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - t0)
    return buffer.numel() * buffer.element_size() / max(best, 1e-9)



def build_transformers():
    from transformers import GPT2Config, GPT2LMHeadModel
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    # no end-of-text token: random weights could pick it, and generation would stop early
    config = GPT2Config(bos_token_id=None, eos_token_id=None, pad_token_id=0)
    return GPT2LMHeadModel(config).eval()


def minigpt_timer(compile: bool):
    def time_minigpt(model, prompt: list[int], n_new: int) -> tuple[float, list[int]]:
        cfg = SamplingConfig(strategy="greedy", max_new_tokens=n_new)
        t0 = time.perf_counter()
        ids = [t.id for t in generate(model, prompt, cfg, compile=compile)]
        return time.perf_counter() - t0, ids
    return time_minigpt


@torch.no_grad()
def bytes_per_token(model, n_prompt: int, n_new: int) -> float:
    """The bytes one decode step reads, on average over the generation: every weight in its
    format (the embeddings aside: one row of each is read) and the keys and values so far (fp32
    on a CPU: see GPT.setup_kv_cache)."""
    tensors = {}
    for module in model.modules():
        if isinstance(module, torch.nn.Embedding):
            continue
        own = (*module.parameters(recurse=False), *module.buffers(recurse=False),
               getattr(module, "weight", None))  # a packed weight is neither (quantize.py)
        tensors.update({id(t): t for t in own if isinstance(t, torch.Tensor)})
    weights = sum(t.numel() * t.element_size() for t in tensors.values())
    c = model.config
    return weights + 2 * c.n_layer * c.n_embd * (n_prompt + n_new / 2) * 4


def time_transformers(model, prompt: list[int], n_new: int) -> tuple[float, list[int]]:
    idx = torch.tensor([prompt])
    t0 = time.perf_counter()
    out = model.generate(idx, max_new_tokens=n_new, min_new_tokens=n_new, do_sample=False,
                         use_cache=True, attention_mask=torch.ones_like(idx))
    seconds = time.perf_counter() - t0
    return seconds, out[0, len(prompt):].tolist()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--new-tokens", type=int, default=128)
    p.add_argument("--prompt-tokens", type=int, default=16)
    p.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's own)")
    p.add_argument("--minigpt", default="auto,fp32,bf16,int8,int8+compile",
                   help="minigpt's settings to time, comma-separated: a weight format "
                        f"({', '.join(WEIGHT_CHOICES)}), optionally +compile")
    args = p.parse_args(argv)
    settings = args.minigpt.split(",")
    if any(s.removesuffix("+compile") not in WEIGHT_CHOICES for s in settings):
        p.error(f"--minigpt: a comma-separated list of {', '.join(WEIGHT_CHOICES)}, "
                "each optionally with +compile")
    if args.threads:
        torch.set_num_threads(args.threads)

    import transformers

    torch.manual_seed(SEED)
    fp32_model = GPT(GPTConfig()).eval()
    cpu = torch.device("cpu")

    def held(setting: str) -> str:  # "auto" -> "auto (bf16)": what the device chose
        weights = setting.removesuffix("+compile")
        chosen = weights_for(weights, cpu)
        return setting.replace(AUTO, f"{AUTO} ({chosen})") if weights == AUTO else setting

    # every format is converted from the same fp32 weights
    ours = {f"minigpt {held(s)}": convert_weights(copy.deepcopy(fp32_model),
                                                  weights_for(s.removesuffix("+compile"), cpu))
            for s in settings}
    peer = build_transformers()
    prompt = torch.randint(50257, (args.prompt_tokens,),
                           generator=torch.Generator().manual_seed(SEED)).tolist()
    print("== decode tokens/s: minigpt generate vs transformers generate (KV cache) ==")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"python {platform.python_version()}, cpu capability "
          f"{torch.backends.cpu.get_cpu_capability()}, torch threads {torch.get_num_threads()}, "
          f"os cpus {os.cpu_count()}; {cpu_name()}; load average "
          f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
          + (f"; bf16 with oneDNN's {SAID}, as generate does here"
             if limited_here() else ""))
    print(f"GPT-2 124M shape, random weights, batch 1, greedy, {args.prompt_tokens}-token "
          f"prompt, {args.new_tokens} new tokens; minigpt {', '.join(settings)}, "
          f"transformers fp32; {args.rounds} rounds, alternating")

    bandwidth = [measured_read_bandwidth(cpu)]
    print(f"read bandwidth (sum of a 512 MB buffer): {bandwidth[0] / 1e9:.1f} GB/s")
    runs = {name: (minigpt_timer(name.endswith("+compile")), model) for name, model in ours.items()}
    runs["transformers"] = (time_transformers, peer)
    for name, (fn, model) in runs.items():  # warm-up: allocate, pick kernels, compile
        seconds, _ = fn(model, prompt, 4)
        print(f"  warm-up {name}: {seconds:.1f} s")

    rates: dict[str, list[float]] = {name: [] for name in runs}
    for r in range(args.rounds):
        order = list(runs) if r % 2 == 0 else list(runs)[::-1]
        parts, starved = [], False
        for name in order:
            fn, model = runs[name]
            cpu0 = time.process_time()
            seconds, ids = fn(model, prompt, args.new_tokens)
            share = (time.process_time() - cpu0) / seconds
            assert len(ids) == args.new_tokens, (name, len(ids))
            rates[name].append(args.new_tokens / seconds)
            parts.append(f"{name} {rates[name][-1]:6.1f} tok/s (cpu {share:.2f})")
            starved |= share < 0.8 * torch.get_num_threads()
        # cpu: CPU time over wall time, about the thread count when the cores were ours
        flag = "  <- cores shared with another process" if starved else ""
        print(f"  round {r + 1}: " + " | ".join(parts) + flag)
    bandwidth.append(measured_read_bandwidth(cpu))
    gbs = statistics.mean(bandwidth)
    print(f"read bandwidth after the rounds: {bandwidth[1] / 1e9:.1f} GB/s; the limits below use "
          f"the mean, {gbs / 1e9:.1f} GB/s")
    med = {name: statistics.median(v) for name, v in rates.items()}
    print("result (median over rounds):")
    for name, v in rates.items():
        print(f"  {name:<20} {med[name]:6.1f} tokens/s  [{min(v):.1f}..{max(v):.1f}]  "
              f"{1000 / med[name]:6.1f} ms/token")
    for name in ours:
        print(f"  ratio {name}/transformers: {med[name] / med['transformers']:.2f} "
              "(above 1: minigpt is faster)")
    print("against the bandwidth limit (bandwidth / bytes read per token):")
    for name, (_, model) in runs.items():
        read = bytes_per_token(model, args.prompt_tokens, args.new_tokens)
        limit = gbs / read
        print(f"  {name:<20} {read / 1e6:6.1f} MB a token, limit {limit:6.1f} tokens/s, "
              f"reached {med[name] / limit:4.0%}")


if __name__ == "__main__":
    main()
