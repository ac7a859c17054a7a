"""The app's file actions: save, save as, open, new, quit, and autosave.

A mixin for ``StoryApp`` that keeps the rules about the writer's text in one place: named
stories are written on save only (their unsaved edits go to a recovery copy every few
seconds), the untitled draft is always autosaved, and nothing unsaved is dropped without
asking. Saving over a file that changed on disk since this app read or wrote it asks first,
and so does saving over another file. The open file is watched: a change made by another
program reloads it when nothing of the writer's would be lost, and is otherwise shown in the
status bar (see ``_watch_tick``). SIGTERM and SIGHUP (the terminal closed) write the last
autosave at once and end the app cleanly. It uses the app's ``editor``, ``prompt``,
``memory``, ``settings``, ``cowriter``, ``_notice``, ``_save_settings``, ``_show_story`` and
status refresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from dataclasses import replace
from pathlib import Path

from textual import work
from textual.message import Message

from storytui.errors import StoryError
from storytui.tui.dialogs import (
    DISCARD_CANCEL,
    OVERWRITE_CANCEL,
    OVERWRITE_SAVE_AS_CANCEL,
    SAVE_DISCARD_CANCEL,
    AskChoice,
    AskPath,
)
from storytui.tui.story_files import (
    ABSENT,
    DiskVersion,
    OpenedStory,
    Stamp,
    Story,
    autosave,
    discard_copies,
    disk_fingerprint,
    disk_stamp,
    draft_in_use_elsewhere,
    load_draft,
    open_named,
    open_problem,
    read_version,
    save_problem,
    write_story,
)

EXIT_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name)
)
# How the open file stands against the text, when not simply holding ``saved``.
CHANGED, DELETED, UNREADABLE = "changed on disk", "deleted on disk", "unreadable on disk"
UNKNOWN: Stamp = ("unknown",)  # no stamp yet: the next check reads the file


class DiskChecked(Message):
    """The open file was read again because its stamp changed (posted by a thread)."""

    def __init__(self, path: Path, saved: Story | None, version: DiskVersion) -> None:
        super().__init__()
        self.path, self.saved, self.version = path, saved, version


def cursor_after_reload(old: str, new: str, cursor: int) -> int:
    """Where the cursor goes when ``old`` is replaced by ``new``: it keeps its place in the text
    before it if that is unchanged, else in the text after it, else its offset (clamped)."""
    if new.startswith(old[:cursor]):
        return cursor
    if new.endswith(old[cursor:]):
        return len(new) - (len(old) - cursor)
    return min(cursor, len(new))


class FileActions:
    """Mixed into StoryApp; ``path`` None means the draft."""

    path: Path | None
    saved: Story | None  # what the file holds (None: nothing yet); ``base``: its fingerprint
    autosaved: Story | None  # what the last autosave wrote
    _autosave_error: str | None = None
    _final_autosave: bool = True
    _warned: frozenset[str] = frozenset()  # notices shown once per session
    _saved_here: Path | None = None  # the file this app last saved, while it is open
    _exit_signal: int | None = None  # the signal that is ending the app
    _signals_installed: tuple[int, ...] = ()
    _disk_stamp: Stamp = UNKNOWN  # the open file's stamp when last read or written
    _disk_state: str = ""  # "" (the file holds ``saved``), CHANGED, DELETED or UNREADABLE
    _newer: Story | None = None  # what the file holds now, waiting for the text to be clean
    _disk_reading: bool = False

    def current_story(self) -> Story:
        return Story(self.editor.text, self.prompt, self.memory)

    @property
    def modified(self) -> bool:
        """Named story with changes its file does not have (the draft is always autosaved)."""
        return self.path is not None and self.current_story() != (self.saved or Story())

    def _remember_file(self) -> None:
        self.settings.last_file = str(self.path) if self.path is not None else None
        self._save_settings()

    def _autosave_tick(self) -> None:
        self._autosave()
        self._status_dirty = True

    def _autosave(self) -> None:
        story = self.current_story()
        if story == self.autosaved:
            return
        try:
            notice = autosave(self.path, story, self.saved)
        except StoryError as exc:
            if str(exc) != self._autosave_error:
                self._notice(f"autosave failed: {exc}", severity="error")
            self._autosave_error = str(exc)
            return
        self._autosave_error = None
        self.autosaved = story
        if notice and notice not in self._warned:
            self._warned |= {notice}
            self._notice(notice)

    def _write(self, path: Path) -> bool:
        story = self.current_story()
        try:
            base = write_story(path, story)
        except StoryError as exc:
            self._notice(f"not saved: {exc}", severity="error", topic="file")
            return False
        previous = self.path
        if previous != path:
            discard_copies(previous)
        discard_copies(path)
        self.path, self.saved, self.autosaved = path, replace(story, base=base), story
        self._saved_here = path
        self._in_step(disk_stamp(path))  # this app's own write is no change on disk
        self._clear_notice("file")  # an earlier failed save no longer applies
        self._remember_file()
        self.notify(f"saved {path.name}", markup=False)
        self._status_dirty = True
        self._refresh_status()
        return True

    def _is_open_file(self, target: Path) -> bool:
        return self.path is not None and os.path.realpath(target) == os.path.realpath(self.path)

    async def _save(self) -> bool:
        if self.path is None:
            return await self._save_as()
        return await self._save_to(self.path)

    async def _save_to(self, target: Path) -> bool:
        """Write ``target``, asking first where that would replace text this app never read:
        the open file changed on disk since it was opened or saved, or another existing file."""
        if self._is_open_file(target):
            base = self.saved.base if self.saved is not None else ABSENT
            now = disk_fingerprint(target)
            if base is not None and now not in (None, ABSENT, base):
                since = "you saved it" if self._saved_here == self.path else "you opened it"
                answer = await self.push_screen_wait(
                    AskChoice(
                        f"{target.name} changed on disk since {since}.",
                        OVERWRITE_SAVE_AS_CANCEL,
                        detail="Another program or storytui wrote it. Overwrite replaces that "
                        "version with yours; Save as… keeps both.",
                    )
                )
                if answer == "save_as":
                    return await self._save_as()
                if answer != "overwrite":
                    return False
        elif target.exists():
            answer = await self.push_screen_wait(
                AskChoice(f"{target.name} exists. Overwrite it?", OVERWRITE_CANCEL)
            )
            if answer != "overwrite":
                return False
        return self._write(target)

    async def _save_as(self) -> bool:
        start = str(self.path) if self.path else ""
        target = await self.push_screen_wait(
            AskPath("Save story as", start, "Enter saves, Esc cancels.", check=save_problem)
        )
        if target is None:
            return False
        return await self._save_to(target.absolute())

    async def _settle_unsaved(self, doing: str) -> bool:
        """Before leaving the story: save or discard a named story's changes, or cancel.

        Returns True to go on. The draft needs no question: it is autosaved here and a plain
        ``storytui`` (or Open with an empty name) brings it back.
        """
        if self.path is None:
            self._autosave()
            return True
        if not self.modified:
            return True
        answer = await self.push_screen_wait(
            AskChoice(
                f"{self.path.name} has unsaved changes. Save before {doing}?", SAVE_DISCARD_CANCEL
            )
        )
        if answer == "save":
            return await self._save()
        if answer == "discard":
            discard_copies(self.path)
            self.autosaved = self.current_story()  # nothing left to autosave
            return True
        return False

    @work(group="dialog", exclusive=True)
    async def action_save(self) -> None:
        await self._save()

    @work(group="dialog", exclusive=True)
    async def action_save_as(self) -> None:
        await self._save_as()

    @work(group="dialog", exclusive=True)
    async def action_open(self) -> None:
        if self.job is not None:
            self.notify("stop the model first (Esc)", severity="warning")
            return
        target = await self.push_screen_wait(
            AskPath(
                "Open story",
                "",
                "Enter opens (an empty name opens the draft; a new name starts a story); "
                "Esc cancels.",
                allow_empty=True,
                check=open_problem,
            )
        )
        if target is None or not await self._settle_unsaved("opening another story"):
            return
        try:
            opened = load_draft() if target == Path() else open_named(target)
        except StoryError as exc:
            self._notice(str(exc), severity="error", topic="file")
            return
        self._switch_to(opened)

    @work(group="dialog", exclusive=True)
    async def action_new(self) -> None:
        if self.job is not None:
            self.notify("stop the model first (Esc)", severity="warning")
            return
        if not await self._settle_unsaved("starting a new story"):
            return
        if self.path is None:
            draft = self.current_story()
        elif draft_in_use_elsewhere():
            draft = Story()  # another storytui's: left to it, this one autosaves beside it
        else:
            draft = load_draft().story
        if draft.text.strip() or draft.prompt or draft.memory:
            words = len(draft.text.split())
            answer = await self.push_screen_wait(
                AskChoice(
                    f"The draft holds {words} words. Discard it for a new story?", DISCARD_CANCEL
                )
            )
            if answer != "discard":
                return
        discard_copies(None)
        self._switch_to(OpenedStory(Story(), None))

    def _switch_to(self, opened: OpenedStory) -> None:
        self.path, self.saved, self.autosaved = opened.path, opened.saved, opened.story
        self._saved_here = None
        self._in_step(UNKNOWN)  # the first check reads it: a change during opening is seen
        self.last_stats = None  # the last continuation's speed belongs to the story it was in
        self._remember_file()
        self._show_story(opened)

    @work(group="dialog", exclusive=True)
    async def action_quit(self) -> None:
        self.cowriter.stop()
        if not await self._settle_unsaved("quitting"):
            return
        self._autosave()  # the draft, or a stale recovery copy removed
        self._final_autosave = False
        self.exit()

    # ------------------------------------------------------------------ changes on disk

    def _watch_tick(self) -> None:
        """Every second: has the open file changed? A stat tells; the file is read (in a
        thread) only when its stamp moved. A newer version that waits for the writer's unsaved
        edits to go is taken once they have (saved elsewhere, or undone)."""
        if self.path is None or self._disk_reading:
            return
        if disk_stamp(self.path) != self._disk_stamp:
            self._disk_reading = True
            self._read_disk(self.path, self.saved)
        elif self._newer is not None:
            self._take_newer()

    @work(thread=True, group="disk-watch", exit_on_error=False)
    def _read_disk(self, path: Path, saved: Story | None) -> None:
        self.post_message(DiskChecked(path, saved, read_version(path)))

    def on_disk_checked(self, message: DiskChecked) -> None:
        """Compare what the file holds with what the app last read or wrote, and act on it."""
        self._disk_reading = False
        if self._closing_down or message.path != self.path or message.saved is not self.saved:
            return  # saved or switched meanwhile: what was read is out of date
        version, name = message.version, self.path.name
        self._disk_stamp, self._newer = version.stamp, None
        if version.problem:
            # the text is now only here: unsaved (so autosaved, and quitting asks) until saved
            self.saved = self.autosaved = None
            self._disk_is(
                UNREADABLE,
                f"{name} changed on disk and cannot be read ({version.problem}); "
                "your text stays as it is, autosaved",
            )
        elif version.absent:
            if self.saved is not None:  # else a new story that was never written
                # nothing on disk holds the text now: it is unsaved, and autosaved as such
                self.saved = self.autosaved = None
                self._disk_is(
                    DELETED, f"{name} was deleted or renamed on disk; ctrl+s writes it again"
                )
        elif version.story in (self.saved, self.current_story()):
            # the same story (in other bytes, maybe): in step; the recovery copy follows
            self.saved, self.autosaved = version.story, None
            self._disk_is("")
        else:
            self._newer = version.story
            self._take_newer()
        for notice in version.notices:  # a broken sidecar, set aside
            self._notice(notice)

    def _take_newer(self) -> None:
        """Reload the file's newer version, unless that would drop text the writer has not
        saved (or the model is writing): then say once that saving asks first."""
        if self.modified or self.job is not None:
            self._disk_is(
                CHANGED,
                f"{self.path.name} changed on disk: your text stays as it is, "
                "and saving asks before overwriting the file",
            )
        elif len(self.screen_stack) == 1:  # a dialog open: reloaded once it closes
            self._reload(self._newer)

    def _reload(self, story: Story) -> None:
        """Put the file's newer version on screen, the cursor near where it was. As on opening,
        the continuation record and the undo history start afresh: they describe the old text."""
        editor = self.editor
        cursor = cursor_after_reload(editor.text, story.text, editor.cursor_index)
        self.saved = self.autosaved = story
        self._saved_here = None
        self._in_step(self._disk_stamp)
        notice = f"reloaded {self.path.name}: it changed on disk"
        self._show_story(OpenedStory(story, self.path, story, [notice]), cursor=cursor)

    def _in_step(self, stamp: Stamp) -> None:
        """The file holds ``saved`` (just read or written): no newer version waits."""
        self._disk_stamp, self._newer = stamp, None
        self._disk_is("")

    def _disk_is(self, state: str, notice: str = "") -> None:
        """Record how the file stands against the text; a new state is said once."""
        if state == self._disk_state:
            return
        self._disk_state = state
        self._status_dirty = True
        if notice:
            self._notice(notice, topic="disk")
        else:
            self._clear_notice("disk")

    # ------------------------------------------------------------------ signals

    def on_load(self) -> None:
        """SIGTERM and SIGHUP (the terminal closed) end the app the way quitting does, less the
        question: handled in the app's running loop, so they run between two key presses."""
        loop = asyncio.get_running_loop()
        installed = []
        for signum in EXIT_SIGNALS:
            try:
                loop.add_signal_handler(signum, self._exit_on_signal, signum)
            except (NotImplementedError, RuntimeError, ValueError):
                continue  # not the main thread, or a loop without signals
            installed.append(signum)
        self._signals_installed = tuple(installed)

    def _exit_on_signal(self, signum: int) -> None:
        """Write the last autosave now (the draft, or the recovery copy), then exit with the
        shell's status for a signal, 128 + its number, restoring the terminal on the way."""
        if self._exit_signal is not None:
            return  # already on the way out
        self._exit_signal = signum
        if getattr(self, "cowriter", None) is not None:  # else the story is not on screen yet
            self.cowriter.stop()
            self._autosave()
            self._final_autosave = False
        if signum == getattr(signal, "SIGHUP", None) and not self.is_headless:
            # the terminal is gone: Textual's shutdown would restore it through a writer
            # thread that died on the first write (EIO) and then wait on that thread's full
            # queue for ever; everything is saved, so the process ends here
            os._exit(128 + signum)
        self.exit(return_code=128 + signum)

    def run(self, *args, **kwargs):
        """``App.run``; after a signal, the process ends with the status that signal gives."""
        result = super().run(*args, **kwargs)
        if self._exit_signal is not None:
            sys.exit(128 + self._exit_signal)
        return result

    def on_unmount(self) -> None:
        self.cowriter.stop()
        with contextlib.suppress(RuntimeError):
            loop = asyncio.get_running_loop()
            for signum in self._signals_installed:
                loop.remove_signal_handler(signum)
        self._signals_installed = ()
        if self._final_autosave:
            # on failure the last autosave, at most a few seconds old, is on disk
            with contextlib.suppress(StoryError):
                autosave(self.path, self.current_story(), self.saved)
