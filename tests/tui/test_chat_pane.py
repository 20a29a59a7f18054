import os
import threading
import time

import pytest
import torch

from minigpt.checkpoint import save_checkpoint
from minigpt.data.tokenizer import CharTokenizer
from minigpt.infer import sampling
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT
from minigpt_tui.app import MinigptApp
from minigpt_tui.panes.chat import ChatPane
from minigpt_tui.panes.train import TrainPane
from minigpt_tui.widgets.token_inspector import TokenInspector

from .runs import live_run
from .screen import shown_lines
from .waiting import wait_for

SIZE = (80, 24)
CHARS = " abcdefghijklmnopqrstuvwxyz.,\n"


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(CHARS), block_size=32, n_layer=2, n_head=2, n_embd=32))
    return save_checkpoint(tmp_path / "model.pt", model, CharTokenizer(CHARS))


async def open_chat(app, pilot):
    pane = app.query_one(ChatPane)
    await wait_for(pilot, lambda: pane.model is not None, what="the model to load")
    return pane


async def ask(pilot, pane, prompt: str):
    box = pane.query_one("#chat-prompt")
    box.focus()
    box.value = prompt
    await pilot.press("enter")
    await wait_for(pilot, lambda: pane.reply is not None and not pane.generating,
                   what="the reply to finish")
    return str(pane.reply_text)


async def test_chat_streams_a_reply_and_shows_candidates(checkpoint):
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        assert "0.0" in str(app.query_one("#chat-model").render())  # parameters, in millions
        app.query_one("#max_new_tokens").value = "20"
        # top-k 8: every drawn token is then among the 8 candidates shown, whatever the draw
        app.query_one("#top_k").value = "8"
        reply = await ask(pilot, pane, "the cat")
        assert reply.startswith("the cat") and len(reply) == len("the cat") + 20
        inspector = app.query_one(TokenInspector)
        assert len(inspector.tokens) == 20
        last = inspector.tokens[-1]
        assert last.chosen in [token for token, _ in last.options]
        assert abs(sum(p for _, p in last.options) - 1) < 0.5 or len(last.options) == 8
        inspector.focus()
        await pilot.press("left", "left")
        assert inspector.selected == 17
        assert "tokens/s" in str(app.query_one("#chat-status").render())


async def test_strategy_selector_and_settings_reach_the_sampler(checkpoint, monkeypatch):
    seen = []
    real = sampling.stream_pieces

    def spy(model, tokenizer, prompt, cfg, *args, **kwargs):
        seen.append(cfg)
        return real(model, tokenizer, prompt, cfg, *args, **kwargs)

    monkeypatch.setattr(sampling, "stream_pieces", spy)
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        for strategy in ("greedy", "min-p"):
            app.query_one("#strategy").value = strategy
            app.query_one("#seed").value = "7"
            app.query_one("#max_new_tokens").value = "5"
            await ask(pilot, pane, "a")
        assert [cfg.strategy for cfg in seen] == ["greedy", "min-p"]
        assert all(cfg.seed == 7 for cfg in seen)


async def test_invalid_settings_block_generation(checkpoint, monkeypatch):
    calls = []
    monkeypatch.setattr(sampling, "stream_pieces", lambda *a, **k: calls.append(a) or iter(()))
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        top_p = app.query_one("#top_p")
        top_p.value = ""
        top_p.focus()  # after the focus the loaded model gave the prompt, which may land later
        await wait_for(pilot, lambda: app.focused is top_p, what="focus in top-p")
        await pilot.press("2")  # typed: validated as it is typed
        await wait_for(pilot, lambda: top_p.value == "2", what="the key typed")
        assert "top-p must be in (0, 1]" in str(app.query_one("#chat-status").render())
        prompt = app.query_one("#chat-prompt")
        prompt.focus()
        await wait_for(pilot, lambda: app.focused is prompt, what="focus in the prompt")
        await pilot.press("h", "i", "enter")
        await pilot.pause()
        assert calls == [] and pane.reply is None


