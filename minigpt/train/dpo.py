"""Preference tuning: DPO (Rafailov et al. 2023), the simple modern form of learning from
people's rankings of answers ("A is better than B").

For a prompt x, a chosen reply y_w and a rejected one y_l, the model being tuned (the policy,
pi) and the model it started as (the reference, frozen):

    loss = -log sigmoid(beta * ((log pi(y_w|x) - log ref(y_w|x)) - (log pi(y_l|x) - log ref(y_l|x))))

log p(y|x) sums the log-probabilities of the reply's tokens only. The bracket times beta is the
reward margin: how much more the policy, relative to where it started, prefers the chosen reply;
the loss pushes it up, and beta keeps the policy from moving far from the reference (a small
beta lets it move more). Logged with it: the preference accuracy (the share of pairs whose
margin is positive) and the log-ratio to the reference on the replies (an estimate, on these
replies, of the KL the tuning has moved the model by).

Preferences come in TRL's fields, a JSON object a line: {"prompt", "chosen", "rejected"}, the
prompt as text (or a messages list, for a model with the chat template), the replies as text.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from minigpt.data.batches import ExampleBatches
from minigpt.data.chat import has_template
from minigpt.data.records import records
from minigpt.errors import DataError, TokenizerError
from minigpt.infer.preferences import FIELDS  # TRL's, as the Chat pane writes them
from minigpt.model.lora import adapters_off, lora_layers


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor,
             beta: float) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The mean DPO loss over pairs, from each reply's summed log-probability under the policy
    and the reference; and the margin, accuracy and log-ratio, as tensors."""
    chosen, rejected = policy_chosen - ref_chosen, policy_rejected - ref_rejected
    margin = beta * (chosen - rejected)
    loss = -F.logsigmoid(margin).mean()
    return loss, {"margin": margin.mean().detach(), "accuracy": (margin > 0).float().mean(),
                  "kl": ((chosen + rejected) / 2).mean().detach()}


def reply_logps(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Each row's summed log-probability of its targets y where they are not -1 (the reply's
    tokens), under the model: [rows]."""
    logits, _ = model(x)
    logps = torch.log_softmax(logits.float(), dim=-1)
    taken = logps.gather(-1, y.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return (taken * (y >= 0)).sum(dim=-1)


class DPO:
    """The objective of a preference-tuning run: a batch's chosen replies in its first half of
    rows, the rejected ones in the second."""

    def __init__(self, reference: torch.nn.Module, beta: float):
        self.reference = reference
        self.beta = beta

    @classmethod
    def from_model(cls, model: torch.nn.Module, beta: float) -> DPO:
        """The reference is the starting model, frozen: a copy of it before any step; for a
        model with LoRA adapters, the model itself with its adapters off, which is the starting
        model exactly (its own weights are frozen, and new adapters changed nothing), no copy."""
        if lora_layers(model):
            return cls(WithoutAdapters(model), beta)
        reference = copy.deepcopy(model).eval()
        for p in reference.parameters():
            p.requires_grad_(False)
        return cls(reference, beta)

    def loss(self, model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        x, y = batch
        half = x.size(0) // 2
        policy = reply_logps(model, x, y)
        with torch.no_grad():
            ref = reply_logps(self.reference, x, y)
        return dpo_loss(policy[:half], policy[half:], ref[:half], ref[half:], self.beta)


class WithoutAdapters:
    """A LoRA model as its base computes it, in eval mode (no dropout), adapters off: called as
    the model is."""

    def __init__(self, model: torch.nn.Module):
        self.model = model

    def __call__(self, x: torch.Tensor):
        training = self.model.training
        self.model.eval()
        try:
            with adapters_off(self.model):
                return self.model(x)
        finally:
            self.model.train(training)


# --- preference pairs --------------------------------------------------------------------------


@dataclass
class PreferenceData:
    """Pairs of replies to prompts, as ids: what `train --dpo` trains on, split in two (the last
    val_fraction of the pairs validate)."""

    tokenizer: object
    train: list[tuple[list[int], list[int], list[int]]]  # prompt, chosen, rejected
    val: list[tuple[list[int], list[int], list[int]]]
    source: str
    description: str
    key: str | None = None

    def sizes(self) -> tuple[int, int]:
        count = lambda pairs: sum(len(p) + len(c) + len(r) for p, c, r in pairs)  # noqa: E731
        return count(self.train), count(self.val)

    def batches(self, batch_size: int, block_size: int, seed: int, device, rank: int = 0):
        return PairBatches(self, batch_size, block_size, seed, device, rank)

    def sample_prompt(self) -> list[int]:
        return list(self.val[0][0])


class PairBatches(ExampleBatches):
    """Batches of pairs: the chosen replies after their prompts in the first half of the rows, the
    rejected ones in the second, cut to the context from the left (a reply is kept whole where
    it fits) and padded; the targets are the replies' tokens, -1 elsewhere."""

    def rows(self, pairs):
        rows = [(prompt, chosen) for prompt, chosen, _ in pairs] + \
            [(prompt, rejected) for prompt, _, rejected in pairs]
        x = torch.zeros(len(rows), self.block_size, dtype=torch.long)
        y = torch.full((len(rows), self.block_size), -1, dtype=torch.long)
        for row, (prompt, reply) in enumerate(rows):
            ids = (prompt + reply)[-(self.block_size + 1):]
            reply_from = max(1, len(ids) - len(reply))  # where the reply's targets start
            n = len(ids) - 1
            x[row, :n] = torch.tensor(ids[:-1])
            y[row, reply_from - 1:n] = torch.tensor(ids[reply_from:])
        return x, y


