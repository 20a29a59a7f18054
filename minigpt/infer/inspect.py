"""Looking inside a model on one prompt: what each head attends to, and what each layer would predict.

    attention   every layer's and head's softmax weights, [n_layer, n_head, T, T] (GPT.attention_maps)
    heads       measures people use to tell heads apart, one set per (layer, head):
                  entropy         nats of the attention distribution (low: the head looks at one place)
                  distance        how many tokens back the attended token is, on average
                  previous        share of attention on the token just before
                  first           share on the first token (where heads with nothing to do park it)
                  current         share on the token itself
                  induction       on a random sequence seen twice, share on the token that followed
                                  the current token's earlier occurrence: the copying head of
                                  Olsson et al. (2022)
    lens        the logit lens (nostalgebraist, 2020): the final LayerNorm and the LM head applied to
                the residual stream after each block, i.e. what the model would predict if it
                stopped there; the top token at each position and the probability of the real next one

The measures average over query positions 1..T-1: position 0 can only attend to itself.
"""

from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from minigpt.errors import ConfigError

# A head "stands out" as a kind when this much of its attention, on average, goes to one place.
STANDOUT_SHARE = 0.5
STANDOUT_INDUCTION = 0.4
# Checked in this order: the rarer, more specific kinds first.
HEAD_KINDS = ("induction", "previous", "first", "current")


@dataclass
class HeadMeasures:
    layer: int
    head: int
    entropy: float
    distance: float
    previous: float
    first: float
    current: float
    induction: float | None = None

    @property
    def kind(self) -> str | None:
        """induction, previous, first or current where the head stands out as one; None otherwise."""
        for kind in HEAD_KINDS:
            value = getattr(self, kind)
            if value is not None and value >= (STANDOUT_INDUCTION if kind == "induction"
                                               else STANDOUT_SHARE):
                return kind
        return None


@dataclass
class Inspection:
    ids: list[int]  # the tokens inspected
    tokens: list[str]  # the text of each
    cut: int  # tokens cut from the front of a prompt longer than the context
    attention: torch.Tensor  # [n_layer, n_head, T, T]; [0, ...] for a model without attention
    heads: list[HeadMeasures]  # layer by layer, head by head
    lens_top: torch.Tensor  # [n_layer, T]: the top token id at each position, after each block
    lens_top_prob: torch.Tensor  # [n_layer, T]: its probability
    lens_next_prob: torch.Tensor  # [n_layer, T - 1]: the probability of the token that came next
    lens_top_text: list[list[str]]  # [n_layer][T]: the text of lens_top
    lens_from: int = 0  # the lens covers positions lens_from.. (before: -1, NaN and "")

    @property
    def n_layer(self) -> int:
        return self.lens_top.size(0)

    @property
    def n_head(self) -> int:
        return self.attention.size(1)

    def head_measures(self, layer: int, head: int) -> HeadMeasures:
        return self.heads[layer * self.n_head + head]

    def to_dict(self) -> dict:
        """The numbers as plain lists, for JSON. Attention rows are cut at the diagonal: row i holds
        token i's weights on tokens 0..i (all the others are zero). The lens lists start at
        position lens_from (0 unless inspect_prompt was asked for the last positions only)."""
        def rows(pattern: torch.Tensor) -> list[list[float]]:
            return [row[:i + 1] for i, row in enumerate(pattern.round(decimals=5).tolist())]

        return {
            "tokens": [{"id": i, "text": t} for i, t in zip(self.ids, self.tokens, strict=True)],
            "cut": self.cut,
            "n_layer": self.n_layer,
            "n_head": self.n_head,
            "attention": [[rows(h) for h in layer] for layer in self.attention],
            "heads": [{**vars(m), "kind": m.kind} for m in self.heads],
            "lens_from": self.lens_from,
            "logit_lens": [
                {"layer": layer,
                 "top": [{"id": i, "text": t, "prob": round(p, 5)} for i, t, p in zip(
                     self.lens_top[layer].tolist(), self.lens_top_text[layer],
                     self.lens_top_prob[layer].tolist(), strict=True)][self.lens_from:],
                 "next_prob": [round(p, 5) for p in
                               self.lens_next_prob[layer].tolist()][self.lens_from:]}
                for layer in range(self.n_layer)
            ],
        }


