"""The writer's files: the story text, its prompt/memory sidecar, the draft and recovery copies.

* A story file is plain UTF-8 text. Its prompt and memory live in a sidecar next to it,
  ``FILE.storytui.json``, so they travel with the story; the sidecar is only written once a
  prompt or memory is set (or when it already exists).
* A story with no file is the *draft*: ``paths.autosave_path()`` in the data dir, autosaved
  every few seconds and on quit, and reopened by a plain ``storytui``.
* Unsaved edits to a named file are autosaved to a *recovery copy* in ``paths.recovery_dir()``,
  one per file: keyed by the file's real path, so a link or a linked folder finds the same copy.
  The writer's file itself changes only on save. Opening the file again after a crash restores
  them, but only while the file still holds what the edits were based on (the copy keeps the
  sha256 *fingerprint* of those bytes); a file that changed since is opened as it is and the
  copy is kept aside (``NAME.kept-<timestamp>.txt``), never deleted. Saving or discarding
  removes the copy.
* Every draft and recovery copy records the process that wrote it. A storytui never overwrites
  or deletes another one's copy (a running one's live work, or what a killed one left): it
  autosaves to ``NAME.pid-<pid>.txt`` beside it instead, and says so once.
* The open file is watched for changes made by other programs: ``disk_stamp`` (``os.stat`` of
  the file and its sidecar) is cheap enough to take every second, and only when it changes
  does ``read_version`` read what the file holds now.

Every write is atomic. A draft, recovery copy or sidecar that cannot be read is renamed aside
(``NAME.corrupt-<timestamp>``) and never overwritten; a story file that cannot be read is an
error and is left as it is.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from storytui import paths
from storytui.atomic import atomic_write_bytes, atomic_write_text, process_exists
from storytui.errors import StoryError
from storytui.textfile import decode_text, encoded_like, read_story_bytes, story_label
from storytui.tui.continuations import normalize_newlines

SIDECAR_SUFFIX = ".storytui.json"
SIDECAR_FORMAT = "storytui-story"
ABSENT = "absent"  # the fingerprint of a file that does not exist


@dataclass(frozen=True)
class Story:
    """What the writer works on: the text and the two fields the model sees before it.

    ``base`` is the fingerprint of the file bytes a saved story was read from or written as
    (None where unknown); it is not part of what the story *is*, so it takes no part in ``==``.
    """

    text: str = ""
    prompt: str = ""
    memory: str = ""
    base: str | None = field(default=None, compare=False, repr=False)


@dataclass
class OpenedStory:
    """A story ready for the editor; ``saved`` is what its file holds (None: nothing yet)."""

    story: Story
    path: Path | None  # None: the draft
    saved: Story | None = None
    notices: list[str] = field(default_factory=list)


def fingerprint(data: bytes | None) -> str:
    """What tells one version of a file from another: its bytes' sha256 (``ABSENT``: none)."""
    return ABSENT if data is None else "sha256:" + hashlib.sha256(data).hexdigest()


def disk_fingerprint(path: Path) -> str | None:
    """The fingerprint of what ``path`` holds now (None: it cannot be read)."""
    try:
        return fingerprint(Path(path).read_bytes())
    except FileNotFoundError:
        return ABSENT
    except OSError:
        return None


def folder_problem(story_path: Path) -> str | None:
    """Why a story cannot be created at ``story_path`` because of its folder (None: it can).

    Opening a new file and saving as both follow this rule: a missing folder is a typo more
    often than a wish, so it is never created.
    """
    folder = Path(story_path).parent
    if folder.is_dir():
        return None
    if not folder.exists():
        return f"cannot create {story_path}: the folder {folder} does not exist"
    return f"cannot create {story_path}: {folder} is a file, not a folder"


def save_problem(target: Path) -> str | None:
    """Why Save as cannot write ``target`` (None: it can), asked while its dialog is open."""
    if target.is_dir():
        return f"{target} is a folder"
    return folder_problem(target)


def open_problem(target: Path) -> str | None:
    """Why Open cannot open or start ``target`` (None: it can)."""
    if target.is_dir():
        return f"{target} is a folder"
    return None if target.exists() else folder_problem(target)


# ---------------------------------------------------------------------------- single files


def sidecar_path(story_path: Path) -> Path:
    return story_path.with_name(story_path.name + SIDECAR_SUFFIX)


def recovery_path(story_path: Path) -> Path:
    """Where unsaved edits to ``story_path`` are kept: one place per file, by its real path."""
    real = Path(os.path.realpath(Path(story_path).expanduser()))
    digest = hashlib.sha256(str(real).encode()).hexdigest()[:12]
    return paths.recovery_dir() / f"{real.stem[:40]}-{digest}.txt"