async def test_escape_stops_a_reply(checkpoint, monkeypatch):
    def slow(model, tokenizer, prompt, cfg, *args, **kwargs):
        for _ in range(10_000):
            time.sleep(0.01)
            yield "a", sampling.NextToken(1, torch.full((len(CHARS),), 1 / len(CHARS)))

    monkeypatch.setattr(sampling, "stream_pieces", slow)
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        app.query_one("#chat-prompt").focus()
        await pilot.press("g", "o", "enter")
        await wait_for(pilot, lambda: "aaa" in str(pane.reply_text), what="streaming to start")
        await pilot.press("escape")
        await wait_for(pilot, lambda: not pane.generating, what="the reply to stop")
        assert str(pane.reply_text).endswith("[stopped]")


async def test_prompt_history_walks_back(checkpoint):
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        app.query_one("#max_new_tokens").value = "3"
        await ask(pilot, pane, "one")
        await ask(pilot, pane, "two")
        await pilot.press("up")
        assert app.query_one("#chat-prompt").value == "two"
        await pilot.press("up")
        assert app.query_one("#chat-prompt").value == "one"


async def test_a_bad_checkpoint_is_reported_in_the_pane(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    app = MinigptApp(ckpt=bad, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        shown = lambda: str(app.query_one("#chat-model").render())  # noqa: E731
        await wait_for(pilot, lambda: "refusing to load" in shown(), what="the load error")
        assert app.query_one(ChatPane).model is None


async def test_chat_with_int8_weights(checkpoint):
    """`minigpt chat --weights int8`: the pane decodes with the quantized model and says so."""
    from minigpt.infer.quantize import Int8Linear

    app = MinigptApp(ckpt=checkpoint, autostart=False, weights="int8")
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        assert isinstance(pane.model.lm_head, Int8Linear)
        shown = str(app.query_one("#chat-model").render())
        assert "int8 weights" in shown
        assert f"{GPT(pane.model.config).num_params() / 1e6:.2f}M params" in shown  # all counted
        assert await ask(pilot, pane, "the ")


async def test_options_given_to_the_app_are_shown_and_used(checkpoint):
    """`minigpt chat --strategy greedy --temperature 0.2 ...` (no --plain): the pane opens with
    those settings in its inputs and decodes with them."""
    from minigpt.infer.sampling import SamplingConfig, stream_text

    given = SamplingConfig(strategy="greedy", temperature=0.2, top_k=7, top_p=0.5, min_p=0.25,
                           repetition_penalty=1.3, max_new_tokens=12, stop=("zz", "\n"), seed=3)
    app = MinigptApp(ckpt=checkpoint, autostart=False, sampling=given, device="cpu")
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        shown = {f: app.query_one(f"#{f}").value for f in (
            "strategy", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "stop",
            "seed", "max_new_tokens")}
        assert shown == {"strategy": "greedy", "temperature": "0.2", "top_k": "7", "top_p": "0.5",
                         "min_p": "0.25", "repetition_penalty": "1.3", "stop": '["zz", "\\n"]',
                         "seed": "3", "max_new_tokens": "12"}
        assert "cpu" in str(app.query_one("#chat-model").render())
        replies = [await ask(pilot, pane, "the cat") for _ in range(2)]
    expected = "the cat" + "".join(stream_text(pane.model, pane.tokenizer, "the cat", given))
    assert replies == [expected, expected]  # greedy: the same reply each time, as generated


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="needs a machine without MPS")
async def test_the_device_given_to_the_app_is_the_one_loaded_on(checkpoint):
    app = MinigptApp(ckpt=checkpoint, autostart=False, device="mps")
    async with app.run_test(size=SIZE) as pilot:
        shown = lambda: str(app.query_one("#chat-model").render())  # noqa: E731
        await wait_for(pilot, lambda: "mps" in shown().lower() and "loading" not in shown(),
                       what="the load on the device asked for to fail")
        assert app.query_one(ChatPane).model is None


def test_chat_command_hands_its_options_to_the_tui(checkpoint, monkeypatch):
    from typer.testing import CliRunner

    from minigpt.cli.app import app as cli
    from minigpt.infer.sampling import SamplingConfig

    opened = []
    monkeypatch.setattr(MinigptApp, "run", lambda self: opened.append(self))
    result = CliRunner().invoke(cli, [
        "chat", "--ckpt", str(checkpoint), "--strategy", "greedy", "--temperature", "0.2",
        "--top-k", "7", "--top-p", "0.5", "--min-p", "0.25", "--repetition-penalty", "1.3",
        "-n", "12", "--stop", "zz", "--stop", "yy", "--seed", "3", "--device", "cpu",
        "--weights", "bf16"])
    assert result.exit_code == 0, result.output
    [tui] = opened
    assert tui.sampling == SamplingConfig(
        strategy="greedy", temperature=0.2, top_k=7, top_p=0.5, min_p=0.25,
        repetition_penalty=1.3, max_new_tokens=12, stop=("zz", "yy"), seed=3)
    assert (tui.device, tui.weights) == ("cpu", "bf16")

    assert CliRunner().invoke(cli, ["chat", "--ckpt", str(checkpoint)]).exit_code == 0
    assert opened[-1].sampling == SamplingConfig()  # no options: the engine's defaults


@pytest.mark.parametrize("typed, stop", [("", ()), ("END", ("END",)), ("[x", None),
                                         ('["\\n\\n", "[b]"]', ("\n\n", "[b]"))])
def test_stop_strings_as_typed(typed, stop):
    from minigpt_tui.widgets.sampling_settings import parse_stop, show_stop

    if stop is None:
        with pytest.raises(ValueError):
            parse_stop(typed)
    else:
        assert parse_stop(typed) == stop
        assert parse_stop(show_stop(stop)) == stop


@pytest.mark.slow  # 400 tokens decoded and drawn one by one
async def test_a_long_reply_is_drawn_as_it_was_decoded(checkpoint):
    from textual.content import Content

    from minigpt.infer.sampling import SamplingConfig, stream_text
    from minigpt_tui.text import plain

    app = MinigptApp(ckpt=checkpoint, autostart=False,
                     sampling=SamplingConfig(strategy="greedy", max_new_tokens=400))
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await ask(pilot, pane, "the cat")
        await pilot.pause()
        decoded = "".join(stream_text(pane.model, pane.tokenizer, "the cat",
                                      SamplingConfig(strategy="greedy", max_new_tokens=400)))
        whole = plain("the cat", "bold") + plain(decoded)  # what a Static with it all draws
        width = pane.reply.size.width
        expected = [line.plain.rstrip() for line in Content.from_rich_text(whole).wrap(width)]
        assert shown_lines(pane.reply) == expected
        assert len(expected) > 10 and pane.last_exchange == "the cat" + decoded


def fake_stream(pieces, monkeypatch):
    """stream_pieces replaced by one that yields these pieces, one token each."""
    def stream(model, tokenizer, prompt, cfg, *args, **kwargs):
        for piece in pieces:
            yield piece, sampling.NextToken(1, torch.full((len(CHARS),), 1 / len(CHARS)))

    monkeypatch.setattr(sampling, "stream_pieces", stream)


async def test_markup_in_a_reply_is_drawn_as_it_is(checkpoint, monkeypatch):
    pieces = ["[bo", "ld]x[/", "] [", " [@click=app.quit]q[/]", " [red", "]"]
    fake_stream(pieces, monkeypatch)
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await ask(pilot, pane, "go")
        await pilot.pause()
        assert shown_lines(pane.reply) == ["go" + "".join(pieces)]


@pytest.mark.slow  # 400 tokens decoded and drawn one by one
async def test_streaming_draws_the_new_text_not_the_whole_reply(checkpoint, monkeypatch):
    """A batch of pieces costs the same late in a long reply as early on: the reply wraps and
    draws its end only. A Static holding the whole reply wrapped all of it again at each batch,
    so the second 200 batches cost about three times the first 200."""
    from textual import content

    release = threading.Event()

    def stream(*args, **kwargs):  # a reply that stays open; its batches come below
        release.wait(120)
        yield from ()

    monkeypatch.setattr(sampling, "stream_pieces", stream)
    wrapped = [0, 0]  # characters wrapped in the first 200 batches, and in the next 200
    real = content.divide_line

    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        box = pane.query_one("#chat-prompt")
        box.focus()
        box.value = "go"
        await pilot.press("enter")
        await wait_for(pilot, lambda: pane.reply is not None, what="the reply to start")
        for i in range(400):
            def counting(text, width, fold=True, half=i // 200):
                wrapped[half] += len(text)
                return real(text, width, fold)

            monkeypatch.setattr(content, "divide_line", counting)
            pane.post_message(ChatPane.Generated(" word" if i % 50 else "\nword", [], 10.0))
            await pilot.pause()
        assert len(shown_lines(pane.reply)) > 40  # most of them scrolled out of view
        release.set()
        await wait_for(pilot, lambda: not pane.generating, what="the reply to end")
    assert wrapped[1] < 1.5 * wrapped[0], wrapped


@pytest.mark.parametrize("training", [False, True])
async def test_a_reply_takes_every_core_unless_a_run_trains_beside_it(checkpoint, monkeypatch,
                                                                      training, tmp_path):
    """The Train pane says its run is live, the app tells the Chat pane to decode with half the
    cores."""
    seen = []
    monkeypatch.setattr(torch, "set_num_threads", seen.append)
    monkeypatch.setattr(os, "cpu_count", lambda: 8)
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        if training:
            train = app.query_one(TrainPane)
            train.attach(live_run(tmp_path))
            await wait_for(pilot, lambda: train in app.followed, what="the app to hear of it")
        app.query_one("#max_new_tokens").value = "3"
        await ask(pilot, pane, "the cat")
    assert seen[-1] == (4 if training else 8)


async def test_a_streaming_reply_shows_its_candidates_a_few_times_a_second_and_at_its_end(
        checkpoint, monkeypatch):
    """Redrawing the candidates and tokens/s with every batch redraws most of the screen: they
    follow the reply at most every SIDE_EVERY seconds, and show its last token when it ends."""
    from minigpt_tui.panes import chat as chat_pane

    monkeypatch.setattr(chat_pane, "POST_EVERY", 0.0)  # a batch per token
    monkeypatch.setattr(chat_pane, "SIDE_EVERY", 3600.0)  # only at the end
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        app.query_one("#max_new_tokens").value = "30"
        inspector, box = app.query_one(TokenInspector), app.query_one("#chat-prompt")
        shown = []  # the token the inspector draws, at each batch
        real = ChatPane._show_side

        def spy(self):
            real(self)
            shown.append(inspector.selected)

        monkeypatch.setattr(ChatPane, "_show_side", spy)
        blinking = []  # whether the prompt's cursor blinks, at each token decoded
        real_stream = sampling.stream_pieces

        def stream(*args, **kwargs):
            for piece in real_stream(*args, **kwargs):
                blinking.append(box.cursor_blink)
                yield piece

        monkeypatch.setattr(sampling, "stream_pieces", stream)
        box.focus()
        box.value = "the"
        await pilot.press("enter")
        await wait_for(pilot, lambda: pane.reply is not None and not pane.generating,
                       what="the reply to finish")
        await pilot.pause()
        assert len(inspector.tokens) == 30
        assert shown[-1] == inspector.selected == 29  # the last token, once the reply ended
        assert len(shown) <= 2  # the first batch (SIDE_EVERY after 0), then the end
        assert "token 30/30" in str(inspector.render())
        # each blink redraws the prompt box: it blinks again once the reply has ended
        assert blinking == [False] * 30 and box.cursor_blink


def test_the_candidates_view_draws_each_token_on_a_line_of_its_own():
    from minigpt_tui.widgets.token_inspector import TOKEN_CELLS, Candidates

    inspector = TokenInspector()
    long = "x" * (TOKEN_CELLS + 5)
    inspector.extend([Candidates("b", [("a", 0.5), ("b", 0.3), (long, 0.2)])])
    assert inspector.selected == -1  # added, not shown yet
    inspector.extend([Candidates("\n", [("\n", 1.0)])])
    inspector.show()
    assert inspector.selected == 1
    inspector.selected = 0
    lines = inspector.render().plain.splitlines()
    assert lines[0] == "token 1/2: b"
    assert lines[1:] == [f"{'a':<{TOKEN_CELLS}}  50.0% █████",
                         f"{'b':<{TOKEN_CELLS}}  30.0% ███",
                         f"{'x' * (TOKEN_CELLS - 1)}…  20.0% ██"]
    chosen = [span for span in inspector.render().spans if "reverse" in str(span.style)]
    assert [inspector.render().plain[s.start:s.end].strip() for s in chosen] == ["b"]
    inspector.selected = 1
    assert inspector.render().plain.splitlines()[1].startswith("\\n")  # escaped, not a break
