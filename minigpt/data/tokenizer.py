"""Tokenizers: text <-> token ids.

- CharTokenizer: one id per distinct character of the corpus. Readable, and exact for any script.
- BPETokenizer: byte-level BPE (GPT-2's scheme) trained on the corpus with the `tokenizers`
  library. Every byte is in its base alphabet, so any UTF-8 text round-trips exactly. Many texts
  at once (preparing a corpus) are encoded by tiktoken, which is faster, where it gives the same
  ids (see benchmarks/RESULTS.md, "Preparing corpora").

A tokenizer is saved inside the checkpoint as a small dict (to_dict / tokenizer_from_dict).
"""

from __future__ import annotations

import json
import os
import unicodedata
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Protocol

import numpy as np

from minigpt.errors import TokenizerError

END_OF_TEXT = "<|endoftext|>"
# GPT-2's pre-tokenizer regex, as tiktoken writes it (tokenizers' ByteLevel splits with the same)
GPT2_SPLIT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


class Tokenizer(Protocol):
    kind: str

    @property
    def vocab_size(self) -> int: ...

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def token_text(self, token_id: int) -> str: ...

    def to_dict(self) -> dict: ...


def describe_char(c: str) -> str:
    """'é' (U+00E9 LATIN SMALL LETTER E WITH ACUTE): a name a person can act on."""
    name = unicodedata.name(c, "unnamed")
    shown = c if c.isprintable() and not c.isspace() else repr(c)[1:-1]
    return f"'{shown}' (U+{ord(c):04X} {name})"


class CharTokenizer:
    kind = "char"

    def __init__(self, chars: str):
        if len(set(chars)) != len(chars):
            raise TokenizerError("character vocabulary has duplicates")
        self.chars = chars
        self.stoi = {c: i for i, c in enumerate(chars)}

    @classmethod
    def from_text(cls, text: str) -> CharTokenizer:
        return cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, text: str) -> list[int]:
        try:
            return [self.stoi[c] for c in text]
        except KeyError:
            missing = sorted({c for c in text if c not in self.stoi})
            shown = ", ".join(describe_char(c) for c in missing[:5])
            more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
            raise TokenizerError(
                f"the text has characters this model's vocabulary lacks: {shown}{more}"
            ) from None

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def token_text(self, token_id: int) -> str:
        return self.chars[token_id]

    def to_dict(self) -> dict:
        return {"kind": self.kind, "chars": self.chars}


