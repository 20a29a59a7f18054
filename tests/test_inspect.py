"""minigpt inspect: attention maps, head measures and the logit lens, checked against the model's
weights by hand; the repetition measure; the command as users meet it."""

import io
import json
import math

import pytest
import torch
import torch.nn.functional as F
from conftest import assert_one_line_error, cli, minigpt
from rich.console import Console

from minigpt.checkpoint import save_checkpoint
from minigpt.cli.inspect_view import (
    RAMP,
    SELECTED_MARK,
    chosen_head,
    head_overview,
    heatmap,
    lens_fits,
    print_inspection,
    token_label,
)
from minigpt.data.tokenizer import BPETokenizer, CharTokenizer
from minigpt.infer.inspect import HeadMeasures, head_measures, induction_scores, inspect_prompt
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT
from minigpt.train.ablation import distinct_ngrams

CHARS = "".join(sorted(set("abcdefghijklmnopqrstuvwxyz ,.\n[]/\x1b")))


def char_model(**overrides) -> tuple[GPT, CharTokenizer]:
    tok = CharTokenizer(CHARS)
    cfg = GPTConfig(**{**dict(vocab_size=tok.vocab_size, block_size=32, n_layer=2, n_head=2,
                              n_embd=32), **overrides})
    return GPT(cfg).eval(), tok


# --- the engine: by hand from the weights ------------------------------------------------------


def test_attention_is_softmax_of_q_k_by_hand():
    model, tok = char_model()
    found = inspect_prompt(model, tok, "the cat sat on the mat")
    idx = torch.tensor([found.ids])
    T, n_head = idx.size(1), model.config.n_head
    with torch.no_grad():
        x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(T))
        for layer, block in enumerate(model.transformer.h):
            h = block.ln_1(x)[0]  # [T, C]
            weight, bias = block.attn.c_attn.weight, block.attn.c_attn.bias
            C = model.config.n_embd
            q = h @ weight[:C].T + bias[:C]
            k = h @ weight[C:2 * C].T + bias[C:2 * C]
            d = C // n_head
            for head in range(n_head):
                qh, kh = q[:, head * d:(head + 1) * d], k[:, head * d:(head + 1) * d]
                scores = qh @ kh.T / math.sqrt(d)
                scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
                torch.testing.assert_close(found.attention[layer, head], scores.softmax(-1))
            x = block(x)
    torch.testing.assert_close(found.attention.sum(-1), torch.ones(2, n_head, T))
    assert torch.all(found.attention.triu(diagonal=1) == 0)


def test_logit_lens_at_the_last_layer_is_the_models_prediction():
    model, tok = char_model()
    found = inspect_prompt(model, tok, "the cat sat on the mat")
    with torch.no_grad():
        probs = F.softmax(model(torch.tensor([found.ids]))[0][0], dim=-1)
    top_prob, top = probs.max(-1)
    assert found.lens_top[-1].tolist() == top.tolist()
    torch.testing.assert_close(found.lens_top_prob[-1], top_prob)
    following = torch.tensor(found.ids[1:])
    torch.testing.assert_close(found.lens_next_prob[-1], probs[:-1].gather(-1, following[:, None])[:, 0])
    assert found.lens_top_text[-1] == [tok.token_text(i) for i in top.tolist()]


def test_logit_lens_at_the_first_layer_reads_the_stream_after_block_0():
    model, tok = char_model()
    found = inspect_prompt(model, tok, "the cat sat")
    idx = torch.tensor([found.ids])
    with torch.no_grad():
        x = model.transformer.wte(idx) + model.transformer.wpe(torch.arange(idx.size(1)))
        x = model.transformer.h[0](x)
        probs = F.softmax(model.lm_head(model.transformer.ln_f(x))[0], dim=-1)
    assert found.lens_top[0].tolist() == probs.argmax(-1).tolist()
    torch.testing.assert_close(found.lens_top_prob[0], probs.max(-1).values)


def test_a_model_without_attention_has_a_lens_and_no_heads():
    model, tok = char_model(attention=False)
    found = inspect_prompt(model, tok, "the cat")
    assert found.heads == [] and found.attention.shape == (0, 0, 7, 7)
    assert found.lens_top.shape == (2, 7)
    out = io.StringIO()
    print_inspection(found, Console(file=out, width=80))
    assert "no attention" in out.getvalue() and "logit lens" in out.getvalue()


def test_a_prompt_longer_than_the_context_keeps_its_last_tokens():
    model, tok = char_model()
    prompt = "abcdefghij" * 4
    found = inspect_prompt(model, tok, prompt)
    assert found.cut == 8 and found.ids == tok.encode(prompt)[8:]


