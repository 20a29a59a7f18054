import copy

import pytest
import torch

from minigpt.backends.kernels import PackedLinear
from minigpt.data.tokenizer import BPETokenizer, CharTokenizer
from minigpt.errors import SamplingError
from minigpt.infer.sampling import (
    SamplingConfig,
    apply_repetition_penalty,
    compiled_decoder,
    generate,
    logits_to_probs,
    stream_text,
)
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT


@pytest.mark.parametrize("changes, message", [
    ({"temperature": -0.1}, "temperature"),
    ({"top_p": 0.0}, "top-p"),
    ({"top_p": 1.5}, "top-p"),
    ({"top_k": 0}, "top-k"),
    ({"min_p": 2.0}, "min-p"),
    ({"strategy": "beam"}, "unknown strategy"),
    ({"stop": ("",)}, "stop"),
    ({"temperature": float("nan")}, "temperature must be a finite number"),
    ({"temperature": float("inf")}, "temperature"),
    ({"top_p": float("nan")}, "top-p"),
    ({"min_p": float("nan")}, "min-p"),
    ({"min_p": -0.1}, "min-p"),
    ({"repetition_penalty": float("nan")}, "repetition penalty"),
    ({"repetition_penalty": float("inf")}, "repetition penalty"),
    ({"repetition_penalty": 0.0}, "repetition penalty"),
    ({"top_k": 2.5}, "top-k must be a whole number"),
    ({"top_k": True}, "top-k"),
    ({"max_new_tokens": -1}, "max new tokens"),
    ({"max_new_tokens": 2.0}, "max new tokens"),
    ({"seed": -1}, "seed"),
    ({"seed": 2**64}, "seed"),
    ({"seed": 1.5}, "seed"),
    ({"strategy": None}, "unknown strategy"),
])
def test_invalid_settings_are_clear_errors(changes, message):
    with pytest.raises(SamplingError, match=message):
        SamplingConfig(**changes)


LOGITS = torch.log(torch.tensor([0.5, 0.25, 0.15, 0.07, 0.03]))


def kept(strategy, **kw):
    probs = logits_to_probs(LOGITS, SamplingConfig(strategy=strategy, temperature=1.0, **kw))
    torch.testing.assert_close(probs.sum(), torch.tensor(1.0))
    return (probs > 0).nonzero().flatten().tolist()


def test_top_k_keeps_the_k_most_likely():
    assert kept("top-k", top_k=2) == [0, 1]


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert kept("top-p", top_p=0.7) == [0, 1]  # 0.5 < 0.7 <= 0.75
    assert kept("top-p", top_p=0.76) == [0, 1, 2]
    assert kept("top-p", top_p=0.1) == [0]  # the most likely token always stays
    assert kept("top-p", top_p=1e-320) == [0]  # even where top_p is 0 in float32


def test_min_p_keeps_tokens_near_the_best():
    assert kept("min-p", min_p=0.3) == [0, 1, 2]  # 0.15 >= 0.3 * 0.5, 0.07 is not


def test_temperature_sharpens_and_flattens():
    cold = logits_to_probs(LOGITS, SamplingConfig(strategy="temperature", temperature=0.5))
    hot = logits_to_probs(LOGITS, SamplingConfig(strategy="temperature", temperature=2.0))
    assert cold[0] > 0.5 > hot[0]


def test_repetition_penalty_lowers_seen_tokens():
    logits = torch.tensor([2.0, -1.0, 0.5])
    out = apply_repetition_penalty(logits, torch.tensor([0, 1]), 2.0)
    assert out.tolist() == [1.0, -2.0, 0.5]


@pytest.fixture
def model():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=30, block_size=12, n_layer=2, n_head=2, n_embd=32)).eval()


def naive_greedy(model, ids, n):
    """No cache: recompute the last block_size tokens for every new token."""
    ids = list(ids)
    for _ in range(n):
        window = torch.tensor([ids[-model.config.block_size:]])
        ids.append(int(model(window)[0][0, -1].argmax()))
    return ids