def head_measures(pattern: torch.Tensor) -> dict[str, torch.Tensor]:
    """The measures of each head of one layer's attention [n_head, T, T] (T >= 2), each [n_head]."""
    T = pattern.size(-1)
    if T < 2:
        raise ValueError("head measures need at least 2 positions")
    pattern = pattern.float()
    rows = pattern[:, 1:]  # the queries that had a choice
    pos = torch.arange(T, device=pattern.device)
    back = (pos[:, None] - pos[None, :]).clamp(min=0)  # how far back key j is from query i
    return {
        "entropy": -(rows * rows.clamp_min(1e-12).log()).sum(-1).mean(-1),
        "distance": (rows * back[1:]).sum(-1).mean(-1),
        "previous": pattern.diagonal(offset=-1, dim1=-2, dim2=-1).mean(-1),
        "first": rows[..., 0].mean(-1),
        "current": pattern.diagonal(dim1=-2, dim2=-1)[:, 1:].mean(-1),
    }


@torch.no_grad()
def induction_scores(model, vocab_size: int, length: int = 16, seed: int = 0) -> torch.Tensor | None:
    """[n_layer, n_head]: on random tokens r followed by r again, the share of attention each head
    puts, from a token of the second r, on the token after that token's first occurrence.
    None when the context is too short for two copies of 2 tokens. (16 tokens are enough to
    tell an induction head apart; each more costs time on a large model.)"""
    n = min(length, model.config.block_size // 2)
    if n < 2 or not model.attention_layers():
        return None
    device = model.transformer.wte.weight.device
    generator = torch.Generator().manual_seed(seed)
    r = torch.randint(vocab_size, (1, n), generator=generator)
    maps = model.attention_maps(torch.cat([r, r], dim=1).to(device))
    # query i in the second copy (n <= i < 2n) looks back at key i - n + 1
    stripe = [m[0].diagonal(offset=1 - n, dim1=-2, dim2=-1)[:, 1:] for m in maps]
    return torch.stack([s.float().mean(-1) for s in stripe]).cpu()


def check_head(config, layer: int | None, head: int | None) -> None:
    """A --layer or --head the model has, or an error that says which it has."""
    if (layer is not None or head is not None) and not config.attention:
        raise ConfigError("this model has no attention (an ablation): there is no head to show")
    if layer is not None and not 0 <= layer < config.n_layer:
        raise ConfigError(f"--layer must be 0 to {config.n_layer - 1} (the model has "
                          f"{config.n_layer} layers), got {layer}")
    if head is not None and not 0 <= head < config.n_head:
        raise ConfigError(f"--head must be 0 to {config.n_head - 1} (the model has "
                          f"{config.n_head} heads a layer), got {head}")


@torch.no_grad()
def inspect_prompt(model, tokenizer, prompt: str, induction: bool = True,
                   lens_last: int | None = None) -> Inspection:
    """Attention, head measures and the logit lens of `model` on `prompt`.

    A prompt longer than the context keeps its last block_size tokens (as generation does);
    `cut` says how many went. lens_last: the logit lens at the last this many positions only
    (None: at every one). It is the costliest part, a row of vocab_size logits per layer and
    position (12 x 64 rows of 50257 for 64 tokens on GPT-2 small, 3x the forward pass), and a
    terminal shows the last few positions.
    """
    ids = tokenizer.encode(prompt)
    if not ids:
        raise ConfigError("the prompt is empty")
    cut = max(0, len(ids) - model.config.block_size)
    ids = ids[cut:]
    if len(ids) < 2:
        raise ConfigError("the prompt is 1 token: inspect needs at least 2, so that one can "
                          "attend to another")
    T = len(ids)
    lens_from = 0 if lens_last is None else max(0, T - lens_last)
    maps, inducing, lens = _read_model(model, tokenizer, ids, induction, lens_from)
    attention = torch.stack([m[0].float().cpu() for m in maps]) if maps \
        else torch.zeros(0, 0, T, T)
    top, top_prob, next_prob = _lens_tables(lens, T, lens_from)
    return Inspection(
        ids=ids, tokens=[tokenizer.token_text(i) for i in ids], cut=cut, attention=attention,
        heads=_heads(attention, inducing), lens_top=top, lens_top_prob=top_prob,
        lens_next_prob=next_prob,
        lens_top_text=[[token_text(tokenizer, i) if i >= 0 else "" for i in row]
                       for row in top.tolist()],
        lens_from=lens_from,
    )


def _read_model(model, tokenizer, ids: list[int], induction: bool, lens_from: int):
    """One pass over the prompt: every layer's attention maps, and the residual stream after
    each block read through the logit lens (from lens_from); the induction scores."""
    was_training = model.training
    model.eval()
    try:
        residuals = []  # the stream after each block
        hooks = [block.register_forward_hook(lambda _m, _i, out: residuals.append(out[0]))
                 for block in model.transformer.h]
        try:
            with head_on_last_position(model):
                device = model.transformer.wte.weight.device
                maps = model.attention_maps(torch.tensor([ids], device=device))
        finally:
            for hook in hooks:
                hook.remove()
        with head_on_last_position(model):
            inducing = induction_scores(model, min(model.config.vocab_size, tokenizer.vocab_size)) \
                if induction else None
        # layer by layer: all of them at once would hold n_layer x T x vocab_size logits
        lens = [lens_readout(logit_lens(model, residual[lens_from:]), ids[lens_from:])
                for residual in residuals]
    finally:
        model.train(was_training)
    return maps, inducing, lens


def _heads(attention: torch.Tensor, inducing: torch.Tensor | None) -> list[HeadMeasures]:
    heads = []
    for layer, pattern in enumerate(attention):
        measured = {k: v.tolist() for k, v in head_measures(pattern).items()}
        for head in range(pattern.size(0)):
            heads.append(HeadMeasures(
                layer, head, **{k: v[head] for k, v in measured.items()},
                induction=None if inducing is None else inducing[layer, head].item()))
    return heads


def _lens_tables(lens: list, T: int, lens_from: int):
    """Each layer's readout as [n_layer, T] tables; the positions before lens_from hold -1 and
    NaN."""
    top = torch.full((len(lens), T), -1, dtype=torch.long)
    top_prob = torch.full((len(lens), T), math.nan)
    next_prob = torch.full((len(lens), T - 1), math.nan)
    for layer, (layer_top, layer_top_prob, layer_next_prob) in enumerate(lens):
        top[layer, lens_from:] = layer_top
        top_prob[layer, lens_from:] = layer_top_prob
        next_prob[layer, lens_from:] = layer_next_prob
    return top, top_prob, next_prob


@contextmanager
def head_on_last_position(model):
    """The model's LM head reads the last position only (as forward's last_only does): inspecting
    reads no logits from the model itself (the logit lens applies the head where it is asked),
    and for GPT-2 small the head over 64 positions is a fifth of the forward pass."""
    hook = model.lm_head.register_forward_pre_hook(lambda _m, args: (args[0][:, -1:],))
    try:
        yield
    finally:
        hook.remove()


def logit_lens(model, residual: torch.Tensor) -> torch.Tensor:
    """What the model would predict from the residual stream [..., n_embd] at some layer: its
    final LayerNorm and LM head applied there."""
    return model.lm_head(model.transformer.ln_f(residual))


def lens_readout(logits: torch.Tensor, ids: list[int]):
    """From logits [T, vocab] at the positions of ids: the top token at each position [T], its
    probability, and the probability of the next token of ids [T - 1]."""
    logits = logits.float()
    log_total = logits.logsumexp(dim=-1)  # the softmax's denominator, without the softmax
    top_logit, top = logits.max(dim=-1)
    following = torch.tensor(ids[1:], device=logits.device)
    next_logit = logits[:-1].gather(-1, following[:, None])[:, 0]
    return (top.cpu(), (top_logit - log_total).exp().cpu(),
            (next_logit - log_total[:-1]).exp().cpu())


def token_text(tokenizer, token_id: int) -> str:
    """The text of a token; an id past the tokenizer's vocabulary (a padded GPT-2 head) shows as
    its number."""
    if token_id >= tokenizer.vocab_size:
        return f"<{token_id}>"
    return tokenizer.token_text(token_id)
