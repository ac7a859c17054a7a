"""Reading the writer's files safely: one clear error for anything that isn't UTF-8 text."""

from __future__ import annotations

import sys
from pathlib import Path

from storytui.errors import StoryError

MAX_STORY_BYTES = 50 * 1024 * 1024


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
    if str(path) == "-":
        return decode_text(sys.stdin.buffer.read(), "standard input")
    path = Path(path).expanduser()
    if not path.exists():
        raise StoryError(f"no such file: {path}")
    if path.is_dir():
        raise StoryError(f"{path} is a directory, not a story file")
    try:
        size = path.stat().st_size
        if size > MAX_STORY_BYTES:
            raise StoryError(f"{path} is {size // 2**20} MiB; stories over 50 MiB are refused")
        data = path.read_bytes()
    except PermissionError as exc:
        raise StoryError(f"cannot read {path}: permission denied") from exc
    except OSError as exc:
        raise StoryError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return decode_text(data, str(path))