def test_cached_greedy_equals_recomputing_even_past_the_context(model):
    prompt = [1, 2, 3, 4, 5]
    cfg = SamplingConfig(strategy="greedy", max_new_tokens=30)  # 35 tokens > context of 12
    cached = prompt + [t.id for t in generate(model, prompt, cfg)]
    assert cached == naive_greedy(model, prompt, 30)


@pytest.mark.slow
def test_compiled_decoding_equals_the_plain_model(model):
    from torch._dynamo.utils import counters

    torch._dynamo.reset()
    counters.clear()
    prompt = [1, 2, 3, 4, 5]
    cfg = SamplingConfig(strategy="greedy", max_new_tokens=30)  # past the context, as above
    compiled = prompt + [t.id for t in generate(model, prompt, cfg, compile=True)]
    assert compiled == naive_greedy(model, prompt, 30)
    assert compiled_decoder(model).failure is None
    # it ran compiled, in two graphs (the first position, then any position), none when the
    # cache filled up (the spare slot)
    assert counters["stats"]["unique_graphs"] == 2
    assert not [k for k in model.state_dict() if "_orig_mod" in k]  # the model is untouched


@pytest.mark.slow
@pytest.mark.parametrize("weights", ["fp32", "bf16"])
def test_compiled_decoding_takes_weights_packed_for_onednn(model, weights):
    """generate --compile with the weights as generate holds them: packed for oneDNN on x86
    (backends.kernels.PackedLinear), which Inductor's own lowering refused, so the step ran uncompiled."""
    from minigpt.backends.kernels import packed_dtypes
    from minigpt.infer.quantize import convert_weights

    if torch.float32 not in packed_dtypes():
        pytest.skip("oneDNN packs no weights on this CPU (not x86): nothing to compile here")
    held = convert_weights(copy.deepcopy(model), weights)
    if not any(isinstance(m, PackedLinear) for m in held.modules()):
        pytest.skip(f"{weights} weights are not packed on this CPU (oneDNN's bf16 needs AVX-512)")
    torch._dynamo.reset()
    prompt = [1, 2, 3, 4, 5]
    cfg = SamplingConfig(strategy="greedy", max_new_tokens=10)
    compiled = [t.id for t in generate(held, prompt, cfg, compile=True)]
    assert compiled_decoder(held).failure is None
    assert compiled == [t.id for t in generate(held, prompt, cfg)]


def test_decoding_falls_back_when_compiling_fails(model, broken_compile):
    prompt = [1, 2, 3]
    cfg = SamplingConfig(strategy="greedy", max_new_tokens=8)
    assert prompt + [t.id for t in generate(model, prompt, cfg, compile=True)] == \
        naive_greedy(model, prompt, 8)
    assert compiled_decoder(model).failure == \
        "RuntimeError: InductorError: no working C++ compiler"


def test_a_prompt_longer_than_the_context_keeps_its_end(model):
    prompt = list(range(25))
    cfg = SamplingConfig(strategy="greedy", max_new_tokens=5)
    assert [t.id for t in generate(model, prompt, cfg)] == naive_greedy(model, prompt, 5)[25:]


def test_seeded_sampling_is_reproducible(model):
    cfg = SamplingConfig(strategy="top-p", temperature=1.5, max_new_tokens=20, seed=7)
    first = [t.id for t in generate(model, [1], cfg)]
    assert first == [t.id for t in generate(model, [1], cfg)]
    other = SamplingConfig(strategy="top-p", temperature=1.5, max_new_tokens=20, seed=8)
    assert first != [t.id for t in generate(model, [1], other)]


