"""The streaming reply widget: drawn as a Static with the whole text would be, at a cost that
grows with what is appended, not with all that came before."""

import random

import pytest
from rich.text import Text
from textual import content as textual_content
from textual.app import App, ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from minigpt_tui.text import plain
from minigpt_tui.widgets.reply import Reply

from .screen import shown_lines

# words, runs of spaces, newlines, a tab, words wider than the widget, wide characters
PIECES = ["the", " cat", " ", "   ", "\n", "\n\n", "sat", " on", "\tmat", ".", "日本語",
          " supercalifragilisticexpialidocious-and-more", "xxxxxxxxxxxxxxx", " [b]x[/]", "["]


class Side(App):
    """A Reply and a Static beside it, each 23 columns wide."""

    CSS = "Reply, Static { width: 23; }"

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Reply(plain("prompt", "bold"))
            yield Static("")


@pytest.mark.parametrize("seed", range(8))
async def test_a_reply_is_drawn_as_a_static_with_its_whole_text(seed):
    rng = random.Random(seed)
    app = Side()
    async with app.run_test(size=(50, 20)) as pilot:
        reply, static = app.query_one(Reply), app.query_one(Static)
        text = Text()
        text.append("prompt", style="bold")
        for batch in range(40):
            for _ in range(rng.randint(1, 4)):
                piece = rng.choice(PIECES)
                reply.append(plain(piece))
                text.append(piece)
            static.update(text)
            await pilot.pause()
            assert shown_lines(reply) == shown_lines(static), f"batch {batch}"
        assert str(reply.text) == str(text)
        reply.styles.width = static.styles.width = 15  # a new width wraps it all again
        await pilot.pause()
        assert shown_lines(reply) == shown_lines(static)


@pytest.mark.slow  # 300 appends, each drawn
async def test_an_append_costs_the_same_late_in_a_long_reply(monkeypatch):
    """Each append wraps the last line and the piece again, and draws the lines they become:
    the second 150 appends wrap about as much as the first 150 (for a Static holding the whole
    text, about three times as much)."""
    wrapped = [0, 0]
    real = textual_content.divide_line

    class One(App):
        def compose(self) -> ComposeResult:
            with VerticalScroll():
                yield Reply(Text("prompt"))

    app = One()
    async with app.run_test(size=(50, 10)) as pilot:
        reply = app.query_one(Reply)
        await pilot.pause()
        for i in range(300):
            def counting(text, width, fold=True, half=i // 150):
                wrapped[half] += len(text)
                return real(text, width, fold)

            monkeypatch.setattr(textual_content, "divide_line", counting)
            reply.append(Text(" word" if i % 40 else "\n word"))
            await pilot.pause()
        assert len(shown_lines(reply)) > 20  # many lines, most of them scrolled out of view
    assert wrapped[1] < 1.5 * wrapped[0], wrapped


async def test_the_selected_text_is_the_reply_text():
    from textual.geometry import Offset
    from textual.selection import Selection

    class One(App):
        def compose(self) -> ComposeResult:
            yield Reply(plain("[b]one[/] two three four five six seven\neight nine"))

    app = One()
    async with app.run_test(size=(20, 10)) as pilot:
        reply = app.query_one(Reply)
        await pilot.pause()
        app.screen.selections = {reply: Selection(Offset(4, 0), Offset(4, 1))}
        await pilot.pause()
        assert app.screen.get_selected_text() == "ne[/] two three four five six seven\neigh"


async def test_a_streaming_reply_grows_some_lines_at_a_time_and_fits_when_finished():
    """Each growth lays out the whole screen: with grow_by=4 a reply streaming 13 lines grows 4
    times, not 13; its lines are drawn as a Static draws them, blank lines below; finish()
    leaves it as tall as its text."""

    class Grow(App):
        CSS = "Reply, Static { width: 23; }"

        def compose(self) -> ComposeResult:
            with VerticalScroll():
                yield Reply(plain("prompt"), grow_by=4)
                yield Static("")

    app = Grow()
    async with app.run_test(size=(50, 40)) as pilot:
        reply, static = app.query_one(Reply), app.query_one(Static)
        text, grew = Text("prompt"), 0
        await pilot.pause()
        assert reply.size.height == 4
        for i in range(12):
            piece = f"\nline {i}" if i % 2 else f"\nline {i} that wraps onto two"
            grew += reply.append(plain(piece))
            text.append(piece)
            static.update(text)
            await pilot.pause()
            lines = shown_lines(static)
            assert reply.size.height % 4 == 0 and reply.size.height - len(lines) in range(4)
            assert shown_lines(reply) == lines + [""] * (reply.size.height - len(lines))
        assert len(lines) == 19 and grew == 4  # 4, then 8, 12, 16 and 20 lines
        reply.finish()
        await pilot.pause()
        assert shown_lines(reply) == shown_lines(static)