def test_inspecting_leaves_the_model_as_it_was():
    model, tok = char_model()
    model.train()
    inspect_prompt(model, tok, "the cat")
    assert model.training
    assert not any(a.record_attention for a in model.attention_layers())
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_the_lens_at_the_last_positions_only_is_the_same_there():
    """The CLI computes the logit lens where its table shows it (the costliest part of an
    inspection); what it prints is the same as with the lens everywhere."""
    model, tok = char_model()
    prompt = "the cat sat on the mat"
    whole = inspect_prompt(model, tok, prompt)
    last = inspect_prompt(model, tok, prompt, lens_last=5)
    T = len(whole.ids)
    assert last.lens_from == T - 5
    assert last.lens_top[:, T - 5:].tolist() == whole.lens_top[:, T - 5:].tolist()
    torch.testing.assert_close(last.lens_top_prob[:, T - 5:], whole.lens_top_prob[:, T - 5:])
    torch.testing.assert_close(last.lens_next_prob[:, T - 5:], whole.lens_next_prob[:, T - 5:])
    assert (last.lens_top[:, :T - 5] == -1).all() and last.lens_next_prob[:, :T - 5].isnan().all()
    numbers = last.to_dict()
    assert numbers["lens_from"] == T - 5 and len(numbers["logit_lens"][0]["top"]) == 5
    assert len(numbers["logit_lens"][0]["next_prob"]) == 4
    json.dumps(numbers, allow_nan=False)  # no NaN of the positions left out
    for width in (80, 120):
        shown = []
        for found in (whole, inspect_prompt(model, tok, prompt, lens_last=lens_fits(width))):
            out = io.StringIO()
            print_inspection(found, Console(file=out, width=width))
            shown.append(out.getvalue())
        assert shown[0] == shown[1]


def test_cli_inspects_fp32_weights_whatever_the_device_would_choose(checkpoints, tmp_path,
                                                                    monkeypatch):
    """On a CPU with native bf16, chat and generate hold bf16 weights; inspect's probabilities
    are the model's own, to 5 decimals in --json."""
    from typer.testing import CliRunner

    from minigpt.checkpoint import load_checkpoint
    from minigpt.cli.app import app

    monkeypatch.setattr("minigpt.infer.load.has_native_bf16", lambda device: True)
    prompt = "the cat sat on the mat"
    result = CliRunner().invoke(app, ["inspect", "--ckpt", str(checkpoints / "char.pt"),
                                      "--prompt", prompt, "--json", str(tmp_path / "out.json")])
    assert result.exit_code == 0, result.output
    ckpt = load_checkpoint(checkpoints / "char.pt")
    expected = inspect_prompt(ckpt.build_model().eval(), ckpt.tokenizer, prompt).to_dict()
    assert json.loads((tmp_path / "out.json").read_text())["logit_lens"] == expected["logit_lens"]


# --- head measures on patterns made to order ---------------------------------------------------


def previous_token_pattern(T: int) -> torch.Tensor:
    pattern = torch.zeros(T, T)
    pattern[0, 0] = 1
    pattern[torch.arange(1, T), torch.arange(T - 1)] = 1
    return pattern


def test_a_previous_token_pattern_measures_as_one():
    T = 10
    first = torch.zeros(T, T)
    first[:, 0] = 1
    measured = head_measures(torch.stack([previous_token_pattern(T), first, torch.eye(T)]))
    assert measured["previous"].tolist() == pytest.approx([1.0, 1 / (T - 1), 0.0])
    assert measured["first"].tolist() == pytest.approx([1 / (T - 1), 1.0, 0.0])
    assert measured["current"].tolist() == [0.0, 0.0, 1.0]
    assert measured["distance"].tolist() == pytest.approx([1.0, sum(range(1, T)) / (T - 1), 0.0])
    assert measured["entropy"].tolist() == [0.0, 0.0, 0.0]


def test_uniform_attention_has_the_entropy_of_its_choices():
    T = 6
    uniform = torch.ones(T, T).tril()
    uniform = uniform / uniform.sum(-1, keepdim=True)
    measured = head_measures(uniform[None])
    expected = sum(math.log(i + 1) for i in range(1, T)) / (T - 1)
    assert measured["entropy"].item() == pytest.approx(expected)


def test_a_head_stands_out_by_its_strongest_kind():
    def head(**shares):
        values = dict(entropy=1.0, distance=1.0, previous=0.1, first=0.1, current=0.1) | shares
        return HeadMeasures(0, 0, **values)

    assert head(previous=0.9).kind == "previous"
    assert head(first=0.6).kind == "first"
    assert head(current=0.5).kind == "current"
    assert head(previous=0.9, induction=0.45).kind == "induction"
    assert head(induction=0.2).kind is None