def _legacy_recovery_path(story_path: Path) -> Path:
    """Where older versions kept them: by the path as typed (the same place unless a link is
    on the way)."""
    absolute = Path(story_path).expanduser().absolute()
    digest = hashlib.sha256(str(absolute).encode()).hexdigest()[:12]
    return paths.recovery_dir() / f"{absolute.stem[:40]}-{digest}.txt"


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


def keep_aside(copy_path: Path) -> Path:
    """Rename a draft or recovery copy (and its sidecar) to ``NAME.kept-<timestamp>.txt``:
    out of the way of every later autosave, still a story storytui can open."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    target = copy_path.with_name(f"{copy_path.stem}.kept-{stamp}.txt")
    counter = 1
    while target.exists() or sidecar_path(target).exists():
        counter += 1
        target = copy_path.with_name(f"{copy_path.stem}.kept-{stamp}-{counter}.txt")
    copy_path.rename(target)
    with contextlib.suppress(FileNotFoundError):
        sidecar_path(copy_path).rename(sidecar_path(target))
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


def _load(story_path: Path) -> tuple[Story, dict, list[str]]:
    data = read_story_bytes(story_path)
    text = normalize_newlines(decode_text(data, story_label(story_path)))
    fields, notice = read_sidecar(story_path)
    prompt, memory = str(fields.get("prompt", "")), str(fields.get("memory", ""))
    return Story(text, prompt, memory, base=fingerprint(data)), fields, [notice] if notice else []


def load_story(story_path: Path) -> tuple[Story, list[str]]:
    """Read a story and its sidecar; unreadable story text raises a one-line StoryError.

    The story's ``base`` is the fingerprint of the bytes read."""
    story, _fields, notices = _load(story_path)
    return story, notices


def write_story(story_path: Path, story: Story, *, extra: dict | None = None) -> str:
    """Write the text, then the sidecar (only if there is something to keep in it); returns
    the fingerprint of the bytes written.

    A file that had a byte-order mark or Windows line breaks keeps them: the editor works on
    plain ``\n`` text, the writer's file stays in its own convention.
    """
    try:
        existing = story_path.read_bytes() if story_path.is_file() else b""
    except OSError:
        existing = b""  # unreadable now: written in the editor's convention
    data = encoded_like(existing, story.text)
    atomic_write_bytes(story_path, data)
    sidecar = sidecar_path(story_path)
    if story.prompt or story.memory or extra or sidecar.exists():
        fields = {"format": SIDECAR_FORMAT, "version": 1, "prompt": story.prompt}
        fields["memory"] = story.memory
        fields.update(extra or {})
        atomic_write_text(sidecar, json.dumps(fields, indent=2, ensure_ascii=False) + "\n")
    return fingerprint(data)


