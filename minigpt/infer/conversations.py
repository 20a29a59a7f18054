"""Conversations kept: the Chat pane saves one to a file, opens it again later, and exports it to
Markdown. No torch here.

A conversation is a JSON file, in the messages format chat datasets use, with what it was held
with:

    {"written_by": "minigpt chat", "format": 1, "saved": "2026-12-06T23:50:12",
     "model": "/home/me/sft.pt", "template": true,
     "sampling": {"strategy": "top-k", "temperature": 0.8, ...},
     "messages": [{"role": "system", "content": "Be brief."},
                  {"role": "user", "content": "Reverse: cat"},
                  {"role": "assistant", "content": "tac"}]}

template says what the messages are: a model with the chat template's turns (a system prompt
first if any), or, for a model without one, each prompt ("user") and the text the model
continued it with ("assistant"), which stand alone.

They are kept in one folder per user, whatever the folder minigpt runs in and whichever model:
$MINIGPT_CONVERSATIONS, else $XDG_DATA_HOME/minigpt/conversations, else
~/.local/share/minigpt/conversations (where oterm and elia keep theirs: a user's data, not a
run's: the TUI never writes in a run directory). A file is replaced only by the conversation it
holds, saved again (it carries the mark); a new one gets a name of its own. Reading a file
checks everything in it, so a damaged or hostile one is one DataError naming it.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path

from minigpt.errors import DataError, SamplingError
from minigpt.infer.config import SAMPLING_RULES, SamplingConfig

MARK, WRITTEN_BY = "written_by", "minigpt chat"
FORMAT = 1
MAX_BYTES = 16 * 1024 * 1024  # a conversation bigger than this is no conversation of ours
ENV = "MINIGPT_CONVERSATIONS"
SUFFIX = ".json"


def conversations_folder() -> Path:
    """Where conversations are kept (the module's docstring says why there)."""
    if os.environ.get(ENV):
        return Path(os.environ[ENV]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(data) / "minigpt" / "conversations"


@dataclass
class SavedChat:
    exchanges: list[tuple[str, str]]  # (what was sent, the model's reply), oldest first
    template: bool  # turns of the chat template, or prompts continued
    system: str | None = None  # the system prompt (a model with the template)
    model: str | None = None  # the checkpoint's path
    sampling: SamplingConfig | None = None  # the settings the replies were drawn with
    saved: str = field(default="")  # when, in local time: 2026-12-06T23:50:12

    @property
    def title(self) -> str:
        """The first prompt's first line, shortened."""
        first = self.exchanges[0][0] if self.exchanges else ""
        line = next((part for part in first.splitlines() if part.strip()), "").strip()
        return (line[:57] + "...") if len(line) > 60 else line or "(empty)"

    def messages(self) -> list[dict]:
        system = [{"role": "system", "content": self.system}] if self.system else []
        return system + self.turns()

    def turns(self) -> list[dict]:
        return [{"role": role, "content": text} for sent, reply in self.exchanges
                for role, text in (("user", sent), ("assistant", reply))]

    def to_dict(self) -> dict:
        sampling = dataclasses.asdict(self.sampling) if self.sampling else None
        if sampling:
            sampling["stop"] = list(sampling["stop"])
        return {MARK: WRITTEN_BY, "format": FORMAT, "saved": self.saved, "model": self.model,
                "template": self.template, "sampling": sampling, "messages": self.messages()}


# --- reading --------------------------------------------------------------------------------------


def load_chat(path: str | os.PathLike) -> SavedChat:
    """The conversation in path, every field checked: anything else is a DataError naming it."""
    path = Path(path)
    try:
        if not path.is_file():
            raise DataError(f"{path}: not a file")
        if path.stat().st_size > MAX_BYTES:
            raise DataError(f"{path}: over {MAX_BYTES // 2**20} MiB: not a conversation")
        data = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from None
    try:
        record = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise DataError(f"{path}: not valid UTF-8") from None
    except (ValueError, RecursionError) as e:
        raise DataError(f"{path}: not JSON ({str(e)[:80]})") from None
    return from_dict(record, str(path))


def from_dict(record, where: str) -> SavedChat:
    if not isinstance(record, dict) or record.get(MARK) != WRITTEN_BY:
        raise DataError(f"{where}: not a conversation saved by minigpt chat")
    if record.get("format") != FORMAT:
        raise DataError(f"{where}: format {_short(record.get('format'))}, not {FORMAT}: saved "
                        "by another version of minigpt")
    template = record.get("template")
    if not isinstance(template, bool):
        raise DataError(f'{where}: "template" is not true or false')
    for name in ("model", "saved"):
        if record.get(name) is not None and not _is_text(record[name]):
            raise DataError(f"{where}: {name!r} is not text")
    messages = record.get("messages")
    if not isinstance(messages, list):
        raise DataError(f'{where}: no "messages" list')
    system = None
    if messages and isinstance(messages[0], dict) and messages[0].get("role") == "system":
        if not template:
            raise DataError(f"{where}: a system prompt, but no chat template")
        system, messages = _content(messages[0], "system", where, 1), messages[1:]
    if len(messages) % 2:
        raise DataError(f"{where}: {len(messages)} turns: each user turn is followed by its "
                        "reply")
    exchanges = [(_content(messages[i], "user", where, i + 1),
                  _content(messages[i + 1], "assistant", where, i + 2))
                 for i in range(0, len(messages), 2)]
    return SavedChat(exchanges, template, system or None, record.get("model"),
                     _sampling(record.get("sampling"), where), record.get("saved") or "")


def _content(message, role: str, where: str, number: int) -> str:
    if not isinstance(message, dict) or message.get("role") != role \
            or not _is_text(message.get("content")):
        raise DataError(f'{where}: message {number} is not {{"role": "{role}", "content": '
                        'text}')
    return message["content"]


def _sampling(record, where: str) -> SamplingConfig | None:
    if record is None:
        return None
    names = {f.name for f in dataclasses.fields(SamplingConfig)}
    if not isinstance(record, dict) or not set(record) <= names:
        raise DataError(f'{where}: "sampling" is not the settings of a reply')
    settings = dict(record)
    stop = settings.get("stop", [])
    if not isinstance(stop, list) or not all(_is_text(s) for s in stop):
        raise DataError(f"{where}: the stop strings are not a list of text")
    settings["stop"] = tuple(stop)
    for name, value in settings.items():  # numbers as numbers: SamplingConfig checks ranges
        if name in SAMPLING_RULES and value is not None and (
                isinstance(value, bool) or not isinstance(value, int | float)):
            raise DataError(f"{where}: the setting {name} is not a number")
    try:
        return SamplingConfig(**settings)
    except (SamplingError, TypeError) as e:
        raise DataError(f"{where}: {e}") from None


def _is_text(value) -> bool:
    """A str that is text: no lone surrogate (JSON's \\ud800 escape makes one; it is no
    character, and the screen and UTF-8 cannot hold it)."""
    return isinstance(value, str) and not any("\ud800" <= c <= "\udfff" for c in value)


def _short(value) -> str:
    return repr(value)[:20]


@dataclass
class Entry:
    """A conversation file in the folder, as a picker lists it."""

    path: Path
    chat: SavedChat | None  # None where it could not be read
    error: str = ""


def list_chats(folder: str | os.PathLike, limit: int = 500) -> list[Entry]:
    """The conversation files in folder, newest first (at most limit), each read and checked;
    one that cannot be read is listed with its error."""
    folder = Path(folder)
    try:
        paths = [p for p in folder.iterdir() if p.suffix == SUFFIX and p.is_file()]
        paths.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    except OSError:  # no folder yet, or one that cannot be read: no conversations
        return []
    entries = []
    for path in paths[:limit]:
        try:
            entries.append(Entry(path, load_chat(path)))
        except DataError as e:
            entries.append(Entry(path, None, str(e)))
    return entries


# --- writing --------------------------------------------------------------------------------------


def save_chat(chat: SavedChat, folder: str | os.PathLike, path: str | os.PathLike | None = None
              ) -> Path:
    """Write chat to path (a conversation file, saved again), or to a new file in folder named
    after its time and title; the path. Written beside it and renamed over it, so a full disk
    leaves the earlier file whole; a file that is not a conversation is never replaced."""
    chat.saved = time.strftime("%Y-%m-%dT%H:%M:%S")
    text = json.dumps(chat.to_dict(), ensure_ascii=False, indent=1) + "\n"
    try:
        if path is None:
            folder = Path(folder)
            folder.mkdir(parents=True, exist_ok=True, mode=0o700)
            stem = f"{time.strftime('%Y%m%d-%H%M%S')}-{_slug(chat.title)}"
            path = _new_file(folder / f"{stem}{SUFFIX}")
        else:
            path = Path(path)
            if path.exists():
                load_chat(path)  # a DataError if it is not a conversation: never replaced
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            os.replace(tmp, path)
        finally:
            tmp.unlink(missing_ok=True)
    except OSError as e:
        raise DataError(f"cannot save the conversation: {e.strerror or e}") from None
    return path


def write_new(path: str | os.PathLike, text: str) -> Path:
    """Write text to a new file at path, or, where a file is there, at path with -2, -3, ...
    before its suffix: never over a file. The path written."""
    try:
        target = _new_file(Path(path))
        target.write_text(text, encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot write {path}: {e.strerror or e}") from None
    return target


def _new_file(path: Path) -> Path:
    """Make an empty file at path, or at the first of path-2, path-3, ... not taken; it."""
    for n in range(1, 10_000):
        candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
            return candidate
        except FileExistsError:
            continue
    raise DataError(f"{path}: every name from it to -9999 is taken")


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:30].strip("-") or "chat"


# --- Markdown ------------------------------------------------------------------------------------


def chat_markdown(chat: SavedChat) -> str:
    """The conversation as Markdown: what it was held with, then each message in a fenced block
    of its own, exactly as it was written (a model's text is not Markdown: its line breaks and
    any * or # in it are kept as they are)."""
    roles = ("user", "assistant") if chat.template else ("prompt", "continuation")
    kind = "chat template" if chat.template else "no chat template: each prompt continued"
    lines = [f"# {chat.title}", ""]
    if chat.model:
        lines.append(f"- model: {_code_span(chat.model)} ({kind})")
    else:
        lines.append(f"- {kind}")
    if chat.sampling:
        lines.append(f"- sampling: {describe_sampling(chat.sampling)}")
    if chat.saved:
        lines.append(f"- saved: {chat.saved.replace('T', ' ')}")
    blocks = [("system", chat.system)] if chat.system else []
    for sent, reply in chat.exchanges:
        blocks += [(roles[0], sent), (roles[1], reply)]
    for role, text in blocks:
        fence = "`" * max(3, _longest_run(text, "`") + 1)
        lines += ["", f"**{role}**", "", f"{fence}text", text, fence]
    return "\n".join(lines) + "\n"


def describe_sampling(cfg: SamplingConfig) -> str:
    """'top-k, temperature 0.8, top-k 50, seed 7, max new tokens 200': the strategy, the
    settings it reads, and the rest that are not their defaults."""
    default = SamplingConfig()
    used = {"temperature": not cfg.is_greedy, "top_k": cfg.strategy == "top-k",
            "top_p": cfg.strategy == "top-p", "min_p": cfg.strategy == "min-p"}
    parts = [cfg.strategy]
    for name, (said, _) in SAMPLING_RULES.items():
        value = getattr(cfg, name)
        if used.get(name, False) or (name not in used and value != getattr(default, name)):
            parts.append(f"{said} {value}")
    if cfg.stop:
        parts.append("stop " + json.dumps(list(cfg.stop), ensure_ascii=False))
    return ", ".join(parts)


def _longest_run(text: str, char: str) -> int:
    return max((len(run) for run in re.findall(f"{re.escape(char)}+", text)), default=0)


def _code_span(text: str) -> str:
    ticks = "`" * (_longest_run(text, "`") + 1)
    return f"{ticks} {text} {ticks}" if text.startswith("`") or text.endswith("`") \
        else f"{ticks}{text}{ticks}"
