"""The writer's files: the story text, its prompt/memory sidecar, the draft and recovery copies.

* A story file is plain UTF-8 text. Its prompt and memory live in a sidecar next to it,
  ``FILE.storytui.json``, so they travel with the story; the sidecar is only written once a
  prompt or memory is set (or when it already exists).
* A story with no file is the *draft*: ``paths.autosave_path()`` in the data dir, autosaved
  every few seconds and on quit, and reopened by a plain ``storytui``.
* Unsaved edits to a named file are autosaved to a *recovery copy* in ``paths.recovery_dir()``;
  the writer's file itself changes only on save. Opening the file again after a crash restores
  them. Saving or discarding removes the copy.

Every write is atomic. A draft, recovery copy or sidecar that cannot be read is renamed aside
(``NAME.corrupt-<timestamp>``) and never overwritten; a story file that cannot be read is an
error and is left as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from storytui import paths
from storytui.atomic import atomic_write_bytes, atomic_write_text
from storytui.errors import StoryError
from storytui.textfile import encoded_like, read_story
from storytui.tui.continuations import normalize_newlines

SIDECAR_SUFFIX = ".storytui.json"
SIDECAR_FORMAT = "storytui-story"


@dataclass(frozen=True)
class Story:
    """What the writer works on: the text and the two fields the model sees before it."""

    text: str = ""
    prompt: str = ""
    memory: str = ""


@dataclass
class OpenedStory:
    """A story ready for the editor; ``saved`` is what its file holds (None: nothing yet)."""

    story: Story
    path: Path | None  # None: the draft
    saved: Story | None = None
    notices: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- single files


def sidecar_path(story_path: Path) -> Path:
    return story_path.with_name(story_path.name + SIDECAR_SUFFIX)


def recovery_path(story_path: Path) -> Path:
    """Where unsaved edits to ``story_path`` are kept: one file per story path."""
    digest = hashlib.sha256(str(story_path).encode()).hexdigest()[:12]
    return paths.recovery_dir() / f"{story_path.stem[:40]}-{digest}.txt"


def set_aside(path: Path) -> Path:
    """Rename an unreadable file out of the way so nothing ever overwrites it."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = path.with_name(f"{path.name}.corrupt-{stamp}")
    counter = 1
    while target.exists():
        counter += 1
        target = path.with_name(f"{path.name}.corrupt-{stamp}-{counter}")
    path.rename(target)
    return target


def read_sidecar(story_path: Path) -> tuple[dict, str | None]:
    """The sidecar's fields (empty when absent) and a notice if it had to be set aside."""
    sidecar = sidecar_path(story_path)
    if not sidecar.is_file():
        return {}, None
    try:
        data = json.loads(sidecar.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        aside = set_aside(sidecar)
        return {}, f"{sidecar.name} was unreadable ({exc}); kept it as {aside.name}"
    return data, None


def load_story(story_path: Path) -> tuple[Story, list[str]]:
    """Read a story and its sidecar; unreadable story text raises a one-line StoryError."""
    text = normalize_newlines(read_story(story_path))
    data, notice = read_sidecar(story_path)
    story = Story(text, str(data.get("prompt", "")), str(data.get("memory", "")))
    return story, [notice] if notice else []


def write_story(story_path: Path, story: Story, *, extra: dict | None = None) -> None:
    """Write the text, then the sidecar (only if there is something to keep in it).

    A file that had a byte-order mark or Windows line breaks keeps them: the editor works on
    plain ``\n`` text, the writer's file stays in its own convention.
    """
    try:
        existing = story_path.read_bytes() if story_path.is_file() else b""
    except OSError:
        existing = b""  # unreadable now: written in the editor's convention
    atomic_write_bytes(story_path, encoded_like(existing, story.text))
    sidecar = sidecar_path(story_path)
    if story.prompt or story.memory or extra or sidecar.exists():
        data = {"format": SIDECAR_FORMAT, "version": 1, "prompt": story.prompt}
        data["memory"] = story.memory
        data.update(extra or {})
        atomic_write_text(sidecar, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def remove_story_copy(story_path: Path) -> None:
    """Delete a draft or recovery copy and its sidecar (never used on the writer's own files)."""
    for path in (story_path, sidecar_path(story_path)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


def _load_copy(copy_path: Path, label: str) -> tuple[Story | None, list[str]]:
    """Read a draft or recovery copy; a corrupt one is set aside with a notice."""
    if not copy_path.exists():
        return None, []
    try:
        return load_story(copy_path)
    except StoryError as exc:
        aside = set_aside(copy_path)
        return None, [f"the {label} could not be read ({exc}); it was kept as {aside}"]


# ---------------------------------------------------------------------------- what to open


def load_draft() -> OpenedStory:
    story, notices = _load_copy(paths.autosave_path(), "autosaved draft")
    return OpenedStory(story or Story(), None, None, notices)


def open_named(story_path: Path) -> OpenedStory:
    """Open (or start) a named story, restoring unsaved edits a crash left behind."""
    story_path = Path(story_path).expanduser().absolute()
    notices: list[str] = []
    if story_path.exists():
        saved, notices = load_story(story_path)
    elif not story_path.parent.is_dir():
        raise StoryError(f"cannot create {story_path}: {story_path.parent} is not a directory")
    else:
        saved = Story()
    recovered, copy_notices = _load_copy(recovery_path(story_path), "recovery copy")
    notices += copy_notices
    if recovered is not None and recovered != saved:
        notices.append(f"restored unsaved changes to {story_path.name} from the last session")
        return OpenedStory(recovered, story_path, saved if story_path.exists() else None, notices)
    return OpenedStory(saved, story_path, saved if story_path.exists() else None, notices)


def open_initial(file: Path | None, last_file: str | None) -> OpenedStory:
    """``storytui FILE`` opens FILE; plain ``storytui`` reopens the last story, else the draft."""
    if file is not None:
        return open_named(file)
    if last_file:
        last = Path(last_file)
        if last.exists() or recovery_path(last).exists():
            try:
                return open_named(last)
            except StoryError as exc:
                opened = load_draft()
                opened.notices.insert(0, f"could not reopen the last story: {exc}")
                return opened
        opened = load_draft()
        opened.notices.insert(0, f"{last} no longer exists; opened the draft")
        return opened
    return load_draft()


def autosave(path: Path | None, story: Story, saved: Story | None) -> None:
    """Keep the newest text safe: the draft in the data dir, or a recovery copy of a file."""
    if path is None:
        write_story(paths.autosave_path(), story, extra={})
    elif story == (saved or Story()):
        remove_story_copy(recovery_path(path))
    else:
        write_story(recovery_path(path), story, extra={"file": str(path)})