def load_preferences(source: str, tokenizer, cfg) -> PreferenceData:
    """Pairs from a JSON Lines file of TRL's fields, each checked (file:line for a missing
    field, a field that is not text, a character the tokenizer lacks)."""
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"no such file: {source} (--dpo takes a JSON Lines file of "
                        '{"prompt", "chosen", "rejected"})')
    pairs = [_pair(record, tokenizer, where) for record, where in records(path)]
    if len(pairs) < 2:
        raise DataError(f"{path}: {len(pairs)} preference(s): at least 2 are needed, one to "
                        "train on and one to validate")
    n_val = max(1, int(len(pairs) * cfg.val_fraction))
    return PreferenceData(tokenizer, pairs[:-n_val], pairs[-n_val:], str(path.resolve()),
                          f"{source}, {len(pairs):,} preferences")


def _pair(record: dict, tokenizer, where: str) -> tuple[list[int], list[int], list[int]]:
    missing = [name for name in FIELDS if name not in record]
    if missing:
        raise DataError(f"{where}: no {', '.join(repr(m) for m in missing)} field "
                        f"(a preference is {{\"prompt\", \"chosen\", \"rejected\"}})")
    prompt, chosen, rejected = (record[name] for name in FIELDS)
    for name, value in (("chosen", chosen), ("rejected", rejected)):
        if not isinstance(value, str) or not value:
            raise DataError(f"{where}: {name!r} is not a reply's text")
    try:
        return (_prompt_ids(prompt, tokenizer, where), _reply_ids(chosen, tokenizer),
                _reply_ids(rejected, tokenizer))
    except TokenizerError as e:
        raise DataError(f"{where}: {e}") from None


def _prompt_ids(prompt, tokenizer, where: str) -> list[int]:
    """A prompt as the model reads it: the user's turn through the template where the model has
    one (a messages list is taken as it is), else the text to continue."""
    if isinstance(prompt, list) and has_template(tokenizer):
        if not all(isinstance(m, dict) and isinstance(m.get("content"), str) and
                   m.get("role") in ("system", "user", "assistant") for m in prompt):
            raise DataError(f"{where}: 'prompt' is a list but not of messages")
        return tokenizer.render(prompt)
    if not isinstance(prompt, str) or not prompt:
        raise DataError(f"{where}: 'prompt' is not text")
    if has_template(tokenizer):
        return tokenizer.render([{"role": "user", "content": prompt}])
    return tokenizer.encode(prompt)


def _reply_ids(reply: str, tokenizer) -> list[int]:
    """A reply's ids; through the template, closed by <|end|> (the model learns where to stop)."""
    ids = tokenizer.encode(reply)
    return ids + [tokenizer.end] if has_template(tokenizer) else ids
