"""Reading the writer's files safely: one clear error for anything that isn't UTF-8 text."""

from __future__ import annotations

import re
import sys
from pathlib import Path

from storytui.errors import StoryError

MAX_STORY_BYTES = 50 * 1024 * 1024
_UTF8_BOM = "\ufeff".encode()


# Every character str.splitlines() breaks on: the editor turns each into a line break.
_LINE_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def normalize_newlines(text: str) -> str:
    """The text as the editor stores it, and as the model sees any story: every line break
    becomes ``\\n`` (what it was trained on; a file's own breaks are restored when written)."""
    return _LINE_BREAKS.sub("\n", text)


def looks_binary(data: bytes) -> bool:
    """NUL bytes never occur in UTF-8 or Latin-1 prose but fill executables and archives, so
    a NUL in the first few KiB is the sign of a file that is not text at all."""
    return b"\x00" in data[:8192]


def decode_text(data: bytes, label: str) -> str:
    if looks_binary(data):
        raise StoryError(f"{label} looks like a binary file, not text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StoryError(f"{label} is not UTF-8 text (bad byte at offset {exc.start})") from exc
    return text.removeprefix("\ufeff")


def read_story(path: str | Path) -> str:
    """Read a story file, or standard input for ``-``."""
    return decode_text(read_story_bytes(path), story_label(path))


def story_label(path: str | Path) -> str:
    """How messages name what a story was read from."""
    return "standard input" if str(path) == "-" else str(path)


def read_story_bytes(path: str | Path) -> bytes:
    """A story file's bytes exactly as they are on disk (standard input for ``-``), after the
    checks every story read makes; ``decode_text`` turns them into the text."""
    if str(path) == "-":
        if sys.stdin is None:  # started with `<&-`
            raise StoryError("standard input is closed; give a story file or pipe one in")
        data = sys.stdin.buffer.read(MAX_STORY_BYTES + 1)
        if len(data) > MAX_STORY_BYTES:
            raise StoryError("standard input holds over 50 MiB; stories over 50 MiB are refused")
        return data
    if not str(path).strip():
        raise StoryError("no story file given (an empty name)")
    path = Path(path).expanduser()
    if not path.exists():
        raise StoryError(f"no such file: {path}")
    if path.is_dir():
        raise StoryError(f"{path} is a directory, not a story file")
    try:
        size = path.stat().st_size
        if size > MAX_STORY_BYTES:
            raise StoryError(f"{path} is {size // 2**20} MiB; stories over 50 MiB are refused")
        return path.read_bytes()
    except PermissionError as exc:
        raise StoryError(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise StoryError(f"cannot read {path}: {exc.strerror or exc}") from exc


def line_break(data: bytes) -> str:
    """The line break a file uses: ``\r\n`` when every one of its breaks is, else ``\n``."""
    crlf = data.count(b"\r\n")
    return "\r\n" if crlf and crlf == data.count(b"\n") else "\n"


def appended_bytes(existing: bytes, addition: str) -> bytes:
    """``addition`` encoded to follow ``existing`` in the same file: in its line breaks, so a
    Windows-style story stays one (its own bytes, byte-order mark included, are kept as is)."""
    newline = line_break(existing)
    if newline != "\n":
        addition = addition.replace("\r\n", "\n").replace("\n", newline)
    return addition.encode("utf-8")


def encoded_like(existing: bytes, text: str) -> bytes:
    """``text`` as the new version of a file that held ``existing``: with its byte-order mark
    and its line breaks, which reading the file took off (``decode_text``, the editor)."""
    bom = _UTF8_BOM if existing.startswith(_UTF8_BOM) else b""
    return bom + appended_bytes(existing, text)
