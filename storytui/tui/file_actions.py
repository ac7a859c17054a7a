"""The app's file actions: save, save as, open, new, quit, and autosave.

A mixin for ``StoryApp`` that keeps the rules about the writer's text in one place: named
stories are written on save only (their unsaved edits go to a recovery copy every few
seconds), the untitled draft is always autosaved, and nothing unsaved is dropped without
asking. It uses the app's ``editor``, ``prompt``, ``memory``, ``settings``, ``cowriter``,
``_notice``, ``_save_settings``, ``_show_story`` and status refresh.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

from textual import work

from storytui import paths
from storytui.errors import StoryError
from storytui.tui.dialogs import (
    DISCARD_CANCEL,
    OVERWRITE_CANCEL,
    SAVE_DISCARD_CANCEL,
    AskChoice,
    AskPath,
)
from storytui.tui.story_files import (
    OpenedStory,
    Story,
    autosave,
    load_draft,
    open_named,
    recovery_path,
    remove_story_copy,
    write_story,
)


class FileActions:
    """Mixed into StoryApp; ``path`` None means the draft."""

    path: Path | None
    saved: Story | None  # what the file holds (None: nothing yet)
    autosaved: Story | None  # what the last autosave wrote
    _autosave_error: str | None = None
    _final_autosave: bool = True

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
            autosave(self.path, story, self.saved)
        except StoryError as exc:
            if str(exc) != self._autosave_error:
                self._notice(f"autosave failed: {exc}", severity="error")
            self._autosave_error = str(exc)
            return
        self._autosave_error = None
        self.autosaved = story

    def _write(self, path: Path) -> bool:
        story = self.current_story()
        try:
            write_story(path, story)
        except StoryError as exc:
            self._notice(f"not saved: {exc}", severity="error")
            return False
        previous = self.path
        if previous != path:
            remove_story_copy(recovery_path(previous) if previous else paths.autosave_path())
        remove_story_copy(recovery_path(path))
        self.path, self.saved, self.autosaved = path, story, story
        self._remember_file()
        self.notify(f"saved {path.name}", markup=False)
        self._status_dirty = True
        self._refresh_status()
        return True

    async def _save(self) -> bool:
        if self.path is None:
            return await self._save_as()
        return self._write(self.path)

    async def _save_as(self) -> bool:
        start = str(self.path) if self.path else ""
        target = await self.push_screen_wait(
            AskPath("Save story as", start, "Enter saves, Esc cancels.")
        )
        if target is None:
            return False
        target = target.absolute()
        if target.is_dir():
            self._notice(f"{target} is a directory", severity="error")
            return False
        if target.exists() and target != self.path:
            answer = await self.push_screen_wait(
                AskChoice(f"{target.name} exists. Overwrite it?", OVERWRITE_CANCEL)
            )
            if answer != "overwrite":
                return False
        return self._write(target)

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
            remove_story_copy(recovery_path(self.path))
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
                "Enter opens (an empty name opens the draft); Esc cancels.",
                allow_empty=True,
            )
        )
        if target is None or not await self._settle_unsaved("opening another story"):
            return
        try:
            opened = load_draft() if target == Path() else open_named(target)
        except StoryError as exc:
            self._notice(str(exc), severity="error")
            return
        self._switch_to(opened)

    @work(group="dialog", exclusive=True)
    async def action_new(self) -> None:
        if self.job is not None:
            self.notify("stop the model first (Esc)", severity="warning")
            return
        if not await self._settle_unsaved("starting a new story"):
            return
        draft = self.current_story() if self.path is None else load_draft().story
        if draft.text.strip() or draft.prompt or draft.memory:
            words = len(draft.text.split())
            answer = await self.push_screen_wait(
                AskChoice(
                    f"The draft holds {words} words. Discard it for a new story?", DISCARD_CANCEL
                )
            )
            if answer != "discard":
                return
        remove_story_copy(paths.autosave_path())
        self._switch_to(OpenedStory(Story(), None))

    def _switch_to(self, opened: OpenedStory) -> None:
        self.path, self.saved, self.autosaved = opened.path, opened.saved, opened.story
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

    def on_unmount(self) -> None:
        self.cowriter.stop()
        if self._final_autosave:
            # on failure the last autosave, at most a few seconds old, is on disk
            with contextlib.suppress(StoryError):
                autosave(self.path, self.current_story(), self.saved)
