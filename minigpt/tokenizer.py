"""Tokenizers: text <-> token ids.

- CharTokenizer: one id per distinct character of the corpus. Readable, and exact for any script.
- BPETokenizer: byte-level BPE (GPT-2's scheme) trained on the corpus with the `tokenizers`
  library. Every byte is in its base alphabet, so any UTF-8 text round-trips exactly.

A tokenizer is saved inside the checkpoint as a small dict (to_dict / tokenizer_from_dict).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Iterable
from typing import Protocol

from minigpt.errors import TokenizerError

END_OF_TEXT = "<|endoftext|>"


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

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=False)

    def token_text(self, token_id: int) -> str:
        return self.decode([token_id])

    def to_dict(self) -> dict:
        return {"kind": self.kind, "json": self.tokenizer.to_str()}


def build_tokenizer(kind: str, text: str, bpe_vocab_size: int = 4096) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.from_text(text)
    if kind == "bpe":
        return BPETokenizer.train(text, bpe_vocab_size)
    raise TokenizerError(f"unknown tokenizer {kind!r}; choose 'char' or 'bpe'")


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
