"""Chat keeps pace with generate: the Chat pane's tokens/s for a long reply against
`minigpt.infer.sampling.generate`'s on the same model, in the same process.

    python benchmarks/bench_chat.py                      # GPT-2 124M shape and the cpu preset's
    python benchmarks/bench_chat.py --shape cpu --rounds 5
    python benchmarks/bench_chat.py --new-tokens 300 --size 80x24

Two models with random weights (speed does not depend on what they say), held as the Chat pane
holds them (`--weights auto` by default: bf16, packed, on a CPU with native bf16):

- gpt2: GPT-2 small's shape (12 layers, 12 heads, 768 dims, 50257 tokens, context 1024), with a
  made-up tokenizer that decodes every id: a space and a word of 1 to 4 letters (the id in base
  26), or a newline for one id in a hundred, about as long as GPT-2's tokens;
- cpu: the cpu preset's shape (4 layers, 4 heads, 128 dims, context 128) with a character
  tokenizer of 256 characters (a newline among them). Each token is cheap here, so what the
  screen costs per token shows most. Past 128 tokens the context is full and every token
  re-reads the whole window, for both sides alike.

Both draw with temperature 1 from a fixed seed, so both make the same tokens. The Chat pane runs
in the real app (`MinigptApp`), headless (`App.run_test`, which lays out and renders every
update but writes nothing to a terminal): the time runs from Enter to the whole reply on the
screen; the benchmark waits for the reply's end without polling, so the app's thread does only
the app's work. Its transcript is cleared before each reply, so every round draws the same screen.
generate runs on the same model, from the same prompt ids, with the torch thread count the
Chat pane decodes with (every core, as here with no training beside it; half of them while a run
trains; `--generate-threads` sets another). The two take turns for --rounds rounds, the order
flipping each round;
the figures are medians, and the headline is the ratio chat / generate (the target: 0.95 or
more). `ui cpu` is the CPU time the app's own thread (layout, rendering, messages) spent per
reply, seconds: on a machine with few cores it is taken from decoding.

Prints figures, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import re
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

from minigpt.backends.cpu import SAID, limit_for_decoding, limited_here

limit_for_decoding()  # as generate and chat do, before torch loads (minigpt/backends/cpu.py)

import torch

from minigpt.backends.cpu import cpu_name
from minigpt.data.tokenizer import CharTokenizer
from minigpt.infer import sampling
from minigpt.infer.config import SamplingConfig
from minigpt.infer.load import AUTO, WEIGHT_CHOICES, InferenceModel, weights_for
from minigpt.infer.quantize import convert_weights
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT

SEED = 1337
PROMPT = "the"


class WordTokenizer:
    """Token i: a newline where i % 100 == 99, else a space and i written in base 26 with
    letters (" a" .. " cxjh"): every id decodes, and a text of them encodes back."""

    kind = "words"

    def __init__(self, vocab_size: int):
        self.words = ["\n" if i % 100 == 99 else " " + self._letters(i) for i in range(vocab_size)]
        self.ids = {w: i for i, w in enumerate(self.words)}

    @staticmethod
    def _letters(i: int) -> str:
        s = ""
        while True:
            i, r = divmod(i, 26)
            s = chr(ord("a") + r) + s
            if i == 0:
                return s

    @property
    def vocab_size(self) -> int:
        return len(self.words)

    def encode(self, text: str) -> list[int]:
        return [self.ids[w] for w in re.findall(r" [a-z]+|\n", " " + text)]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.words[i] for i in ids)

    def token_text(self, token_id: int) -> str:
        return self.words[token_id]

    def to_dict(self) -> dict:
        return {"kind": self.kind}


def build(shape: str, weights: str) -> InferenceModel:
    """A model of `shape` with its weights held as the Chat pane holds them (auto: as
    load_for_inference decides for this CPU)."""
    torch.manual_seed(SEED)
    if shape == "gpt2":
        config, tokenizer = GPTConfig(), WordTokenizer(50257)
    else:
        # 256 characters that each take one cell: newline, printable ASCII, then Latin letters
        chars = "\n" + "".join(map(chr, range(32, 127))) + "".join(map(chr, range(0xC0, 0x160)))
        tokenizer = CharTokenizer(chars)
        config = GPTConfig(vocab_size=len(chars), block_size=128, n_layer=4, n_head=4, n_embd=128)
    model = GPT(config).eval()
    held = weights_for(weights, torch.device("cpu"))
    params = model.num_params()
    return InferenceModel(convert_weights(model, held), tokenizer, Path(f"random-{shape}"),
                          torch.device("cpu"), held, params, 0, asked=weights)


def time_generate(loaded: InferenceModel, prompt_ids: list[int], cfg: SamplingConfig,
                  threads: int) -> tuple[float, int]:
    """generate with `threads` torch threads; the thread count set before is put back."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        t0 = time.perf_counter()
        n = sum(1 for _ in sampling.generate(loaded.model, prompt_ids, cfg,
                                             vocab_size=loaded.tokenizer.vocab_size))
        return time.perf_counter() - t0, n
    finally:
        torch.set_num_threads(before)