def test_induction_score_finds_a_head_that_copies_what_came_next(monkeypatch):
    model, _ = char_model(vocab_size=500)  # random tokens of 500: no repeats within one copy

    def induction_heads(idx):  # head 0 of each layer attends to the token after the last occurrence
        T = idx.size(1)
        seq = idx[0].tolist()
        pattern = torch.zeros(1, 2, T, T)
        for i in range(T):
            earlier = [j for j in range(i) if seq[j] == seq[i]]
            pattern[0, 0, i, earlier[-1] + 1 if earlier else 0] = 1
            pattern[0, 1, i, max(0, i - 1)] = 1  # head 1: the previous token
        return [pattern, pattern]

    monkeypatch.setattr(model, "attention_maps", induction_heads)
    scores = induction_scores(model, vocab_size=500)
    assert scores[:, 0].tolist() == [1.0, 1.0]
    assert scores[:, 1].tolist() == [0.0, 0.0]


# --- the repetition measure ----------------------------------------------------------------------


def test_distinct_ngrams_on_known_strings():
    assert distinct_ngrams("abcdabcd", n=4) == 4 / 5
    assert distinct_ngrams("たたたたたたたた", n=4) == 1 / 5
    assert distinct_ngrams("the cat sat", n=4) == 1.0
    assert distinct_ngrams([1, 2, 1, 2, 1], n=2) == 2 / 4
    assert distinct_ngrams("the cat the cat".split(), n=2) == 2 / 3
    assert distinct_ngrams("abc", n=4) == 1.0  # too short to repeat anything


# --- what is printed -----------------------------------------------------------------------------


def test_token_labels_show_what_is_invisible():
    assert token_label(" the\n") == "·the↵"
    assert token_label("\x1b[31m\t") == "␛[31m⇥"
    assert token_label("") == "∅"


def test_the_heatmap_shows_the_head_that_stands_out_unless_told():
    model, tok = char_model(n_layer=3)
    found = inspect_prompt(model, tok, "the cat sat")
    assert chosen_head(found) == (0, 0, "no head stands out")
    found.head_measures(1, 1).previous = 0.7
    found.head_measures(2, 0).previous = 0.9
    found.head_measures(2, 1).first = 0.8
    assert chosen_head(found) == (2, 0, "the strongest previous-token head")
    assert chosen_head(found, layer=1) == (1, 1, "the strongest previous-token head")
    assert chosen_head(found, head=1) == (1, 1, "the strongest previous-token head")
    assert chosen_head(found, layer=0) == (0, 0, "no head stands out")
    assert chosen_head(found, layer=2, head=1) == (2, 1, "asked for")


def test_a_long_prompt_fits_80_columns_and_says_what_was_cut():
    model, tok = char_model()
    found = inspect_prompt(model, tok, "abcdefghijklmnopqrstuvwxyz abcd")
    grid, note = heatmap(found, 0, 0, width=40)
    assert max(len(line) for line in grid.plain.splitlines()) <= 40
    assert "31 tokens" in note and "columns 0 and" in note
    out = io.StringIO()
    print_inspection(found, Console(file=out, width=80))
    assert max(len(line) for line in out.getvalue().splitlines()) <= 80


def test_token_texts_are_never_markup():
    model, tok = char_model()
    found = inspect_prompt(model, tok, "the cat")
    found.tokens = ["[bold]", "[/]", "[red]x", "\x1b[2J", "a", "b", "c"]
    found.lens_top_text = [["[link=x]", *found.tokens[1:]]] * 2
    out = io.StringIO()
    print_inspection(found, Console(file=out, width=80))
    assert "[bold]" in out.getvalue() and "[/]" in out.getvalue() and "[link=" in out.getvalue()
    assert "␛[2J" in out.getvalue() and "\x1b[2J" not in out.getvalue()


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, english_text):
    root = tmp_path_factory.mktemp("inspect")
    torch.manual_seed(0)
    model, tok = char_model()
    save_checkpoint(root / "char.pt", model, tok)
    bpe = BPETokenizer.train(english_text[:20_000], 300)
    cfg = GPTConfig(vocab_size=bpe.vocab_size, block_size=64, n_layer=2, n_head=4, n_embd=32)
    save_checkpoint(root / "bpe.pt", GPT(cfg), bpe)
    return root


def test_cli_prints_heatmap_overview_and_lens_for_a_char_model(checkpoints, tmp_path):
    result = cli("inspect", "--ckpt", checkpoints / "char.pt", "--prompt",
                 "[bold]the[/] cat\x1b sat", "--layer", "1", "--head", "0",
                 "--json", tmp_path / "out.json")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "attention of layer 1 head 0" in out and "every head" in out and "logit lens" in out
    assert "␛" in out and "\x1b" not in out  # a control character is shown, never sent
    assert any(c in out for c in RAMP[1:])
    numbers = json.loads((tmp_path / "out.json").read_text())
    T = len(numbers["tokens"])
    assert T == 21 and numbers["n_layer"] == 2 and numbers["n_head"] == 2
    assert [len(row) for row in numbers["attention"][1][0]] == list(range(1, T + 1))
    assert len(numbers["heads"]) == 4 and {"entropy", "previous", "kind"} <= set(numbers["heads"][0])
    assert len(numbers["logit_lens"][1]["top"]) == T and len(numbers["logit_lens"][1]["next_prob"]) == T - 1


