"""`minigpt tui` and `minigpt chat` exit non-zero when the TUI crashed (Textual shows its traceback
and returns from run(); the command must not then say all went well)."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow  # each runs the real command line in a process of its own

CRASH = {
    "tui": "from minigpt_tui.panes.train import TrainPane\n"
           "def boom(self, force=False):\n"
           "    raise RuntimeError('boom in the Train pane')\n"
           "TrainPane.redraw = boom\n",
    "chat": "from minigpt_tui.panes.chat import ChatPane\n"
            "def boom(self, path, weights=None):\n"
            "    raise RuntimeError('boom in the Chat pane')\n"
            "ChatPane.load = boom\n",
    "quit": "from minigpt_tui.app import MinigptApp\n"
            "MinigptApp.on_mount = lambda self: self.exit()\n",
}


def run_command(prelude: str, args: list[str], cwd) -> subprocess.CompletedProcess:
    """The real command line, in a headless Textual (no terminal here), after prelude."""
    script = prelude + ("import sys\nfrom minigpt.cli.app import main\n"
                        f"sys.argv = ['minigpt', *{[str(a) for a in args]!r}]\nmain()\n")
    env = dict(os.environ, TEXTUAL_DRIVER="textual.drivers.headless_driver:HeadlessDriver")
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, cwd=cwd, timeout=240)


@pytest.fixture
def chat_checkpoint(tmp_path):
    from minigpt.checkpoint import save_checkpoint
    from minigpt.data.tokenizer import CharTokenizer
    from minigpt.model.config import GPTConfig
    from minigpt.model.gpt import GPT

    model = GPT(GPTConfig(vocab_size=4, block_size=8, n_layer=1, n_head=1, n_embd=8))
    return save_checkpoint(tmp_path / "model.pt", model, CharTokenizer("abc "))


def test_a_crash_in_minigpt_tui_exits_non_zero(finished_run):
    result = run_command(CRASH["tui"], ["tui", "--attach", finished_run], finished_run.parent)
    assert "boom in the Train pane" in result.stdout + result.stderr
    assert result.returncode == 1


def test_a_crash_in_minigpt_chat_exits_non_zero(chat_checkpoint):
    result = run_command(CRASH["chat"], ["chat", "--ckpt", chat_checkpoint],
                         chat_checkpoint.parent)
    assert "boom in the Chat pane" in result.stdout + result.stderr
    assert result.returncode == 1


def test_quitting_the_tui_exits_zero(finished_run):
    result = run_command(CRASH["quit"], ["tui", "--attach", finished_run], finished_run.parent)
    assert result.returncode == 0, result.stderr
