"""The files the Chat pane writes: preferences (one line appended per choice, read back by
train --dpo), conversations (saved, read back, refused when damaged) and their Markdown."""

import json
import os

import pytest

from minigpt.data.chat import ChatTokenizer
from minigpt.data.tokenizer import CharTokenizer
from minigpt.errors import DataError
from minigpt.infer.config import SamplingConfig
from minigpt.infer.conversations import (
    ENV,
    SavedChat,
    chat_markdown,
    conversations_folder,
    list_chats,
    load_chat,
    save_chat,
    write_new,
)
from minigpt.infer.preferences import FIELDS, append_preference, check_preferences_file

# --- preferences ---------------------------------------------------------------------------------


def test_each_choice_is_one_line_appended_and_train_dpo_reads_them(tmp_path):
    from minigpt.train.dpo import FIELDS as DPO_FIELDS
    from minigpt.train.dpo import load_preferences
    from minigpt.train.finetune import DPO

    assert FIELDS == DPO_FIELDS
    path = tmp_path / "prefs.jsonl"
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]
    append_preference(path, messages, "hello!", "go away.")
    first = path.read_bytes()
    append_preference(path, "say hi", "hi!", "hi.")
    assert path.read_bytes().startswith(first)  # appended: the first line is as it was
    lines = path.read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in lines] == [
        {"prompt": messages, "chosen": "hello!", "rejected": "go away."},
        {"prompt": "say hi", "chosen": "hi!", "rejected": "hi."}]
    tokenizer = ChatTokenizer(CharTokenizer.from_text("abcdefghijklmnopqrstuvwxyz BE!.?"))
    data = load_preferences(str(path), tokenizer, DPO)
    assert len(data.train) + len(data.val) == 2


@pytest.mark.parametrize("prompt, chosen, rejected, fragment", [
    ("p", "", "b", "empty reply"), ("p", "a", "a", "the same"), ("", "a", "b", "prompt"),
    ("p", "a\ud800", "b", "lone surrogate")])
def test_a_choice_that_teaches_nothing_writes_nothing(tmp_path, prompt, chosen, rejected,
                                                      fragment):
    path = tmp_path / "prefs.jsonl"
    with pytest.raises(DataError, match=fragment):
        append_preference(path, prompt, chosen, rejected)
    assert not path.exists()


@pytest.mark.parametrize("text", ["the corpus\n", '{"messages": []}\n', "[1]\n"])
def test_a_file_that_is_not_a_preferences_file_is_refused_and_kept(tmp_path, text):
    path = tmp_path / "prefs.jsonl"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match="not a preferences file"):
        append_preference(path, "p", "a", "b")
    assert path.read_text(encoding="utf-8") == text
    with pytest.raises(DataError, match="folder"):
        check_preferences_file(tmp_path)
    with pytest.raises(DataError, match="no such folder"):
        check_preferences_file(tmp_path / "missing" / "prefs.jsonl")


def test_a_last_line_left_unfinished_stays_apart(tmp_path):
    path = tmp_path / "prefs.jsonl"
    append_preference(path, "p", "a", "b")
    with open(path, "a", encoding="utf-8") as f:
        f.write('{"prompt": "cut')  # a writer that died halfway
    append_preference(path, "q", "c", "d")
    lines = path.read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and json.loads(lines[2]) == {"prompt": "q", "chosen": "c",
                                                        "rejected": "d"}


# --- conversations -------------------------------------------------------------------------------


def chat(template=True) -> SavedChat:
    return SavedChat([("Reverse: cat", "tac"), ("and\ndog?", "god ```x```")], template,
                     system="Be brief." if template else None, model="/m/sft.pt",
                     sampling=SamplingConfig(strategy="greedy", seed=3, stop=("\n\n",)))


