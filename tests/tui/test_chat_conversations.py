"""The Chat pane's turns, compare mode and files: the chat template's turns and system prompt,
one preference line per choice (read back by train --dpo), conversations saved and reopened,
exported to Markdown, a reply copied through the terminal, and prompts of several lines.

The replies come from a stand-in for the sampler (each seed its own text), so what is written
and read back is known; the model, its tokenizer and the template are real."""

import json

import pytest
import torch

from minigpt.checkpoint import save_checkpoint
from minigpt.data.chat import ChatTokenizer
from minigpt.data.tokenizer import CharTokenizer
from minigpt.infer import sampling
from minigpt.infer.conversations import ENV
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT
from minigpt_tui.app import MinigptApp
from minigpt_tui.panes.chat import ChatPane
from minigpt_tui.screens.open_conversation import OpenConversation
from minigpt_tui.widgets.comparison import Comparison

from .screen import shown_lines
from .waiting import wait_for

SIZE = (80, 24)
CHARS = " abcdefghijklmnopqrstuvwxyz.,[]/@=#\n"
REPLIES = ["tac", "[bold]act[/]", "cat", "a b c"]  # by seed, modulo their number


def _checkpoint(path, template: bool):
    torch.manual_seed(0)
    tokenizer = ChatTokenizer(CharTokenizer(CHARS)) if template else CharTokenizer(CHARS)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, block_size=64, n_layer=1, n_head=2,
                          n_embd=16))
    return save_checkpoint(path, model, tokenizer)


@pytest.fixture
def chat_model(tmp_path):
    """A model with the chat template (untrained: the replies are the stand-in's)."""
    return _checkpoint(tmp_path / "chat.pt", template=True)


@pytest.fixture
def base_model(tmp_path):
    return _checkpoint(tmp_path / "base.pt", template=False)


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """The folder minigpt runs in (prefs.jsonl, the exports), and the conversations folder."""
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv(ENV, str(tmp_path / "conversations"))
    return work, tmp_path / "conversations"


@pytest.fixture
def prompts(monkeypatch):
    """The sampler replaced: a reply is REPLIES[seed]; the prompts' ids are kept."""
    seen = []

    def stream(model, tokenizer, prompt_ids, cfg, *args, **kwargs):
        seen.append(list(prompt_ids))
        for piece in REPLIES[cfg.seed % len(REPLIES)]:
            yield piece, None

    monkeypatch.setattr(sampling, "stream_pieces", stream)
    return seen


@pytest.fixture
def notices(monkeypatch):
    said = []
    real = MinigptApp.notify

    def notify(self, message, *args, **kwargs):
        said.append((str(message), kwargs.get("severity", "information")))
        return real(self, message, *args, **kwargs)

    monkeypatch.setattr(MinigptApp, "notify", notify)
    return said


async def open_chat(app, pilot) -> ChatPane:
    pane = app.query_one(ChatPane)
    await wait_for(pilot, lambda: pane.model is not None, what="the model to load")
    app.query_one("#seed").value = "0"
    return pane


async def send(pilot, pane, *keys: str) -> None:
    """Type keys in the prompt box, then enter; wait for the reply (or both) to be written."""
    box = pane.query_one("#chat-prompt")
    box.focus()
    await pilot.press(*keys)
    await pilot.press("enter")
    await wait_for(pilot, lambda: box.value == "", what="the prompt to be sent")
    await wait_for(pilot, lambda: not pane.generating, what="the reply to be written")


async def ready(pilot, pane) -> Comparison:
    await wait_for(pilot, lambda: pane.pending is not None and
                   isinstance(pane.pending.view, Comparison) and
                   pane.pending.view.state == "ready" and pane.pending.view.has_focus,
                   what="both replies, and the choice asked")
    return pane.pending.view


async def reopen_first(pilot, app) -> None:
    """ctrl+r, then enter on the first conversation listed (the newest)."""
    await pilot.press("ctrl+r")
    await wait_for(pilot, lambda: isinstance(app.screen, OpenConversation),
                   what="the list of conversations")
    await pilot.press("enter")