class BPETokenizer:
    kind = "bpe"

    def __init__(self, tokenizer):  # a tokenizers.Tokenizer
        self.tokenizer = tokenizer
        self._tiktoken = None  # built on the first encode_batch: False where it cannot be used

    @classmethod
    def train(cls, text: str, vocab_size: int) -> BPETokenizer:
        lines = text.splitlines(keepends=True)
        chunks = ("".join(lines[i:i + 1000]) for i in range(0, len(lines), 1000))
        return cls.train_from(chunks, vocab_size, length=len(lines) // 1000 + 1)

    @classmethod
    def train_from(cls, texts: Iterable[str], vocab_size: int,
                   length: int | None = None) -> BPETokenizer:
        """Trained on a stream of texts (each is pre-tokenized on its own)."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE())
        # GPT-2's pre-tokenizer: bytes mapped to printable characters, split with GPT-2's regex
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes: nothing unknown
            special_tokens=[END_OF_TEXT],
            show_progress=False,
        )
        tok.train_from_iterator(texts, trainer, length=length)
        return cls(tok)

    @classmethod
    def from_json(cls, json_text: str) -> BPETokenizer:
        from tokenizers import Tokenizer

        try:
            return cls(Tokenizer.from_str(json_text))
        except Exception as e:  # the library raises its own Exception type
            raise TokenizerError(f"cannot rebuild the BPE tokenizer: {e}") from None

    @property
    def vocab_size(self) -> int:
        return self.tokenizer.get_vocab_size()

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text, add_special_tokens=False).ids

    def encode_batch(self, texts: list[str]) -> list[np.ndarray]:
        """Many texts at once, on every core: the same ids as encode() for each, as uint32 arrays."""
        if self._tiktoken is None:
            self._tiktoken = as_tiktoken(self) or False
        if not self._tiktoken:
            encodings = self.tokenizer.encode_batch(texts, add_special_tokens=False)
            return [np.asarray(e.ids, dtype=np.uint32) for e in encodings]
        encode = self._tiktoken.encode_to_numpy  # it lets go of the GIL: a thread per core
        share = -(-len(texts) // (os.cpu_count() or 1)) or 1
        with ThreadPoolExecutor(os.cpu_count()) as pool:
            parts = pool.map(lambda at: [encode(t, allowed_special="all")
                                         for t in texts[at:at + share]],
                             range(0, len(texts), share))
        return [ids for part in parts for ids in part]

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_text(self, token_id: int) -> str:
        return self.decode([token_id])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "json": self.tokenizer.to_str()}


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's map from the 256 bytes to printable characters, the alphabet byte-level BPE
    vocabularies are written in: printable Latin-1 stands for itself, the rest from U+0100 on."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
                 *range(ord("®"), ord("ÿ") + 1)]
    others = [b for b in range(256) if b not in printable]
    return {**{b: chr(b) for b in printable}, **{b: chr(256 + i) for i, b in enumerate(others)}}


def as_tiktoken(tokenizer: BPETokenizer):
    """The same tokenizer as a tiktoken Encoding, or None where the ids could differ.

    tiktoken merges the adjacent pair whose joined bytes have the lowest id; `tokenizers` applies
    its merge list in order. The two agree for GPT-2's scheme (byte-level, GPT-2's regex, no
    normalizer) when each token's own text encodes to that token, which is checked here for
    every token: a tokenizer that fails any of it is left to `tokenizers`.
    """
    try:
        import tiktoken
    except ImportError:
        return None
    spec = json.loads(tokenizer.tokenizer.to_str())
    model, pre = spec.get("model") or {}, spec.get("pre_tokenizer") or {}
    if (model.get("type") != "BPE" or model.get("dropout") or model.get("byte_fallback")
            or model.get("ignore_merges") or model.get("continuing_subword_prefix")
            or model.get("end_of_word_suffix") or spec.get("normalizer") is not None
            or pre != {**pre, "type": "ByteLevel", "add_prefix_space": False, "use_regex": True}):
        return None
    special = {t["content"]: t["id"] for t in spec.get("added_tokens", [])}
    byte_of = {c: b for b, c in bytes_to_unicode().items()}
    try:
        ranks = {bytes(byte_of[c] for c in token): i
                 for token, i in model["vocab"].items() if token not in special}
        encoding = tiktoken.Encoding("minigpt-bpe", pat_str=GPT2_SPLIT, mergeable_ranks=ranks,
                                     special_tokens=special)
    except (KeyError, ValueError):  # a token outside the byte alphabet: not GPT-2's scheme
        return None
    texts = []
    for token in ranks:
        try:
            texts.append(token.decode("utf-8"))
        except UnicodeDecodeError:  # part of a character: met only inside longer texts
            continue
    if [encoding.encode(t, allowed_special="all") for t in texts] != [
            e.ids for e in tokenizer.tokenizer.encode_batch(texts, add_special_tokens=False)]:
        return None
    return encoding


def tokenizer_from_dict(d: dict) -> Tokenizer:
    kind = d.get("kind") if isinstance(d, dict) else None
    if kind == "char" and isinstance(d.get("chars"), str):
        tokenizer = CharTokenizer(d["chars"])
    elif kind == "bpe" and isinstance(d.get("json"), str):
        tokenizer = BPETokenizer.from_json(d["json"])
    else:
        raise TokenizerError(f"unrecognized tokenizer record (kind {kind!r})")
    if tokenizer.vocab_size < 1:
        raise TokenizerError("the tokenizer has no tokens")
    if "chat" in d:  # an instruction-tuned model's: the chat template's tokens on top
        from minigpt.data.chat import SPECIALS, TEMPLATE, ChatTokenizer

        chat = d["chat"]
        if not isinstance(chat, dict) or chat.get("template") != TEMPLATE \
                or chat.get("tokens") != list(SPECIALS):
            raise TokenizerError("unrecognized chat template in the tokenizer record")
        return ChatTokenizer(tokenizer)
    return tokenizer


# --- GPT-2's own vocabulary --------------------------------------------------------------------

# The files a GPT-2 tokenizer can come from, in the order they are tried. tokenizer.json first: it
# is the complete fast tokenizer (tokens added after training included); the other two pairs are
# the vocabulary and merge list, as Hugging Face and as OpenAI named them.
GPT2_TOKENIZER_FILES = (("tokenizer.json",), ("vocab.json", "merges.txt"),
                        ("encoder.json", "vocab.bpe"))


def gpt2_tokenizer_from_folder(folder) -> BPETokenizer:
    """GPT-2's byte-level BPE from the tokenizer files in a local folder; never a download.

    Built exactly as transformers' GPT2TokenizerFast builds it, so the ids are the same: GPT-2's
    byte-to-unicode alphabet and pre-tokenizer regex (tokenizers' ByteLevel, no prefix space) and
    <|endoftext|> as a special token, so the text "<|endoftext|>" is that one token (50256 in GPT-2).
    It is a BPETokenizer, so it travels inside checkpoints like one trained here.
    """
    from pathlib import Path

    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    folder = Path(folder)
    for names in GPT2_TOKENIZER_FILES:
        paths = [folder / name for name in names]
        if all(p.is_file() for p in paths):
            break
    else:
        wanted = " or ".join(" + ".join(names) for names in GPT2_TOKENIZER_FILES)
        raise TokenizerError(f"no tokenizer files in {folder} (looked for {wanted})")
    try:
        if len(paths) == 1:
            return BPETokenizer(Tokenizer.from_file(str(paths[0])))
        # the merges reader skips the "#version: 0.2" first line both files start with
        bpe = models.BPE.from_file(str(paths[0]), str(paths[1]), dropout=None,
                                   continuing_subword_prefix="", end_of_word_suffix="",
                                   fuse_unk=False)
    except Exception as e:  # the library raises its own Exception type
        names = " + ".join(p.name for p in paths)
        raise TokenizerError(f"cannot read the tokenizer in {folder} ({names}): {e}") from None
    tok = Tokenizer(bpe)
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    # GPT-2's unknown, start and end token in one; it keeps its vocabulary id when it has one
    tok.add_special_tokens([AddedToken(END_OF_TEXT, special=True, normalized=False)])
    return BPETokenizer(tok)
