"""Text that did not come from our code (samples, replies, tokens, data descriptions, paths, error
messages) is drawn as it is: never parsed as markup, never a crash."""

import json

import pytest
import torch
from textual.widgets import DataTable, OptionList

from minigpt.checkpoint import save_checkpoint
from minigpt.data.tokenizer import CharTokenizer
from minigpt.model.config import GPTConfig
from minigpt.model.gpt import GPT
from minigpt.runs.files import EVENTS_NAME
from minigpt_tui.app import MinigptApp
from minigpt_tui.panes.ablate import AblatePane
from minigpt_tui.panes.chat import ChatPane
from minigpt_tui.panes.train import TrainPane
from minigpt_tui.runs import LOG_NAME
from minigpt_tui.widgets.token_inspector import TokenInspector

from .screen import shown_lines
from .waiting import wait_for

SIZE = (80, 24)
# Markup tags, a closing tag with nothing open, an unclosed tag, escapes, an action, the piece
# of a real sample that crashed `minigpt tui` (MarkupError: Expected markup value), and an
# escape sequence for the terminal, which is drawn as a symbol instead of reaching it.
HOSTILE = ('a [bold]b[/bold] [/] c [bold d \\ e \\[f] [@click=app.quit]q[/] '
           '[r00]S ~~]Fq%"?+0 [link=x]y [= \x1b[2Jclear')
FRAGMENTS = ["[bold]b[/bold]", "[/]", "[bold d", "\\ e \\[f]", "[@click=app.quit]q[/]",
             "[r00]S", '~~]Fq%"?+0', "[=", "\N{SYMBOL FOR ESCAPE}[2Jclear"]
NAME = "r[bold]n\\[x"  # a run, variant or folder name: no slash, short enough for a table cell


def literal(shown: str, what: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment in shown, f"{what} lost {fragment!r}: {shown!r}"


def write_events(run_dir, *events) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / EVENTS_NAME, "a", encoding="utf-8") as f:
        for ev in events:
            f.write(json.dumps({"time": 1.0, **ev}) + "\n")


def train_run(root, name, ending):
    run_dir = root / name
    write_events(
        run_dir,
        {"type": "start", "step": 0, "max_steps": 100, "device": HOSTILE, "precision": "fp32",
         "params": 1000, "data": HOSTILE, "pid": None},
        {"type": "step", "step": 10, "max_steps": 100, "loss": 3.0, "lr": 1e-3, "grad_norm": 1.0,
         "tokens_per_s": 1000.0, "elapsed": 1.0},
        {"type": "eval", "step": 10, "train_loss": 3.0, "val_loss": 3.1},
        {"type": "sample", "step": 10, "text": HOSTILE + "\n" + HOSTILE},
        {"type": "checkpoint", "step": 10, "path": str(run_dir / "model.pt") + HOSTILE},
        {"type": "note", "step": 10, "message": HOSTILE},
        *ending)
    return run_dir


@pytest.mark.parametrize("ending", ["done", "killed"])
async def test_train_pane_shows_foreign_text_literally(tmp_path, ending):
    if ending == "done":  # a finished run: its note is in the title
        run_dir = train_run(tmp_path, NAME, [{"type": "done", "step": 10, "reason": HOSTILE}])
    else:  # a run whose process died: its last words (output.log) are in the title
        run_dir = train_run(tmp_path, NAME, [])
        (run_dir / LOG_NAME).write_text("Traceback\n" + HOSTILE + "\n", encoding="utf-8")
    app = MinigptApp(attach=run_dir, runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(TrainPane)
        await wait_for(pilot, lambda: pane.state.status not in ("starting", "running"),
                       what="the run's end")
        pane.redraw()
        await pilot.pause()
        assert app.is_running
        title = str(app.query_one("#train-title").render())
        assert NAME in title
        literal(title, "the title")
        literal(str(app.query_one("#train-stats").render()), "the stats")
        literal(str(app.query_one("#train-sample").render()), "the sample")


def ablate_run(root, ending):
    run_dir = root / ("ablate-" + NAME)
    result = {"type": "result", "train_loss": 3.0, "val_loss": 3.1, "val_loss_delta": 0.1,
              "tokens_per_s": 100.0, "seconds": 2.0, "sample": HOSTILE}
    write_events(
        run_dir,
        {"type": "ablation_start", "variants": ["baseline", NAME], "max_steps": 10, "pid": None},
        {"type": "variant", "variant": "baseline", "index": 0, "count": 2},
        {**result, "variant": "baseline"},
        {"type": "variant", "variant": NAME, "index": 1, "count": 2},
        {"type": "step", "variant": NAME, "step": 5, "max_steps": 10, "loss": 3.0,
         "tokens_per_s": 100.0},
        {**result, "variant": NAME},
        ending)
    return run_dir


@pytest.mark.parametrize("ending", [{"type": "ablation_done", "reason": HOSTILE, "results": []},
                                    {"type": "error", "message": HOSTILE}])
async def test_ablate_pane_shows_foreign_text_literally(tmp_path, ending):
    run_dir = ablate_run(tmp_path, ending)
    app = MinigptApp(attach=run_dir, runs_root=tmp_path)
    async with app.run_test(size=SIZE) as pilot:
        table = app.query_one(DataTable)
        await wait_for(pilot, lambda: table.row_count == 2, what="the results drawn")
        assert app.query_one(AblatePane).state.run_dir == run_dir
        status = str(app.query_one("#ablate-status").render())
        literal(status, "the status line")
        if ending["type"] == "ablation_done":
            assert NAME in status  # the run directory
        table.focus()
        await wait_for(pilot, lambda: app.focused is table, what="the table's focus")
        await pilot.press("down")  # the second row: the variant with the hostile name
        await wait_for(pilot, lambda: NAME in str(app.query_one("#ablate-sample").render()),
                       what="the second variant's sample")
        assert NAME in "\n".join(shown_lines(table))
        sample = str(app.query_one("#ablate-sample").render())
        assert sample.startswith(NAME)
        literal(sample, "the variant's sample")
        assert app.is_running


async def test_run_picker_shows_run_names_literally(tmp_path):
    train_run(tmp_path, NAME, [{"type": "done", "step": 10, "reason": "finished"}])
    app = MinigptApp(runs_root=tmp_path)  # runs exist: the picker opens
    async with app.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "RunPicker",
                       what="the run picker")
        assert NAME in "\n".join(shown_lines(app.screen.query_one(OptionList)))