@pytest.mark.parametrize("template", [True, False])
def test_a_saved_conversation_reads_back_as_it_was(tmp_path, template):
    folder = tmp_path / "conversations"
    saved = chat(template)
    path = save_chat(saved, folder)
    assert path.parent == folder and path.name.endswith("-reverse-cat.json")
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["messages"][:2] == ([{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": "Reverse: cat"}]
                                      if template else
                                      [{"role": "user", "content": "Reverse: cat"},
                                       {"role": "assistant", "content": "tac"}])
    back = load_chat(path)
    assert back == saved and back.saved  # when, recorded
    saved.exchanges.append(("more", "yes"))
    assert save_chat(saved, folder, path) == path  # saved again: the same file
    assert load_chat(path).exchanges[-1] == ("more", "yes")
    assert [e.path for e in list_chats(folder)] == [path]


def test_a_new_conversation_never_takes_a_file_s_name(tmp_path, monkeypatch):
    monkeypatch.setattr("time.strftime", lambda fmt: "20260101-000000" if "-" in fmt
                        else "2026-01-01T00:00:00")
    first, second = save_chat(chat(), tmp_path), save_chat(chat(), tmp_path)
    assert first != second and second.name == "20260101-000000-reverse-cat-2.json"
    other = tmp_path / "notes.json"
    other.write_text('{"mine": 1}', encoding="utf-8")
    with pytest.raises(DataError, match="not a conversation"):
        save_chat(chat(), tmp_path, other)
    assert other.read_text(encoding="utf-8") == '{"mine": 1}'


HOSTILE = [
    (b"\xff\xfe", "not valid UTF-8"),
    (b"{", "not JSON"),
    (b"[" * 100_000, "not JSON"),
    (b'{"messages": []}', "not a conversation saved by minigpt chat"),
    (b'{"written_by": "minigpt chat", "format": 9}', "format 9"),
    (b'{"written_by": "minigpt chat", "format": 1, "template": "yes"}', "template"),
    (b'{"written_by": "minigpt chat", "format": 1, "template": true}', "messages"),
    (b'{"written_by": "minigpt chat", "format": 1, "template": true, "messages": '
     b'[{"role": "user", "content": "a"}]}', "followed by its reply"),
    (b'{"written_by": "minigpt chat", "format": 1, "template": true, "messages": '
     b'[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}', "message 2"),
    (b'{"written_by": "minigpt chat", "format": 1, "template": true, "messages": '
     b'[{"role": "user", "content": "\\ud800"}, {"role": "assistant", "content": "b"}]}',
     "message 1"),
    (b'{"written_by": "minigpt chat", "format": 1, "template": false, "messages": '
     b'[{"role": "system", "content": "x"}]}', "no chat template"),
    (b'{"written_by": "minigpt chat", "format": 1, "template": true, "messages": [], '
     b'"sampling": {"strategy": "top-k", "top_k": -1}}', "top-k"),
    (b'{"written_by": "minigpt chat", "format": 1, "template": true, "messages": [], '
     b'"sampling": {"rm": 1}}', "sampling"),
    (b'{"written_by": "minigpt chat", "format": 1, "template": true, "messages": [], '
     b'"model": 3}', "'model' is not text"),
]


@pytest.mark.parametrize("data, fragment", HOSTILE)
def test_a_damaged_conversation_is_one_error_naming_it(tmp_path, data, fragment):
    path = tmp_path / "bad.json"
    path.write_bytes(data)
    with pytest.raises(DataError, match=fragment) as caught:
        load_chat(path)
    assert str(path) in str(caught.value)
    [entry] = list_chats(tmp_path)  # listed, with what is wrong
    assert entry.chat is None and fragment.split()[0] in entry.error


def test_the_folder_is_the_user_s_or_the_environment_s(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV, str(tmp_path / "mine"))
    assert conversations_folder() == tmp_path / "mine"
    monkeypatch.delenv(ENV)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert conversations_folder() == tmp_path / "minigpt" / "conversations"
    assert list_chats(tmp_path / "none") == []


def test_markdown_holds_each_message_as_it_was_written():
    text = chat_markdown(chat())
    assert text.startswith("# Reverse: cat\n\n- model: `/m/sft.pt` (chat template)\n"
                           '- sampling: greedy, seed 3, stop ["\\n\\n"]\n')
    assert "**system**\n\n```text\nBe brief.\n```" in text
    assert "**user**\n\n```text\nand\ndog?\n```" in text
    assert "**assistant**\n\n````text\ngod ```x```\n````" in text  # a longer fence
    assert "**prompt**" in chat_markdown(chat(template=False))


def test_an_export_never_replaces_a_file(tmp_path):
    path = tmp_path / "chat.md"
    path.write_text("mine", encoding="utf-8")
    written = write_new(path, "# export\n")
    assert written == tmp_path / "chat-2.md" and path.read_text(encoding="utf-8") == "mine"
    assert write_new(path, "again") == tmp_path / "chat-3.md"
    assert sorted(os.listdir(tmp_path)) == ["chat-2.md", "chat-3.md", "chat.md"]