def lines(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


# --- turns ---------------------------------------------------------------------------------------


async def test_a_model_with_the_template_is_talked_to_in_turns(chat_model, folders, prompts):
    app = MinigptApp(ckpt=chat_model, autostart=False, system="be brief.")
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        assert "chat template" in str(pane.query_one("#chat-transcript").border_title)
        assert pane.query_one("#chat-system-row").display
        await send(pilot, pane, *"hi")
        app.query_one("#seed").value = "2"
        await send(pilot, pane, *"more")
        assert pane.exchanges == [("hi", "tac"), ("more", "cat")]
        assert pane.tokenizer.decode(prompts[-1]) == (
            "<|system|>be brief.<|end|><|user|>hi<|end|><|assistant|>tac<|end|>"
            "<|user|>more<|end|><|assistant|>")


async def test_a_model_without_it_continues_each_prompt_alone(base_model, folders, prompts):
    app = MinigptApp(ckpt=base_model, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        assert "continues the text" in str(pane.query_one("#chat-transcript").border_title)
        assert not pane.query_one("#chat-system-row").display
        await send(pilot, pane, *"hi")
        await send(pilot, pane, *"more")
        assert pane.tokenizer.decode(prompts[-1]) == "more"


async def test_a_prompt_of_several_lines(chat_model, folders, prompts):
    """ctrl+j (and shift+enter, where the terminal sends it) starts a new line; enter sends."""
    app = MinigptApp(ckpt=chat_model, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await send(pilot, pane, *"ab", "ctrl+j", *"cd", "shift+enter", "e")
        assert pane.exchanges[0][0] == "ab\ncd\ne"
        assert pane.tokenizer.decode(prompts[-1]).startswith("<|user|>ab\ncd\ne<|end|>")
        assert pane.query_one("#chat-prompt").value == ""
        keys = {binding.key for binding in pane.query_one("#chat-prompt").BINDINGS}
        assert "ctrl+j,shift+enter,alt+enter" in keys  # in the footer and the help


# --- compare mode --------------------------------------------------------------------------------


async def test_each_choice_appends_one_preference_and_neither_appends_none(chat_model, folders,
                                                                           prompts):
    from minigpt.train.dpo import load_preferences
    from minigpt.train.finetune import DPO

    work, _ = folders
    prefs = work / "prefs.jsonl"
    app = MinigptApp(ckpt=chat_model, autostart=False, system="be brief.")
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await pilot.press("ctrl+t")
        assert pane.comparing and not pane.query_one("#chat-side").display
        await send(pilot, pane, *"hi")
        pair = await ready(pilot, pane)
        # both side by side, within 80 columns
        a, b = (reply.region for reply in pair.replies)
        assert a.right <= b.x and b.right <= SIZE[0] and a.width >= 30
        assert shown_lines(pair.replies[1])[0] == "[bold]act[/]"  # as written, not markup
        await pilot.press("a")
        await wait_for(pilot, lambda: prefs.exists(), what="the first line")
        assert lines(prefs) == [{"prompt": [{"role": "system", "content": "be brief."},
                                            {"role": "user", "content": "hi"}],
                                 "chosen": "tac", "rejected": "[bold]act[/]"}]
        assert pane.exchanges == [("hi", "tac")]  # the conversation goes on from the better

        app.query_one("#seed").value = "2"
        await send(pilot, pane, *"more")
        await ready(pilot, pane)
        await pilot.press("right")
        await wait_for(pilot, lambda: len(lines(prefs)) == 2, what="the second line")
        assert lines(prefs)[1]["prompt"][1:] == [
            {"role": "user", "content": "hi"}, {"role": "assistant", "content": "tac"},
            {"role": "user", "content": "more"}]
        assert lines(prefs)[1]["chosen"] == "a b c" and lines(prefs)[1]["rejected"] == "cat"

        before = prefs.read_bytes()
        await send(pilot, pane, *"again")
        pair = await ready(pilot, pane)
        await pilot.press("n")
        await wait_for(pilot, lambda: pair.state == "picked", what="neither")
        assert prefs.read_bytes() == before  # neither: nothing written, the turn not kept
        assert len(pane.exchanges) == 2
    data = load_preferences(str(prefs), ChatTokenizer(CharTokenizer(CHARS)), DPO)
    assert len(data.train) + len(data.val) == 2


async def test_compare_mode_never_writes_to_a_file_that_is_not_its_own(base_model, folders,
                                                                       notices):
    work, _ = folders
    (work / "prefs.jsonl").write_text("a corpus, not preferences\n")
    app = MinigptApp(ckpt=base_model, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await pilot.press("ctrl+t")
        await wait_for(pilot, lambda: notices, what="the refusal")
        assert not pane.comparing
        assert "not a preferences file" in notices[-1][0] and notices[-1][1] == "error"
    assert (work / "prefs.jsonl").read_text() == "a corpus, not preferences\n"


# --- files ---------------------------------------------------------------------------------------


async def test_a_saved_conversation_reopens_in_another_session(chat_model, folders, prompts):
    _, kept = folders
    app = MinigptApp(ckpt=chat_model, autostart=False, system="be brief.")
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await send(pilot, pane, *"[red]hi")
        app.query_one("#seed").value = "3"
        await send(pilot, pane, *"more")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: pane.conversation_path is not None, what="the save")
        saved = list(kept.iterdir())
        assert saved == [pane.conversation_path]

    app = MinigptApp(ckpt=chat_model, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await reopen_first(pilot, app)
        await wait_for(pilot, lambda: pane.exchanges, what="the conversation")
        assert pane.exchanges == [("[red]hi", "tac"), ("more", "a b c")]
        assert pane.query_one("#chat-system").value == "be brief."
        assert pane.query_one("#seed").value == "3"  # the settings it was held with
        assert shown_lines(pane.reply)[0] == "user: more"
        replies = pane.query_one("#chat-transcript").children
        assert shown_lines(replies[0])[:2] == ["user: [red]hi", "assistant: tac"]
        await send(pilot, pane, *"on")  # it goes on from there
        assert pane.tokenizer.decode(prompts[-1]).startswith(
            "<|system|>be brief.<|end|><|user|>[red]hi<|end|><|assistant|>tac<|end|>")
        await pilot.press("ctrl+s")  # saved again: the same file
        await wait_for(pilot, lambda: pane.saved_turns == 3, what="the save")
        assert list(kept.iterdir()) == saved


async def test_a_damaged_conversation_is_one_line_and_nothing_is_lost(chat_model, folders,
                                                                      prompts, notices):
    _, kept = folders
    kept.mkdir()
    damaged = kept / "damaged.json"
    damaged.write_text('{"written_by": "minigpt chat", "format": 1, "messages": [')
    app = MinigptApp(ckpt=chat_model, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await send(pilot, pane, *"hi")
        await reopen_first(pilot, app)
        await wait_for(pilot, lambda: any(s == "error" for _, s in notices), what="the notice")
        [(said, _)] = [n for n in notices if n[1] == "error"]
        assert "damaged.json" in said and "\n" not in said and "Traceback" not in said
        assert pane.exchanges == [("hi", "tac")]  # the conversation shown stays
    assert damaged.read_text().endswith('"messages": [')


async def test_export_writes_markdown_and_never_over_a_file(chat_model, folders, prompts):
    work, _ = folders
    app = MinigptApp(ckpt=chat_model, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        app.query_one("#seed").value = "1"
        await send(pilot, pane, *"say it", "ctrl+j", "#")
        await pilot.press("ctrl+s")
        await wait_for(pilot, lambda: pane.conversation_path is not None, what="the save")
        stem = pane.conversation_path.stem
        (work / f"{stem}.md").write_text("mine")
        await pilot.press("ctrl+f")
        await wait_for(pilot, lambda: (work / f"{stem}-2.md").exists(), what="the export")
    assert (work / f"{stem}.md").read_text() == "mine"
    text = (work / f"{stem}-2.md").read_text(encoding="utf-8")
    assert text.startswith("# say it\n")
    assert "**user**\n\n```text\nsay it\n#\n```" in text
    assert "**assistant**\n\n```text\n[bold]act[/]\n```" in text
    assert "chat template" in text and "chat.pt" in text


async def test_copy_sends_the_last_reply_to_the_clipboard(chat_model, folders, prompts,
                                                          monkeypatch):
    copied = []
    monkeypatch.setattr(MinigptApp, "copy_to_clipboard", lambda self, text: copied.append(text))
    app = MinigptApp(ckpt=chat_model, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await pilot.press("ctrl+g")  # nothing yet: said, nothing copied
        await send(pilot, pane, *"hi")
        await pilot.press("ctrl+g")
        await wait_for(pilot, lambda: copied, what="the copy")
    assert copied == ["tac"]


async def test_a_conversation_reopens_with_its_own_model(chat_model, folders, tmp_path):
    from minigpt.infer.conversations import SavedChat, save_chat

    _, kept = folders
    other = _checkpoint(tmp_path / "other.pt", template=True)
    save_chat(SavedChat([("hi", "tac")], True, "be brief.", str(chat_model)), kept)
    app = MinigptApp(ckpt=other, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = await open_chat(app, pilot)
        await reopen_first(pilot, app)
        await wait_for(pilot, lambda: pane.exchanges, what="the conversation")
        assert pane.checkpoint_path == chat_model and pane.exchanges == [("hi", "tac")]
        assert "chat.pt" in str(pane.query_one("#chat-model").render())