def test_each_strategy_draws_from_its_own_distribution(model):
    for strategy in ("greedy", "temperature", "top-k", "top-p", "min-p"):
        cfg = SamplingConfig(strategy=strategy, top_k=3, max_new_tokens=5, seed=0)
        for step in generate(model, [1, 2], cfg):
            assert step.probs[step.id] > 0
            if strategy == "top-k":
                assert (step.probs > 0).sum() == 3
            if strategy == "greedy":
                assert step.id == int(step.probs.argmax())


@pytest.mark.parametrize("settings", [
    {"temperature": 1e-30}, {"temperature": 1e30}, {"temperature": 5e-324},
    {"repetition_penalty": 1e-30}, {"repetition_penalty": 1e30},
    {"repetition_penalty": 1e-30, "temperature": 1e-30},
])
def test_extreme_but_valid_settings_still_draw_tokens(model, settings):
    for strategy in ("temperature", "top-k", "top-p", "min-p"):
        cfg = SamplingConfig(strategy=strategy, max_new_tokens=20, seed=0, **settings)
        for step in generate(model, [1, 2, 1, 2], cfg):
            assert torch.isfinite(step.probs).all() and step.probs[step.id] > 0


def test_a_tiny_temperature_is_greedy(model):
    cold = SamplingConfig(strategy="temperature", temperature=1e-30, max_new_tokens=15, seed=0)
    greedy = SamplingConfig(strategy="greedy", max_new_tokens=15)
    assert [t.id for t in generate(model, [1], cold)] == [t.id for t in generate(model, [1], greedy)]


def test_never_an_id_past_the_tokenizers_vocabulary(model):
    """A model's vocabulary may be padded past its tokenizer's (GPT-2's 50257 to 50304):
    generation draws only ids the tokenizer can decode."""
    tok = CharTokenizer("abcdefghij")  # 10 tokens, the model has 30
    with torch.no_grad():  # make the padded ids the most likely by far
        model.lm_head.weight[10:] = 0
        model.lm_head.weight[10:, 0] = 100.0
        model.transformer.h[-1].mlp.c_proj.bias[0] = 100.0
        model.transformer.ln_f.bias[0] = 100.0
    greedy = SamplingConfig(strategy="greedy", max_new_tokens=20)
    assert max(t.id for t in generate(model, [1], greedy)) >= 10  # unlimited: padded ids win
    for strategy in ("greedy", "temperature", "top-k", "top-p", "min-p"):
        cfg = SamplingConfig(strategy=strategy, max_new_tokens=20, seed=0)
        steps = list(generate(model, [1], cfg, vocab_size=10))
        assert all(t.id < 10 and t.probs.numel() == 10 for t in steps)
        text = "".join(stream_text(model, tok, "ab", cfg))
        assert len(text) == 20 and set(text) <= set(tok.chars)


def test_a_model_with_broken_weights_is_a_clear_error(model):
    with torch.no_grad():
        model.transformer.wte.weight[3, 0] = float("nan")
    for strategy in ("temperature", "top-k", "top-p", "min-p"):
        cfg = SamplingConfig(strategy=strategy, max_new_tokens=5, seed=0)
        with pytest.raises(SamplingError, match="not finite"):
            list(generate(model, [3], cfg))


def fake_generation(monkeypatch, token_ids):
    """Make generate() yield these ids, to test the text layer on its own."""
    from minigpt.infer import sampling

    def fake(model, prompt_ids, cfg, generator=None, compile=False, vocab_size=None):
        for i in token_ids[: cfg.max_new_tokens]:
            yield sampling.NextToken(i, torch.zeros(1))

    monkeypatch.setattr(sampling, "generate", fake)


def test_stream_stops_before_a_stop_string(monkeypatch):
    tok = CharTokenizer("abcdEND\n")
    fake_generation(monkeypatch, tok.encode("abcEcEND\nddd"))
    pieces = list(stream_text(None, tok, "a", SamplingConfig(stop=("END",), max_new_tokens=50)))
    assert "".join(pieces) == "abcEc"


