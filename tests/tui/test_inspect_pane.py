"""The Inspect pane: Enter inspects the Chat pane's model on a prompt; the arrows move through
layers and heads; it fits 80x24, reads with NO_COLOR, and says what is wrong in one line."""

import html
import io
import re

import pytest
import torch
from rich.console import Console

from minigpt.checkpoint import save_checkpoint
from minigpt.cli.inspect_view import RAMP, SELECTED_MARK
from minigpt.data.tokenizer import CharTokenizer
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT
from minigpt_tui.app import MinigptApp
from minigpt_tui.panes.chat import ChatPane
from minigpt_tui.panes.inspect import NO_MODEL, InspectPane

from .waiting import wait_for

SIZE = (80, 24)
CHARS = " abcdefghijklmnopqrstuvwxyz.,\n"
PROMPT = "the cat sat on the mat, the cat"


@pytest.fixture
def checkpoint(tmp_path):
    """A char model whose heads attend sharply and each differently (untrained heads are near
    uniform, so two of them would draw the same heatmap)."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(CHARS), block_size=32, n_layer=2, n_head=2, n_embd=32))
    with torch.no_grad():
        for attn in model.attention_layers():
            attn.c_attn.weight.mul_(20)
    return save_checkpoint(tmp_path / "model.pt", model, CharTokenizer(CHARS))


def drawn(widget) -> str:
    """The text of what a Static shows, all of it (scrolled into view or not)."""
    console = Console(width=widget.size.width, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text()


def screen_lines(app) -> list[str]:
    """The whole screen as text, one string a row, decoded from the app's SVG screenshot (Rich
    writes each run of text at x = column * 12.2, and leaves spaces out)."""
    svg = app.export_screenshot()
    rows = [[" "] * SIZE[0] for _ in range(SIZE[1])]
    for x, y, text in re.findall(
            r'<text [^>]*?x="([\d.]+)"[^>]*?clip-path="url\(#[\w-]+-line-(\d+)\)"[^>]*>(.*?)</text>',
            svg):
        column = round(float(x) / 12.2)
        for i, char in enumerate(html.unescape(text).replace("\xa0", " ")):
            if column + i < SIZE[0]:
                rows[int(y)][column + i] = char
    return ["".join(row) for row in rows]


async def show_inspect(app, pilot) -> None:
    """Once the model is loaded, the Inspect tab, its prompt focused."""
    await wait_for(pilot, lambda: app.query_one(ChatPane).model is not None,
                   what="the model to load")
    # the Chat pane focuses its prompt once loaded: let that land first
    await wait_for(pilot, lambda: app.focused is app.query_one("#chat-prompt"),
                   what="focus in the Chat pane")
    app.action_show_tab("inspect")  # (a 4 typed in the Chat pane's prompt is text)
    await wait_for(pilot, lambda: app.focused is app.query_one("#inspect-prompt"),
                   what="focus in the Inspect pane")


async def inspected(app, pilot, prompt: str = PROMPT) -> InspectPane:
    await show_inspect(app, pilot)
    pane = app.query_one(InspectPane)
    box = pane.query_one("#inspect-prompt")
    box.value = prompt
    await pilot.press("enter")
    await wait_for(pilot, lambda: pane.inspection is not None, what="the inspection")
    await pilot.pause()
    return pane


def status(app) -> str:
    return str(app.query_one("#inspect-status").render())


async def test_enter_shows_the_heatmap_and_keys_move_through_layers_and_heads(checkpoint):
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await inspected(app, pilot)
        heatmap = app.query_one("#inspect-heatmap")
        assert any(c in drawn(heatmap) for c in RAMP[1:])
        assert "every head" in drawn(app.query_one("#inspect-heads"))
        assert "logit lens" in drawn(app.query_one("#inspect-lens"))
        seen = {pane.selected: drawn(heatmap)}
        for key, moved in [("right", (0, 1)), ("left", (0, -1)), ("down", (1, 0)), ("up", (-1, 0)),
                           ("l", (0, 1)), ("h", (0, -1)), ("j", (1, 0)), ("k", (-1, 0))]:
            before = pane.selected
            await pilot.press(key)
            await pilot.pause()
            now = pane.selected
            assert now == ((before[0] + moved[0]) % 2, (before[1] + moved[1]) % 2), key
            assert status(app).startswith(f"layer {now[0]} of 2, head {now[1]} of 2")
            assert drawn(heatmap) != seen[before], f"{key}: the heatmap did not change"
            seen[now] = drawn(heatmap)
        assert len(seen) == 3 and len(set(seen.values())) == 3  # each head its own pattern


async def test_the_overview_marks_the_head_the_heatmap_draws(checkpoint, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")  # the mark is a character, not only reverse video
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await inspected(app, pilot)
        for key in ["right", "down", "l", "j"]:
            await pilot.press(key)
            await pilot.pause()
            grid = drawn(app.query_one("#inspect-heads")).split("every head\n")[1]
            rows = [line for line in grid.splitlines() if line.startswith("L")]
            layer, head = pane.selected
            assert [line.count(SELECTED_MARK) for line in rows] == [int(i == layer) for i in range(2)]
            cell = grid.index("H1") - grid.index("H0")
            assert rows[layer].index(SELECTED_MARK) == 4 + (head + 1) * cell - 1, key


async def test_fits_80x24_with_a_long_prompt(checkpoint):
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await inspected(app, pilot, PROMPT * 3)  # past the context: its last 32 tokens
        assert pane.inspection.cut > 0
        lines = screen_lines(app)
        assert any("Inspect [4]" in line for line in lines)
        shown = "\n".join(lines)
        assert "layer" in shown and "head" in shown
        assert any(re.match(r"layer \d of 2, head \d of 2 .*↑↓ layer\s*$", line)
                   for line in lines), "the status line is cut"
        view = pane.query_one("#inspect-view")
        assert view.max_scroll_y > 0  # the rest is a scroll away
        # every heatmap row is drawn whole: its last column is on the screen
        width = view.scrollable_content_region.width
        for line in drawn(app.query_one("#inspect-heatmap")).splitlines():
            assert len(line.rstrip()) <= width
        rows = [line for line in lines if re.match(r"^\s*\d+ \S", line)]
        assert rows and all(len(line.rstrip()) < SIZE[0] for line in rows)
        await pilot.press("end")
        await pilot.pause()
        assert any("L1" in line for line in screen_lines(app))  # the logit lens, scrolled to


async def test_no_color_draws_intensity_as_characters(checkpoint, monkeypatch):
    monkeypatch.setenv("NO_COLOR", "1")
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        assert app.no_color
        await inspected(app, pilot)
        on_screen = "".join(screen_lines(app))
        assert len({c for c in on_screen if c in RAMP[1:]}) >= 3  # levels, not just one mark


async def test_without_a_model_the_pane_says_how_to_get_one(tmp_path):
    app = MinigptApp(runs_root=tmp_path / "runs", autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("4")
        await wait_for(pilot, lambda: app.focused is app.query_one("#inspect-prompt"),
                       what="focus in the Inspect pane")
        assert NO_MODEL in str(app.query_one("#inspect-model").render())
        app.query_one("#inspect-prompt").value = "hello"
        await pilot.press("enter")
        await wait_for(pilot, lambda: status(app) != "", what="the answer")
        assert "ctrl+o" in status(app) and "minigpt chat --ckpt" in status(app)


@pytest.mark.parametrize("prompt, said", [
    ("a", "1 token"), ("ÅÅ", "vocabulary lacks"), ("[bold]x[/]", "'[' (U+005B")])
async def test_a_bad_prompt_is_one_line(checkpoint, prompt, said):
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        await show_inspect(app, pilot)
        app.query_one("#inspect-prompt").value = prompt
        await pilot.press("enter")
        await wait_for(pilot, lambda: status(app) not in ("", "inspecting ..."),
                       what="the error")
        line = app.query_one("#inspect-status")
        assert line.size.height == 1 and "\n" not in status(app)
        assert said in status(app)
        assert app.query_one(InspectPane).inspection is None
        assert app.is_running


async def test_the_prompt_defaults_to_the_last_chat_exchange(checkpoint):
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        chat = app.query_one(ChatPane)
        await wait_for(pilot, lambda: chat.model is not None, what="the model to load")
        app.query_one("#max_new_tokens").value = "5"
        chat.query_one("#chat-prompt").value = "the cat"
        await pilot.press("enter")
        await wait_for(pilot, lambda: chat.reply is not None and not chat.generating,
                       what="the reply")
        box = app.query_one("#inspect-prompt")
        app.action_show_tab("inspect")
        await wait_for(pilot, lambda: app.focused is box, what="focus in the Inspect pane")
        assert box.value == str(chat.reply_text) and box.value.startswith("the cat")
        assert len(box.value) == len("the cat") + 5
        box.value = "my own"  # what the user typed stays
        app.action_show_tab("chat")
        await wait_for(pilot, lambda: app.focused is app.query_one("#chat-prompt"),
                       what="focus in the Chat pane")
        app.action_show_tab("inspect")
        await wait_for(pilot, lambda: app.focused is box, what="focus in the Inspect pane")
        assert box.value == "my own"


async def test_an_exchange_with_newlines_is_shown_on_one_line_and_inspected_as_it_was(checkpoint):
    """A raw newline or ESC in the one-line box would move the terminal's cursor and leave the
    reply's text over the rest of the screen."""
    app = MinigptApp(ckpt=checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        chat = app.query_one(ChatPane)
        await wait_for(pilot, lambda: chat.model is not None, what="the model to load")
        app.query_one(InspectPane).suggest("a\x1b[2J\tb")
        box = app.query_one("#inspect-prompt")
        assert box.value == "a␛[2J⇥b"
        box.value = ""
        app.query_one(InspectPane).suggest("the\ncat")
        app.action_show_tab("inspect")
        await wait_for(pilot, lambda: app.focused is box, what="focus in the Inspect pane")
        assert box.value == "the↵cat"
        box.focus()
        await pilot.press("enter")
        pane = app.query_one(InspectPane)
        await wait_for(pilot, lambda: pane.inspection is not None, what="the inspection")
        assert pane.inspection.ids == chat.tokenizer.encode("the\ncat")