def remove_story_copy(story_path: Path) -> None:
    """Delete a draft or recovery copy and its sidecar (never used on the writer's own files)."""
    for path in (story_path, sidecar_path(story_path)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


# ---------------------------------------------------------------------------- changes on disk

Stamp = tuple[object, ...]  # what os.stat says about a story and its sidecar


def _stat_of(path: Path) -> tuple[int, ...] | str | None:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"error {exc.errno}"  # a change all the same: reading it says what is wrong
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def disk_stamp(story_path: Path) -> Stamp:
    """A cheap sign that a story or its sidecar may have changed: inode, size and times.

    Watching takes one of these every second; only when it differs are the bytes read."""
    return (_stat_of(story_path), _stat_of(sidecar_path(story_path)))


@dataclass(frozen=True)
class DiskVersion:
    """What a story file holds now: its ``story`` (None: absent, or ``problem`` says why it
    cannot be read), read after the ``stamp`` was taken."""

    stamp: Stamp
    story: Story | None
    problem: str | None = None
    notices: tuple[str, ...] = ()

    @property
    def absent(self) -> bool:
        return self.story is None and self.problem is None


def read_version(story_path: Path) -> DiskVersion:
    """Read what a story file holds now (in a thread: a big file takes a while).

    The stamp is taken first, so a change made during the read shows at the next check."""
    stamp = disk_stamp(story_path)
    if stamp[0] is None:
        return DiskVersion(stamp, None)
    try:
        story, notices = load_story(story_path)
    except (StoryError, OSError) as exc:  # OSError: a broken sidecar could not be set aside
        if not story_path.exists():
            return DiskVersion(disk_stamp(story_path), None)  # removed while being read
        return DiskVersion(stamp, None, str(exc))
    return DiskVersion(stamp, story, notices=tuple(notices))


# ---------------------------------------------------------------------------- whose copy


def _started(pid: int) -> str | None:
    """When process ``pid`` started (from /proc; None elsewhere), which tells a pid that was
    reused since a copy was written from the process that wrote it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(")")[2].split()
    return fields[19] if len(fields) > 19 else None  # field 22, starttime


def _writer() -> dict:
    """What a copy records about the process writing it."""
    return {"pid": os.getpid(), "pid_started": _started(os.getpid())}


def _copy_fields(copy_path: Path) -> dict:
    """A copy's sidecar, read without moving anything ({} when missing or unreadable)."""
    try:
        fields = json.loads(sidecar_path(copy_path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return fields if isinstance(fields, dict) else {}


def _is_mine(fields: dict) -> bool:
    started = fields.get("pid_started")
    return fields.get("pid") == os.getpid() and started in (None, _started(os.getpid()))


def _running_other(fields: dict) -> int | None:
    """The pid of the other storytui, still running, that wrote a copy (None: this process,
    one that has ended, or a copy that does not say)."""
    pid = fields.get("pid")
    if type(pid) is not int or pid == os.getpid() or not process_exists(pid):
        return None
    started = fields.get("pid_started")
    if started is not None and _started(pid) not in (None, started):
        return None  # the pid now belongs to some other program
    return pid


def _key(story_path: Path | None) -> Path:
    """The usual place of a story's copy: the draft, or a named file's recovery copy."""
    return paths.autosave_path() if story_path is None else recovery_path(story_path)


def _own_alternate(key: Path) -> Path:
    """Where this process autosaves when another session's copy is in the usual place."""
    return key.with_name(f"{key.stem}.pid-{os.getpid()}.txt")


def _slot(key: Path) -> Path:
    """Where this process autosaves the copy whose usual place is ``key``: there, unless another
    session's copy is there (its live work, or what a killed one left: never overwritten)."""
    if not key.exists() or _is_mine(_copy_fields(key)):
        return key
    return _own_alternate(key)


def _copies(key: Path, *also: Path) -> list[Path]:
    """The copies of one story: in its usual place ``key`` (and ``also``), and those that
    sessions wrote beside it because that place was taken; newest first."""
    pattern = re.compile(re.escape(key.stem) + r"\.pid-\d+\.txt")
    found = [path for path in (key, *also) if path.is_file()]
    with contextlib.suppress(OSError):
        found += [path for path in key.parent.iterdir() if pattern.fullmatch(path.name)]

    def newest(path: Path) -> float:
        try:
            return -path.stat().st_mtime
        except OSError:
            return 0.0

    return sorted(dict.fromkeys(found), key=newest)


def _read_copy(copy_path: Path, label: str) -> tuple[Story | None, dict, list[str]]:
    """A draft or recovery copy and its sidecar's fields; a corrupt one is set aside."""
    if not copy_path.exists():
        return None, {}, []
    try:
        story, fields, notices = _load(copy_path)
    except StoryError as exc:
        try:
            aside = set_aside(copy_path)
        except OSError:
            return None, {}, []  # gone meanwhile: another session took it
        return None, {}, [f"the {label} could not be read ({exc}); it was kept as {aside}"]
    return replace(story, base=None), fields, notices


def _keep_aside(copy_path: Path) -> Path:
    try:
        return keep_aside(copy_path)
    except OSError:
        return copy_path  # left where it is: nothing overwrites another session's copy


def _copy_extra(story_path: Path | None, base: str | None) -> dict:
    extra = _writer()
    if story_path is not None:
        extra["file"] = str(story_path)
        if base is not None:
            extra["based_on"] = base
    return extra


def _adopt(key: Path, found: Path, story: Story, extra: dict) -> None:
    """Make the copy at ``found`` this process's own: rewritten (with this pid) where it will
    autosave, then the old one removed. If that fails it stays as it was."""
    target = key if found == key else _slot(key)
    try:
        write_story(target, story, extra=extra)
    except StoryError:
        return  # the next autosave says what is wrong
    if found != target:
        remove_story_copy(found)


def discard_copies(story_path: Path | None) -> None:
    """Delete this process's autosaved copy of a story (None: the draft), after a save or when
    the writer discards the changes; another session's copy is left alone."""
    key = _key(story_path)
    if key.exists() and _is_mine(_copy_fields(key)):
        remove_story_copy(key)
    remove_story_copy(_own_alternate(key))


def draft_in_use_elsewhere() -> int | None:
    """The pid of another running storytui that is working on the draft, if any."""
    key = paths.autosave_path()
    return _running_other(_copy_fields(key)) if key.exists() else None


# ---------------------------------------------------------------------------- what to open


def load_draft(*, adopt: bool = True) -> OpenedStory:
    """The draft, from its usual place (or a copy another session left beside it).

    ``adopt``: make it this process's copy (it is about to be worked on or discarded). A draft
    another running storytui works on is shown but not taken over: this one autosaves beside it.
    """
    key = paths.autosave_path()
    draft: Story | None = None
    adopted: Path | None = None
    notices: list[str] = []
    for copy in [key] + [path for path in _copies(key) if path != key]:
        story, fields, copy_notices = _read_copy(copy, "autosaved draft")
        notices += copy_notices
        if story is None:
            continue
        other = _running_other(fields)
        if other is not None:
            if copy == key:
                draft = story
                notices.append(f"the draft is also open in another storytui (process {other})")
            continue  # another running storytui's own draft
        if draft is None:
            draft, adopted = story, copy
        elif story == draft:
            remove_story_copy(copy)
        else:
            notices.append(f"an unsaved draft from another session is kept in {_keep_aside(copy)}")
    if adopt and adopted is not None and draft is not None:
        _adopt(key, adopted, draft, _copy_extra(None, None))
    return OpenedStory(draft or Story(), None, None, notices)


def open_named(story_path: Path) -> OpenedStory:
    """Open (or start) a named story, restoring unsaved edits a crash left behind.

    A recovery copy is restored only while the file holds what those edits were based on; a
    file that changed since (another editor, another storytui) is opened as it is, and the copy
    is kept aside with a notice saying where. A copy another running storytui is writing is
    left to it.
    """
    story_path = Path(story_path).expanduser().absolute()
    notices: list[str] = []
    if story_path.exists():
        saved, notices = load_story(story_path)
        base = saved.base
    elif problem := folder_problem(story_path):
        raise StoryError(problem)
    else:
        saved, base = None, ABSENT
        notices.append(f"{story_path.name} is a new story: saving creates {story_path}")
    on_disk = saved or Story()
    name = story_path.name
    key = recovery_path(story_path)
    restored: tuple[Path, Story] | None = None
    for copy in _copies(key, _legacy_recovery_path(story_path)):
        story, fields, copy_notices = _read_copy(copy, "recovery copy")
        notices += copy_notices
        if story is None:
            continue
        other = _running_other(fields)
        if other is not None:
            notices.append(
                f"{name} is also open in another storytui (process {other}), with unsaved changes"
            )
            continue
        if story == on_disk:
            remove_story_copy(copy)  # nothing in it that the file lacks
            continue
        based_on = fields.get("based_on")  # None: a copy from before fingerprints
        if restored is None and based_on in (None, base):
            restored = (copy, story)
            continue
        kept = _keep_aside(copy)
        if based_on not in (None, base):
            notices.append(
                f"{name} changed on disk after the last session's unsaved changes to it; "
                f"opened it as it is, and kept those changes in {kept}"
            )
        else:
            notices.append(
                f"more unsaved changes to {name} from another session are kept in {kept}"
            )
    if restored is None:
        return OpenedStory(on_disk, story_path, saved, notices)
    copy, story = restored
    _adopt(key, copy, story, _copy_extra(story_path, base))
    notices.append(f"restored unsaved changes to {name} from the last session")
    return OpenedStory(story, story_path, saved, notices)


def open_initial(file: Path | None, last_file: str | None) -> OpenedStory:
    """``storytui FILE`` opens FILE; plain ``storytui`` reopens the last story, else the draft."""
    if file is not None:
        return open_named(file)
    if last_file:
        last = Path(last_file)
        if last.exists() or _copies(recovery_path(last), _legacy_recovery_path(last)):
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


def autosave(path: Path | None, story: Story, saved: Story | None) -> str | None:
    """Keep the newest text safe: the draft in the data dir, or a recovery copy of a file.

    A named file's copy records the fingerprint of ``saved`` (its file as last read or
    written). Returns a notice when another session's copy is in the usual place, so that this
    one went beside it.
    """
    key = _key(path)
    if path is not None and story == (saved or Story()):
        discard_copies(path)
        return None
    slot = _slot(key)
    base = ABSENT if saved is None else saved.base
    write_story(slot, story, extra=_copy_extra(path, base))
    if slot == key:
        remove_story_copy(_own_alternate(key))  # back in the usual place
        return None
    other = _running_other(_copy_fields(key))
    what = "the draft" if path is None else f"unsaved changes to {path.name}"
    who = f"another storytui (process {other})" if other else "an earlier session"
    return f"{who} keeps {what} in {key}; this one autosaves to {slot}"
