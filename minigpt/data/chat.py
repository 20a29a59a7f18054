"""Conversations: the chat template an instruction-tuned model reads, and the loss mask that
teaches it to answer.

A conversation is turns in the messages format chat datasets ship in:

    {"messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Reverse: cat"},
                  {"role": "assistant", "content": "tac"}]}

The template wraps each turn in special tokens of its own, added to any tokenizer (character,
BPE, GPT-2's) past its vocabulary:

    <|system|>Be brief.<|end|><|user|>Reverse: cat<|end|><|assistant|>tac<|end|>

Only the template makes a special token: text a user types that looks like one ("<|end|>") is
encoded as the characters it is, so no one can speak for the assistant. A model answers after
<|assistant|>, and its <|end|> says it is done. Instruction tuning learns from the assistant's
tokens only (their <|end|> included): the loss mask leaves out the system prompt, the user's
words and the role tokens, so the model learns to answer, not to write questions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from minigpt.data.batches import ExampleBatches
from minigpt.data.records import records
from minigpt.errors import DataError, TokenizerError

ROLES = ("system", "user", "assistant")
END = "<|end|>"
SPECIALS = tuple(f"<|{role}|>" for role in ROLES) + (END,)  # their ids, in this order, follow
#                                                          the base vocabulary
TEMPLATE = "minigpt-chat"


class ChatTokenizer:
    """A tokenizer with the chat template's special tokens after its vocabulary. encode() never
    makes one (see the module's docstring); the template puts them in by id."""

    def __init__(self, base):
        if isinstance(base, ChatTokenizer):
            raise TokenizerError("the tokenizer has the chat template's tokens already")
        self.base = base
        self.kind = base.kind
        self.first_special = base.vocab_size
        self.specials = {text: base.vocab_size + i for i, text in enumerate(SPECIALS)}

    @property
    def vocab_size(self) -> int:
        return self.base.vocab_size + len(SPECIALS)

    def role(self, role: str) -> int:
        return self.specials[f"<|{role}|>"]

    @property
    def end(self) -> int:
        return self.specials[END]

    def ends_answer(self, token_id: int) -> bool:
        """Whether a generated token ends the assistant's answer: its <|end|>, or any other of
        the template's tokens (a model that starts another turn has ended this one)."""
        return token_id >= self.first_special

    def encode(self, text: str) -> list[int]:
        return self.base.encode(text)

    def decode(self, ids: list[int]) -> str:
        """The text of ids; a special token is written as its name ("<|end|>")."""
        out, run = [], []
        for i in ids:
            if i >= self.first_special:
                out.append(self.base.decode(run) if run else "")
                out.append(SPECIALS[i - self.first_special])
                run = []
            else:
                run.append(i)
        out.append(self.base.decode(run) if run else "")
        return "".join(out)

    def token_text(self, token_id: int) -> str:
        if token_id >= self.first_special:
            return SPECIALS[token_id - self.first_special]
        return self.base.token_text(token_id)

    def to_dict(self) -> dict:
        return {**self.base.to_dict(), "chat": {"template": TEMPLATE, "tokens": list(SPECIALS)}}

    # --- the template ----------------------------------------------------------------------------

    def render(self, messages: list[dict], answer: bool = True) -> list[int]:
        """The ids of a conversation; answer: end with <|assistant|>, for the model to reply."""
        ids = []
        for message in messages:
            ids += [self.role(message["role"]), *self.encode(message["content"]), self.end]
        return ids + [self.role("assistant")] if answer else ids

    def training_example(self, messages: list[dict]) -> tuple[list[int], list[bool]]:
        """The conversation's ids, and for each whether it is the assistant's (its words and the
        <|end|> that closes them): the tokens the loss is taken on."""
        ids, taught = [], []
        for message in messages:
            content = self.encode(message["content"])
            theirs = message["role"] == "assistant"
            ids += [self.role(message["role"]), *content, self.end]
            taught += [False] + [theirs] * (len(content) + 1)
        return ids, taught


def chat_tokenizer(tokenizer) -> ChatTokenizer:
    """The tokenizer with the chat template's tokens: as it is if it has them, else added."""
    return tokenizer if isinstance(tokenizer, ChatTokenizer) else ChatTokenizer(tokenizer)


def has_template(tokenizer) -> bool:
    return isinstance(tokenizer, ChatTokenizer)


# --- conversations from a file -------------------------------------------------------------------


@dataclass(frozen=True)
class Conversation:
    messages: list[dict]
    where: str  # "file:line", for the errors that name it


def read_conversations(path: str | Path) -> Iterator[Conversation]:
    """Each line's conversation, checked: an object with a "messages" list of
    {"role", "content"} (system first if at all, then users and assistants), at least one
    assistant turn; anything else is a DataError naming the file and line."""
    for record, where in records(path):
        yield Conversation(_messages(record, where), where)


def _messages(record: dict, where: str) -> list[dict]:
    messages = record.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f'{where}: no "messages" list (a conversation is {{"messages": '
                        '[{"role": ..., "content": ...}, ...]})')
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES \
                or not isinstance(m.get("content"), str):
            raise DataError(f"{where}: message {i + 1} is not a {{\"role\": system|user|"
                            f"assistant, \"content\": text}}")
        if m["role"] == "system" and i:
            raise DataError(f"{where}: message {i + 1}: a system prompt comes first")
        if _lone_surrogate(m["content"]):
            raise DataError(f"{where}: message {i + 1} holds a lone surrogate, which is not a "
                            "character")
    if not any(m["role"] == "assistant" for m in messages):
        raise DataError(f"{where}: no assistant turn: nothing to learn from")
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def _lone_surrogate(text: str) -> bool:
    return any("\ud800" <= c <= "\udfff" for c in text)


