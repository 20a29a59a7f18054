"""What the Chat pane keeps of a conversation, outside it: ctrl+s saves it (a JSON file in the
conversations folder: minigpt.infer.conversations), ctrl+r reopens one, ctrl+f exports it to
Markdown in the current folder, ctrl+g copies the last reply to the clipboard.

The clipboard is the terminal's: Textual's copy_to_clipboard sends the text as an OSC 52 escape
sequence, which the terminal on the user's side puts in its clipboard, so it works over SSH (and
in tmux with set-clipboard on); a terminal without OSC 52 ignores it.

Mixed into ChatPane (minigpt_tui/panes/chat.py), whose conversation it reads: its exchanges, its
dialogue, its settings. A file that cannot be read, or a conversation the open model cannot go
on with, is one notice; the conversation shown stays as it was.
"""

from __future__ import annotations

import time
from pathlib import Path

from textual.widgets import Input

from minigpt.errors import DataError, SamplingError
from minigpt.infer.conversations import (
    Entry,
    SavedChat,
    chat_markdown,
    conversations_folder,
    list_chats,
    save_chat,
    write_new,
)
from minigpt_tui.screens.open_conversation import OpenConversation
from minigpt_tui.text import clean, plain, sent_text
from minigpt_tui.widgets.reply import Reply
from minigpt_tui.widgets.sampling_settings import SamplingSettings

KIND = {True: "a model with the chat template", False: "a model without the chat template"}


class ChatFiles:
    conversation_path: Path | None = None  # the file the conversation was saved to or opened
    saved_turns = 0  # how many of its exchanges that file holds
    export_folder = Path(".")  # where Markdown exports go: the folder minigpt runs in
    _waiting: tuple[Path, SavedChat] | None = None  # reopened, its model loading

    def forget_file(self) -> None:
        """A new conversation: the next save makes a new file."""
        self.conversation_path, self.saved_turns = None, 0

    def conversation(self) -> SavedChat:
        """The conversation kept, with the model and the settings as they are now."""
        try:
            sampling = self.query_one(SamplingSettings).config()
        except SamplingError:  # a setting half typed: the conversation is saved without them
            sampling = None
        model = str(_resolved(self.checkpoint_path)) if self.checkpoint_path else None
        return SavedChat(list(self.exchanges), self.templated, self._system(), model, sampling)

    def _has_turns(self, doing: str) -> bool:
        if not self.exchanges:
            self.notify(f"nothing to {doing} yet: no reply has been kept", severity="warning",
                        markup=False)
        return bool(self.exchanges)

    # --- save and reopen ---------------------------------------------------------------------------

    def action_save(self) -> None:
        if not self._has_turns("save"):
            return
        try:
            path = save_chat(self.conversation(), conversations_folder(), self.conversation_path)
        except DataError as e:
            self.notify(clean(str(e)), severity="error", markup=False)
            return
        self.conversation_path, self.saved_turns = path, len(self.exchanges)
        self.notify(clean(f"saved to {path}"), markup=False)

    def action_reopen(self) -> None:
        folder = conversations_folder()
        unsaved = len(self.exchanges) - self.saved_turns
        self.app.push_screen(OpenConversation(list_chats(folder), folder, unsaved),
                             self.reopen)

    def reopen(self, entry: Entry | None) -> None:
        """Show a saved conversation, to go on with: with its model, loaded first where it is
        not the one open and its file is there; else with the model open, if it is of the
        same kind (turns, or continuations)."""
        if entry is None:
            return
        if entry.chat is None:
            self.notify(clean(entry.error), severity="error", markup=False)
            return
        if self.generating:
            self.notify("a reply is still streaming: Esc stops it", severity="warning",
                        markup=False)
            return
        chat = entry.chat
        its_model = _existing(chat.model)
        if its_model is not None and (self.checkpoint_path is None or
                                      _resolved(its_model) != _resolved(self.checkpoint_path)):
            self._waiting = (entry.path, chat)
            self.load(its_model)
            return
        if self.model is None:
            self.notify(clean(f"{entry.path.name}: its model {chat.model} is not there: open a "
                              "checkpoint first (ctrl+o)"), severity="error", markup=False)
            return
        gone = chat.model is not None and its_model is None
        self._restore(entry.path, chat, f" (its model {chat.model} is not there: with the "
                      "model open)" if gone else "")

    def model_loaded(self) -> None:
        if self._waiting is not None:
            path, chat = self._waiting
            self._waiting = None
            self._restore(path, chat)

    def model_failed(self) -> None:
        self._waiting = None

    def _restore(self, path: Path, chat: SavedChat, note: str = "") -> None:
        if chat.template != self.templated:
            self.notify(clean(f"{path.name} is a conversation with {KIND[chat.template]}, and "
                              f"the model open is {KIND[self.templated]}: open one like its "
                              "own (ctrl+o), then open it again"),
                        severity="error", markup=False)
            return
        self.new_conversation()
        transcript = self.query_one("#chat-transcript")
        views = [Reply(sent_text(sent, chat.template) + plain(reply), classes="reply")
                 for sent, reply in chat.exchanges]
        transcript.mount_all(views)
        self.exchanges = list(chat.exchanges)
        self.dialogue.turns = chat.turns() if chat.template else []
        if chat.template:
            self.query_one("#chat-system", Input).value = chat.system or ""
        if chat.sampling is not None:
            self.query_one(SamplingSettings).show(chat.sampling)
        self.reply = views[-1] if views else None
        self.conversation_path, self.saved_turns = path, len(chat.exchanges)
        transcript.scroll_end(animate=False)
        self.notify(clean(f"reopened {path.name}: {len(chat.exchanges)} turn(s){note}"),
                    markup=False)

    # --- export and copy ---------------------------------------------------------------------------

    def action_export(self) -> None:
        if not self._has_turns("export"):
            return
        stem = self.conversation_path.stem if self.conversation_path else \
            time.strftime("chat-%Y%m%d-%H%M%S")
        try:
            path = write_new(self.export_folder / f"{stem}.md", chat_markdown(self.conversation()))
        except DataError as e:
            self.notify(clean(str(e)), severity="error", markup=False)
            return
        self.notify(clean(f"exported to {path}"), markup=False)

    def action_copy(self) -> None:
        if not self._has_turns("copy"):
            return
        reply = self.exchanges[-1][1]
        self.app.copy_to_clipboard(reply)
        self.notify(f"copied the last reply ({len(reply)} characters) to the clipboard, "
                    "through the terminal (OSC 52)", markup=False)


def _existing(path: str | None) -> Path | None:
    try:
        return Path(path) if path and Path(path).exists() else None
    except (OSError, ValueError):  # a NUL byte in a path read from a file
        return None


def _resolved(path: Path) -> Path:
    try:
        return Path(path).resolve()
    except (OSError, RuntimeError, ValueError):
        return Path(path)