async def run_shape(shape: str, args) -> float:
    from minigpt_tui.app import MinigptApp
    from minigpt_tui.panes.chat import ChatPane
    from minigpt_tui.widgets.reply import Reply
    from minigpt_tui.widgets.token_inspector import TokenInspector

    loaded = build(shape, args.weights)
    cfg = SamplingConfig(strategy="temperature", temperature=1.0, seed=SEED,
                         max_new_tokens=args.new_tokens)
    prompt_ids = loaded.tokenizer.encode(PROMPT)
    chat_threads = []  # torch threads in the chat's decoding thread, seen at each reply
    real_stream = sampling.stream_pieces

    def spy(*a, **k):
        chat_threads.append(torch.get_num_threads())
        return real_stream(*a, **k)

    sampling.stream_pieces = spy
    finished = asyncio.Event()  # set when the Chat pane ends a reply
    real_finish = Reply.finish

    def finish_spy(reply):
        real_finish(reply)
        finished.set()

    Reply.finish = finish_spy
    width, height = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as runs_root:
        app = MinigptApp(ckpt=loaded, autostart=False, sampling=cfg, device="cpu",
                         runs_root=Path(runs_root))
        async with app.run_test(size=(width, height)) as pilot:
            pane = app.query_one(ChatPane)
            while pane.model is None:
                await pilot.pause(0.05)

            async def time_chat(n_new: int) -> tuple[float, int, float]:
                pane.action_clear()
                app.query_one("#max_new_tokens").value = str(n_new)
                box = pane.query_one("#chat-prompt")
                box.value = PROMPT
                await pilot.pause()
                finished.clear()
                ui0, t0 = time.thread_time(), time.perf_counter()
                box.focus()
                await pilot.press("enter")
                await finished.wait()  # woken by the reply's end, not polling: the app's
                await pilot.pause()  # thread does only its own work; then the last piece drawn
                seconds, ui = time.perf_counter() - t0, time.thread_time() - ui0
                return seconds, len(app.query_one(TokenInspector).tokens), ui

            # warm-up: allocate, pick kernels, start the worker machinery
            await time_chat(8)
            threads = args.generate_threads or chat_threads[-1]
            time_generate(loaded, prompt_ids, replace(cfg, max_new_tokens=8), threads)
            print(f"{shape}: {loaded.describe()}")
            print(f"  chat decodes with {chat_threads[-1]} torch thread(s), generate with "
                  f"{threads}")
            rates: dict[str, list[float]] = {"chat": [], "generate": []}
            ratios = []
            for r in range(args.rounds):
                order = ["chat", "generate"] if r % 2 == 0 else ["generate", "chat"]
                parts = []
                for name in order:
                    cpu0 = time.process_time()
                    if name == "chat":
                        seconds, n, ui = await time_chat(args.new_tokens)
                    else:
                        seconds, n = time_generate(loaded, prompt_ids, cfg, threads)
                    share = (time.process_time() - cpu0) / seconds
                    rates[name].append(n / seconds)
                    ui_said = f", ui cpu {ui:.2f} s" if name == "chat" else ""
                    parts.append(f"{name} {n} tokens {rates[name][-1]:7.1f} tok/s "
                                 f"(cpu {share:.2f}{ui_said})")
                ratios.append(rates["chat"][-1] / rates["generate"][-1])
                print(f"  round {r + 1}: " + " | ".join(parts) + f" | ratio {ratios[-1]:.3f}")
    sampling.stream_pieces, Reply.finish = real_stream, real_finish
    med = {name: statistics.median(v) for name, v in rates.items()}
    for name, v in rates.items():
        print(f"  {name:<9} {med[name]:7.1f} tokens/s  [{min(v):.1f}..{max(v):.1f}]")
    ratio = med["chat"] / med["generate"]
    print(f"  ratio chat/generate: {ratio:.3f} (median per round {statistics.median(ratios):.3f};"
          f" target 0.95 or more)")
    return ratio


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--shape", choices=["gpt2", "cpu", "both"], default="both")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--new-tokens", type=int, default=1000)
    p.add_argument("--weights", choices=WEIGHT_CHOICES, default=AUTO,
                   help="how the model's weights are held (default: auto, as the Chat pane)")
    p.add_argument("--size", default="120x40", help="the terminal, columns x rows")
    p.add_argument("--generate-threads", type=int,
                   help="torch threads for generate (default: those the chat decodes with)")
    args = p.parse_args(argv)
    print("== chat tokens/s against generate, same model, same run ==")
    print(f"cpu {cpu_name()}, os cpus {os.cpu_count()}, torch {torch.__version__} "
          f"({torch.get_num_threads()} threads of its own), python {platform.python_version()}, "
          f"load average {os.getloadavg()[0]:.2f} (1 min)"
          + (f"; bf16 with oneDNN's {SAID}, as chat does here" if limited_here() else ""))
    print(f"{args.new_tokens} new tokens, temperature 1, seed {SEED}, terminal {args.size}, "
          f"{args.rounds} rounds, alternating")
    shapes = ["gpt2", "cpu"] if args.shape == "both" else [args.shape]
    results = {shape: asyncio.run(run_shape(shape, args)) for shape in shapes}
    print("result: " + ", ".join(f"{s} chat/generate {r:.3f}" for s, r in results.items())
          + f"; load average after {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