CHARS = " abcdiklopqtu[]\\/=@."  # every character of the prompt below


@pytest.fixture
def hostile_checkpoint(tmp_path):
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=len(CHARS), block_size=32, n_layer=1, n_head=2, n_embd=16))
    return save_checkpoint(tmp_path / NAME / "model.pt", model, CharTokenizer(CHARS))


async def test_chat_pane_shows_paths_replies_and_tokens_literally(hostile_checkpoint):
    app = MinigptApp(ckpt=hostile_checkpoint, autostart=False)
    async with app.run_test(size=SIZE) as pilot:
        pane = app.query_one(ChatPane)
        await wait_for(pilot, lambda: pane.model is not None, what="the model to load")
        assert str(hostile_checkpoint) in str(app.query_one("#chat-model").render())
        app.query_one("#max_new_tokens").value = "60"
        box = app.query_one("#chat-prompt")
        box.focus()
        box.value = "[b]a[/] [bold \\[d] [@click=app.quit]"
        await pilot.press("enter")
        await wait_for(pilot, lambda: pane.reply is not None and not pane.generating,
                       what="the reply")
        shown = "".join("".join(shown_lines(pane.reply)).split())  # wrapped: spaces aside
        assert shown.startswith("[b]a[/][bold\\[d][@click=app.quit]")
        # the model's characters, drawn as they came
        assert shown == "".join(str(pane.reply_text).split())
        assert str(pane.reply_text).startswith("[b]a[/] [bold \\[d] [@click=app.quit]")
        inspector = app.query_one(TokenInspector)
        for position in range(len(inspector.tokens)):  # every token's candidates, drawn
            inspector.selected = position
            inspector.follow = False
            await pilot.pause()
            assert "".join(shown_lines(inspector)).strip()  # drawn, not a markup error
        assert app.is_running


async def test_errors_naming_foreign_paths_are_shown_literally(tmp_path):
    bad = tmp_path / NAME / "model.pt"
    bad.parent.mkdir()
    bad.write_bytes(b"not a checkpoint")
    app = MinigptApp(ckpt=bad, autostart=False)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        shown = lambda: str(app.query_one("#chat-model").render())  # noqa: E731
        await wait_for(pilot, lambda: "cannot load" in shown() or "refusing" in shown(),
                       what="the load error")
        assert str(bad) in shown()
        await wait_for(pilot, lambda: app.focused is app.query_one("#chat-prompt"),
                       what="focus in the Chat pane")
        await pilot.press("ctrl+o")  # a notification that names a path the user typed
        await wait_for(pilot, lambda: app.screen.__class__.__name__ == "OpenCheckpoint",
                       what="the open dialog")
        missing = tmp_path / ("no" + NAME)
        app.screen.query_one("Input").value = str(missing)
        await pilot.press("enter")
        await wait_for(pilot, lambda: any(str(missing) in str(toast.render())
                                          for toast in app.screen.query("Toast")),
                       what="the notification naming the path")
        assert app.is_running
