import pytest
from conftest import shared_corpus

from minigpt.errors import TokenizerError
from minigpt.tokenizer import BPETokenizer, CharTokenizer, tokenizer_from_dict

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