# --- what an instruction-tuning run trains on --------------------------------------------------


@dataclass
class ConversationData:
    """Conversations as ids and loss masks, split in two (the last val_fraction of them
    validate): what `train --sft` trains on, in the place of a corpus's token stream."""

    tokenizer: ChatTokenizer
    train: list[tuple[list[int], list[bool]]]
    val: list[tuple[list[int], list[bool]]]
    source: str
    description: str
    key: str | None = None
    conversations: list[list[dict]] | None = None  # the validation split's, for samples

    def sizes(self) -> tuple[int, int]:
        """The tokens of each split."""
        return sum(len(ids) for ids, _ in self.train), sum(len(ids) for ids, _ in self.val)

    def batches(self, batch_size: int, block_size: int, seed: int, device, rank: int = 0):
        return ConversationBatches(self, batch_size, block_size, seed, device, rank)

    def sample_prompt(self) -> list[int]:
        """The first validation conversation up to its first answer, for the model to answer."""
        messages = self.conversations[0] if self.conversations else []
        first = next((i for i, m in enumerate(messages) if m["role"] == "assistant"), 0)
        return self.tokenizer.render(messages[:first])


def conversation_data(conversations, tokenizer: ChatTokenizer, block_size: int,
                      val_fraction: float, source: str, description: str) -> ConversationData:
    """Conversations tokenized with the template; one whose first answer starts past the
    context (nothing left to learn from) is a DataError naming it."""
    examples, kept = [], []
    for conversation in conversations:
        messages, where = (conversation.messages, conversation.where) \
            if isinstance(conversation, Conversation) else (conversation, description)
        ids, taught = tokenizer.training_example(messages)
        if not any(taught[1:block_size + 1]):
            raise DataError(f"{where}: its first answer starts past the context of {block_size} "
                            "tokens; shorten the conversation or train with a longer "
                            "--block-size")
        examples.append((ids, taught))
        kept.append(messages)
    n_val = max(1, int(len(examples) * val_fraction))
    if len(examples) < 2:
        raise DataError(f"{description}: {len(examples)} conversation(s): at least 2 are needed, "
                        "one to train on and one to validate")
    return ConversationData(tokenizer, examples[:-n_val], examples[-n_val:], source,
                            f"{description}, {len(examples):,} conversations",
                            conversations=kept[-n_val:])


class ConversationBatches(ExampleBatches):
    """Batches of whole conversations, one a row, cut to the context and padded: the targets are
    the next tokens where the assistant speaks, -1 (no loss) everywhere else."""

    def rows(self, examples):
        import torch

        x = torch.zeros(len(examples), self.block_size, dtype=torch.long)
        y = torch.full((len(examples), self.block_size), -1, dtype=torch.long)
        for row, (ids, taught) in enumerate(examples):
            ids, taught = ids[:self.block_size + 1], taught[:self.block_size + 1]
            n = len(ids) - 1
            x[row, :n] = torch.tensor(ids[:-1])
            targets = torch.tensor(ids[1:])
            y[row, :n] = torch.where(torch.tensor(taught[1:]), targets, -1)
        return x, y


TASKS_SOURCE = "tasks"  # --sft's name for the built-in instruction tasks (data/tasks.py)


def load_conversations(source: str, tokenizer: ChatTokenizer, block_size: int,
                       val_fraction: float) -> ConversationData:
    """An instruction-tuning run's data: a messages file, or the built-in tasks' training split."""
    if source == TASKS_SOURCE:
        from minigpt.data.tasks import TASKS, conversations

        found = list(conversations())
        description = f"the built-in tasks ({', '.join(TASKS)})"
        return conversation_data(found, tokenizer, block_size, val_fraction, source, description)
    path = Path(source).expanduser()
    if not path.is_file():
        raise DataError(f"no such file: {source} (--sft takes a JSON Lines file of "
                        f"conversations, or {TASKS_SOURCE!r} for the built-in tasks)")
    return conversation_data(list(read_conversations(path)), tokenizer, block_size,
                             val_fraction, str(path.resolve()), source)