def test_stream_never_splits_a_multibyte_character(monkeypatch, english_text):
    tok = BPETokenizer.train(english_text[:5000], vocab_size=300)  # no Japanese merges: bytes
    ids = tok.encode("猫です")
    assert len(ids) > 3  # each character is several byte tokens
    fake_generation(monkeypatch, ids)
    pieces = list(stream_text(None, tok, "a", SamplingConfig(max_new_tokens=50)))
    assert "".join(pieces) == "猫です"
    assert all("\ufffd" not in p for p in pieces)


def test_stats_tell_the_first_token_from_the_steady_pace():
    from minigpt.infer.sampling import GenerationStats

    # a slow start (prefill, then compiling at the first decode steps), then 10 tokens/s
    stats = GenerationStats(new_tokens=6, seconds=11.4,
                            token_seconds=[1.0, 11.0, 11.1, 11.2, 11.3, 11.4])
    assert stats.first_token_seconds == 1.0
    assert stats.steady_tokens_per_s == pytest.approx(10.0)
    assert GenerationStats().steady_tokens_per_s == 0.0


class CountingTokenizer(CharTokenizer):
    """A char tokenizer that counts what it is asked to encode and decode."""

    encoded = decoded = 0

    def encode(self, text):
        self.encoded += 1
        return super().encode(text)

    def decode(self, ids):
        self.decoded += len(ids)
        return super().decode(ids)


def test_a_long_reply_decodes_each_token_once(monkeypatch):
    tok = CountingTokenizer("abc ")
    reply = tok.encode("abc " * 250)
    tok.encoded = 0
    fake_generation(monkeypatch, reply)
    text = "".join(stream_text(None, tok, "a", SamplingConfig(max_new_tokens=1000)))
    assert text == "abc " * 250
    assert tok.decoded == len(reply)  # not the whole reply again at every token: 1000, not 500,500
    assert tok.encoded == 1


def test_an_encoded_prompt_is_not_encoded_again(monkeypatch):
    tok = CountingTokenizer("abc ")
    fake_generation(monkeypatch, tok.encode("cab"))
    tok.encoded = 0
    assert "".join(stream_text(None, tok, tok.encode("ab"), SamplingConfig())) == "cab"
    assert tok.encoded == 1  # the prompt's encoding above, nothing in stream_text


def test_a_reply_that_ends_halfway_through_a_character_still_shows_it(monkeypatch, english_text):
    tok = BPETokenizer.train(english_text[:5000], vocab_size=300)
    ids = tok.encode("猫")
    fake_generation(monkeypatch, ids[:-1])
    assert "".join(stream_text(None, tok, "a", SamplingConfig())) == tok.decode(ids[:-1])


def test_prefill_sends_only_the_last_position_through_the_head(model):
    from minigpt.infer.sampling import prefill

    ids = list(range(1, 11))
    full, _ = model(torch.tensor([ids]))
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    model.setup_kv_cache(batch_size=1)
    try:
        last = prefill(model, ids, torch.device("cpu"))
    finally:
        hook.remove()
        model.clear_kv_cache()
    assert seen == [1]  # one row through the LM head, not 10
    torch.testing.assert_close(last, full[0, -1])


@pytest.mark.parametrize("special", ["<|end|>", "<|user|>", "<|system|>", "<|assistant|>"])
def test_an_answer_ends_at_any_of_the_template_s_tokens(monkeypatch, special):
    """A tuned model's answer ends at its <|end|>; one that starts another turn instead (an
    untrained one may) has ended too: a role's token is never written into the reply's text."""
    from minigpt.data.chat import chat_tokenizer

    tok = chat_tokenizer(CharTokenizer("abc "))
    fake_generation(monkeypatch, tok.encode("ab c") + [tok.specials[special]] + tok.encode("cab"))
    assert "".join(stream_text(None, tok, "a", SamplingConfig(max_new_tokens=50))) == "ab c"