def test_cli_draws_a_bpe_model_in_characters(checkpoints, monkeypatch):
    """What the heatmap and the overview show without colour (the colour itself, slow:
    test_cli_with_a_bpe_model_and_no_color)."""
    monkeypatch.setenv("COLUMNS", "80")  # Rich reads it at each print
    result = cli("inspect", "--ckpt", checkpoints / "bpe.pt", "--prompt",
                 "The old man said to the people")
    assert result.returncode == 0, result.stderr
    assert "·the" in result.stdout  # a BPE token with its space, visible
    assert "@@" in result.stdout  # position 0 attends to itself: full intensity, as characters
    assert "L1" in result.stdout and "H3" in result.stdout


@pytest.mark.slow
def test_cli_with_a_bpe_model_and_no_color(checkpoints):
    """NO_COLOR wins over FORCE_COLOR, as Rich reads them when the process starts."""
    env = {**__import__("os").environ, "NO_COLOR": "1", "FORCE_COLOR": "1", "COLUMNS": "80"}
    result = minigpt("inspect", "--ckpt", checkpoints / "bpe.pt", "--prompt",
                     "The old man said to the people", env=env)
    assert result.returncode == 0, result.stderr
    assert "\x1b[3" not in result.stdout and "\x1b[9" not in result.stdout  # no colour at all
    assert "·the" in result.stdout  # a BPE token with its space, visible
    assert "@@" in result.stdout  # position 0 attends to itself: full intensity, as characters
    assert "L1" in result.stdout and "H3" in result.stdout


def marked_heads(grid: str) -> list[tuple[int, int]]:
    """(layer, head) of every '◂' in the overview grid's text: the mark ends its head's cell."""
    lines = grid.splitlines()
    cell = lines[0].index("H1") - lines[0].index("H0")
    return [(int(line.split()[0][1:]), (column - 4) // cell)
            for line in lines[1:] for column, c in enumerate(line) if c == SELECTED_MARK]


@pytest.mark.parametrize("width", [80, 20])  # the entropy beside the letter, and letters alone
def test_the_overview_marks_the_head_the_heatmap_draws(width):
    model, tok = char_model(n_layer=3, n_head=4)
    found = inspect_prompt(model, tok, "the cat sat on the mat")
    for selected in [(0, 0), (2, 3), (1, 2)]:
        grid, legend = head_overview(found, width, selected=selected)
        out = io.StringIO()
        Console(file=out, width=width, no_color=True).print(grid, no_wrap=True, crop=True)
        assert marked_heads(out.getvalue()) == [selected]
    grid, _ = head_overview(found, width)
    out = io.StringIO()
    Console(file=out, width=width).print(grid)
    assert SELECTED_MARK not in out.getvalue()


def test_cli_marks_the_head_drawn_in_the_overview_without_colour(checkpoints, monkeypatch):
    monkeypatch.setenv("COLUMNS", "80")
    result = cli("inspect", "--ckpt", checkpoints / "bpe.pt", "--prompt",
                 "The old man said to the people", "--layer", "1", "--head", "2")
    assert result.returncode == 0, result.stderr
    grid = result.stdout.split("every head\n")[1].split("\nP F C")[0]
    assert marked_heads(grid) == [(1, 2)]
    assert "◂: the head drawn (layer 1 head 2)" in " ".join(result.stdout.split())


def test_cli_says_what_it_cut_from_a_long_prompt(checkpoints):
    result = cli("inspect", "--ckpt", checkpoints / "char.pt", "--prompt", "abcdefghij" * 4)
    assert result.returncode == 0, result.stderr
    assert "the prompt is 40 tokens, more than the context of 32: inspecting its last 32" \
        in result.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--ckpt", "missing.pt", "--prompt", "the"], "missing.pt"),
    (["--prompt", ""], "the prompt is empty"),
    (["--prompt", "the", "--layer", "2"], "--layer must be 0 to 1"),
    (["--prompt", "the", "--head", "-1"], "--head must be 0 to 1"),
    (["--prompt", "t"], "at least 2"),
    (["--prompt", "THE"], "vocabulary lacks"),
])
def test_cli_bad_input_is_one_line(checkpoints, args, fragment):
    if "--ckpt" not in args:
        args = ["--ckpt", checkpoints / "char.pt", *args]
    assert_one_line_error(cli("inspect", *args), fragment)
