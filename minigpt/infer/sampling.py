"""Decoding: turn the model's next-token logits into text, one token at a time.

    prefill(prompt)            one forward pass over the prompt fills the KV cache
    decode_one_token(token)    each new token then costs a single position
    logits_to_probs            repetition penalty, temperature, then one filter: top-k, top-p or min-p

Context rule: the model conditions on at most its last `block_size` tokens. A longer prompt keeps
its last block_size tokens; once generation fills the context the window slides one token at a
time (the cache is rebuilt from the last block_size tokens, exactly what a cache-less model sees).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from minigpt.backends.compiling import CompiledOrEager
from minigpt.errors import SamplingError
from minigpt.infer.config import SamplingConfig


def apply_repetition_penalty(logits: torch.Tensor, context: torch.Tensor, penalty: float):
    """CTRL's penalty: a token already in the context has its logit divided by penalty if positive,
    multiplied if negative, so it always becomes less likely."""
    if penalty == 1.0 or context.numel() == 0:
        return logits
    seen = logits.gather(-1, context)
    seen = torch.where(seen > 0, seen / penalty, seen * penalty)
    # an extreme penalty must not overflow to inf: inf - inf is nan in the softmax
    finite = torch.finfo(seen.dtype).max
    return logits.scatter(-1, context, seen.clamp(-finite, finite))


def logits_to_probs(logits: torch.Tensor, cfg: SamplingConfig) -> torch.Tensor:
    """The distribution to draw the next token from, for logits [..., vocab]."""
    if cfg.is_greedy:
        return F.softmax(logits, dim=-1)
    # the same distribution as logits / temperature, but the best token's score is 0 and the
    # others below it, so a tiny temperature gives -inf (probability 0), never inf - inf = nan;
    # one too small for the logits' dtype (0 there: 0 / 0) divides as its smallest normal number
    temperature = max(cfg.temperature, torch.finfo(logits.dtype).tiny)
    logits = (logits - logits.max(dim=-1, keepdim=True).values) / temperature
    if cfg.strategy == "top-k":
        kth = torch.topk(logits, min(cfg.top_k, logits.size(-1))).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    elif cfg.strategy == "top-p":
        sorted_logits, order = torch.sort(logits, descending=True)
        cumulative = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
        # drop a token when the ones before it already reach top_p (the first always stays)
        drop_sorted = (cumulative - F.softmax(sorted_logits, dim=-1)) >= cfg.top_p
        drop_sorted[..., 0] = False  # 0 >= top_p where top_p underflows to 0 in float32
        drop = drop_sorted.scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    elif cfg.strategy == "min-p":
        probs = F.softmax(logits, dim=-1)
        threshold = cfg.min_p * probs.max(dim=-1, keepdim=True).values
        logits = logits.masked_fill(probs < threshold, float("-inf"))
    return F.softmax(logits, dim=-1)


def sample(probs: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None) -> int:
    if cfg.is_greedy:
        return int(probs.argmax(dim=-1))
    try:
        return int(torch.multinomial(probs, num_samples=1, generator=generator))
    except RuntimeError:
        if not torch.isfinite(probs).all():  # nan scores: the weights (or the input) are broken
            raise SamplingError("the model's next-token scores are not finite (nan or inf): its "
                                "weights are damaged, or training diverged") from None
        raise


@dataclass
class NextToken:
    id: int
    probs: torch.Tensor  # [vocab]: the distribution it was drawn from, for "next token" views


def prefill(model, ids: list[int], device) -> torch.Tensor:
    """Run the prompt through the model, filling the cache; the logits for the next token."""
    idx = torch.tensor([ids], dtype=torch.long, device=device)
    logits, _ = model(idx, input_pos=0, last_only=True)
    return logits[0, -1]


def decode_one_token(model, token: int, input_pos: int, device) -> torch.Tensor:
    idx = torch.tensor([[token]], dtype=torch.long, device=device)
    logits, _ = model(idx, input_pos=input_pos)
    return logits[0, -1]


def compiled_decoder(model) -> CompiledOrEager:
    """The model through torch.compile for one-token decode steps (gpt-fast's approach: each new
    token runs as a few fused kernels instead of hundreds of small ones). Compiled once per
    model and kept on it (not in its state dict): the first call takes seconds to a minute, the
    later ones reuse it."""
    if getattr(model, "_compiled_decoder", None) is None:
        model._compiled_decoder = CompiledOrEager(model)  # a plain attribute: not a submodule
    return model._compiled_decoder


@torch.no_grad()
def generate(model, prompt_ids: list[int], cfg: SamplingConfig,
             generator: torch.Generator | None = None, compile: bool = False,
             vocab_size: int | None = None) -> Iterator[NextToken]:
    """Yield new tokens one by one after prompt_ids (at least one token), using a KV cache.

    compile: decode through compiled_decoder(model); the prompt still runs as it is.
    vocab_size: draw only ids below it: the tokenizer's vocabulary, where the model's is padded
    past it (an imported GPT-2's may be), so every token drawn can be decoded.
    """
    if not prompt_ids:
        raise SamplingError("the prompt is empty: give at least one token")
    block_size = model.config.block_size
    device = model.transformer.wte.weight.device
    if generator is None and cfg.seed is not None:
        generator = torch.Generator(device=device).manual_seed(cfg.seed)
    was_training = model.training
    model.eval()
    context = list(prompt_ids)
    window = context[-block_size:]
    model.setup_kv_cache(batch_size=1)
    decoder = compiled_decoder(model) if compile else model
    try:
        logits = prefill(model, window, device)
        pos = len(window)
        for _ in range(cfg.max_new_tokens):
            if vocab_size is not None:
                logits = logits[..., :vocab_size]
            if cfg.repetition_penalty != 1.0:
                seen = torch.tensor(sorted(set(context[-block_size:])), device=device)
                logits = apply_repetition_penalty(logits, seen, cfg.repetition_penalty)
            probs = logits_to_probs(logits.float(), cfg)
            token = sample(probs, cfg, generator)
            yield NextToken(token, probs)
            context.append(token)
            if pos < block_size:
                logits = decode_one_token(decoder, token, pos, device)
                pos += 1
            else:  # the context is full: slide the window by one and rebuild the cache
                logits = prefill(model, context[-block_size:], device)
    finally:
        model.clear_kv_cache()
        model.train(was_training)


@dataclass
class GenerationStats:
    new_tokens: int = 0
    seconds: float = 0.0
    token_seconds: list[float] = field(default_factory=list)  # when each new token came

    @property
    def tokens_per_s(self) -> float:
        return self.new_tokens / self.seconds if self.seconds > 0 else 0.0

    @property
    def first_token_seconds(self) -> float:
        """The prompt's prefill and the first draw."""
        return self.token_seconds[0] if self.token_seconds else 0.0

    @property
    def steady_tokens_per_s(self) -> float:
        """The pace over the second half of the tokens: decoding alone, once any compiling
        (generate --compile compiles at the first decode steps) is over."""
        half = self.token_seconds[len(self.token_seconds) // 2:]
        if len(half) < 2 or half[-1] <= half[0]:
            return 0.0
        return (len(half) - 1) / (half[-1] - half[0])


def stream_pieces(model, tokenizer, prompt: str | list[int], cfg: SamplingConfig,
                  stats: GenerationStats | None = None, generator: torch.Generator | None = None,
                  compile: bool = False) -> Iterator[tuple[str, NextToken]]:
    """Yield (text piece, token) for each new token, stopping before any stop string, and at
    the chat template's <|end|> or any other of its tokens (a model with one says so when its
    answer is done: data/chat.py ChatTokenizer.ends_answer).

    prompt: the text, or its token ids where the caller has encoded it already.
    A piece is only text that is final: a byte-level token that ends halfway through a UTF-8
    character, or text that may be the start of a stop string, is held back (its piece is "")
    and comes out with a later token. Each token is decoded once: only the tokens not yet
    decoded (usually the new one alone) are, so a long reply costs no more per token.
    """
    prompt_ids = tokenizer.encode(prompt) if isinstance(prompt, str) else prompt
    pending: list[int] = []  # tokens whose text is not final yet: part of a character
    emitted = 0
    longest_stop = max((len(s) for s in cfg.stop), default=0)
    start = time.perf_counter()
    text = ""
    ends_answer = getattr(tokenizer, "ends_answer", None)  # a tokenizer with the chat template
    for step in generate(model, prompt_ids, cfg, generator, compile=compile,
                         vocab_size=tokenizer.vocab_size):
        if stats is not None:
            stats.new_tokens += 1
            stats.seconds = time.perf_counter() - start
            stats.token_seconds.append(stats.seconds)
        if ends_answer is not None and ends_answer(step.id):
            break
        pending.append(step.id)
        piece = tokenizer.decode(pending)
        if piece.endswith("\ufffd"):  # an unfinished multi-byte character
            yield "", step
            continue
        text += piece
        pending = []
        cut = min((i for i in (text.find(s, max(0, emitted - longest_stop)) for s in cfg.stop)
                   if i >= 0), default=-1)
        if cut >= 0:
            yield text[emitted:cut], step
            return
        safe = max(emitted, len(text) - max(0, longest_stop - 1))
        yield text[emitted:safe], step
        emitted = safe
    text += tokenizer.decode(pending) if pending else ""  # it ended halfway through a character
    if len(text) > emitted:
        yield text[emitted:], None


def stream_text(model, tokenizer, prompt: str, cfg: SamplingConfig,
                stats: GenerationStats | None = None, generator: torch.Generator | None = None,
                compile: bool = False) -> Iterator[str]:
    """Yield the continuation of prompt as text pieces (see stream_pieces)."""
    for piece, _ in stream_pieces(model, tokenizer, prompt, cfg, stats, generator, compile):
        if piece:
            yield piece
