import pytest
from conftest import shared_corpus

from minigpt.data.tokenizer import (
    END_OF_TEXT,
    BPETokenizer,
    CharTokenizer,
    as_tiktoken,
    bytes_to_unicode,
    tokenizer_from_dict,
)
from minigpt.errors import TokenizerError

JAPANESE = "吾輩は猫である。名前はまだ無い。\nどこで生れたかとんと見当がつかぬ。"
MIXED = "Hello, world! 日本語のテキスト 🙂 café\n\tdef f(x): return x ** 2\n"


def test_char_round_trips_japanese():
    tok = CharTokenizer.from_text(JAPANESE)
    assert tok.decode(tok.encode(JAPANESE)) == JAPANESE
    assert tok.vocab_size == len(set(JAPANESE))


def test_char_names_the_characters_it_lacks():
    tok = CharTokenizer.from_text("abc ")
    with pytest.raises(TokenizerError, match=r"'é' \(U\+00E9 LATIN SMALL LETTER E WITH ACUTE\)"):
        tok.encode("a café")


def test_char_survives_the_checkpoint_record():
    tok = CharTokenizer.from_text(MIXED)
    again = tokenizer_from_dict(tok.to_dict())
    assert again.encode(MIXED) == tok.encode(MIXED)


@pytest.fixture(scope="module")
def bpe(english_text):
    return BPETokenizer.train(english_text + JAPANESE * 20, vocab_size=600)


def test_bpe_learns_merges_up_to_the_vocabulary_size(bpe):
    assert 300 < bpe.vocab_size <= 600
    assert len(bpe.encode("the function returns the value")) < len("the function returns the value")


@pytest.mark.parametrize("text", [JAPANESE, MIXED, "  leading spaces", "", "\x00\x7f"])
def test_bpe_round_trips_any_text_exactly(bpe, text):
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_handles_characters_it_never_saw(bpe):
    text = "Ελληνικά и русский — ☃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"
    assert bpe.decode(bpe.encode(text)) == text


def test_bpe_survives_the_checkpoint_record(bpe):
    again = tokenizer_from_dict(bpe.to_dict())
    assert again.encode(MIXED + JAPANESE) == bpe.encode(MIXED + JAPANESE)


def test_unknown_tokenizer_record_is_refused():
    with pytest.raises(TokenizerError, match="unrecognized"):
        tokenizer_from_dict({"kind": "wordpiece"})


def test_soseki_round_trips_with_both_tokenizers():
    text = shared_corpus("soseki.txt").read_text(encoding="utf-8")[:200_000]
    char = CharTokenizer.from_text(text)
    assert char.decode(char.encode(text)) == text
    bpe = BPETokenizer.train(text, vocab_size=2000)
    assert bpe.decode(bpe.encode(text)) == text


# --- many texts at once (preparing a corpus): tiktoken where it gives the same ids ------------

BATCH = [MIXED, JAPANESE, f"one{END_OF_TEXT}two", "it's 2024, isn't it?\n\n\n   x", "", "\x00\x7f",
         "Ελληνικά и русский — ☃ 𝔘𝔫𝔦𝔠𝔬𝔡𝔢"]


def test_a_batch_is_encoded_by_tiktoken_with_the_same_ids(bpe):
    assert as_tiktoken(bpe) is not None
    assert [list(ids) for ids in bpe.encode_batch(BATCH)] == [bpe.encode(t) for t in BATCH]


def test_soseki_and_shakespeare_batches_equal_one_by_one():
    text = shared_corpus("soseki.txt").read_text(encoding="utf-8")[:300_000]
    text += shared_corpus("tinyshakespeare.txt").read_text(encoding="utf-8")[:300_000]
    bpe = BPETokenizer.train(text, vocab_size=3000)
    lines = text.splitlines(keepends=True)
    assert as_tiktoken(bpe) is not None
    assert [list(ids) for ids in bpe.encode_batch(lines)] == [bpe.encode(t) for t in lines]


def bpe_from(vocab: dict[str, int], merges: list[tuple[str, str]], **pre) -> BPETokenizer:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = bytes_to_unicode().values()
    vocab = {**{c: i for i, c in enumerate(alphabet)}, **{t: 256 + i for i, t in enumerate(vocab)}}
    tok = Tokenizer(models.BPE(vocab, merges))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(**{"add_prefix_space": False, **pre})
    tok.decoder = decoders.ByteLevel()
    return BPETokenizer(tok)


def test_a_vocabulary_tiktoken_would_merge_differently_is_left_to_tokenizers():
    # "abc" is made from "ab" + "c", but "bc" merges first: the merge list leaves "a" "bc", while
    # tiktoken, merging whatever pair makes a token, would make "abc"
    bpe = bpe_from({"bc": 0, "ab": 1, "abc": 2}, [("b", "c"), ("a", "b"), ("ab", "c")])
    assert as_tiktoken(bpe) is None
    assert [list(ids) for ids in bpe.encode_batch(["abc", "xabc"])] == [bpe.encode("abc"),
                                                                        bpe.encode("xabc")]
    assert len(bpe.encode("abc")) == 2


def test_a_tokenizer_not_of_gpt2s_shape_is_left_to_tokenizers():
    bpe = bpe_from({"ab": 0}, [("a", "b")], add_prefix_space=True)
    assert as_tiktoken(bpe) is None
    assert [list(ids) for ids in bpe.encode_batch(["ab ab"])] == [bpe.encode("ab ab")]
