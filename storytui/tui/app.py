"""storytui's co-writing app: a story editor where a small language model writes along.

The editor is usable at once: torch and the model load in a background thread while the writer
types. Continuations stream from a thread worker into the editor at the cursor, one message per
token, applied in order on the UI thread. The app keeps its own record of what the model wrote
(``ContinuationLog``) for marking, alternatives, token odds and whole-continuation undo; each
finished continuation becomes one step of the editor's undo history.

Nothing here imports torch at module level: ``storytui.sampling``, ``storytui.checkpoint`` and
``storytui.session`` are imported by the loader thread, and by the UI thread only after that.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import threading
from collections import deque
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.widgets import Footer, Static, TextArea

from storytui import paths
from storytui.errors import StoryError
from storytui.tui.commands import COMMANDS
from storytui.tui.continuations import (
    Continuation,
    ContinuationLog,
    GeneratedToken,
    NewlineNormalizer,
    Variant,
    normalize_newlines,
)
from storytui.tui.dialogs import (
    DISCARD_CANCEL,
    OVERWRITE_CANCEL,
    SAVE_DISCARD_CANCEL,
    AskChoice,
    AskPath,
    TokenAlternatives,
)
from storytui.tui.editor import StoryEditor
from storytui.tui.help import HelpScreen
from storytui.tui.model_picker import ModelPicker
from storytui.tui.sampling_panel import SidePanel
from storytui.tui.settings_store import load_settings, save_settings
from storytui.tui.story_files import (
    OpenedStory,
    Story,
    autosave,
    load_draft,
    open_initial,
    open_named,
    recovery_path,
    remove_story_copy,
    write_story,
)

LOADING, READY, NO_MODEL = "loading model…", "ready", "no model"
PROBABILITY_LEGEND = "token colours: green ≥60%, yellow ≥30%, orange ≥10%, red <10% likely"


# ---------------------------------------------------------------------------- thread messages


class StackReady(Message):
    """torch and the sampling module are imported: the sampling panel can be built."""


class ModelLoaded(Message):
    def __init__(self, generator, path: Path | None, error: str | None, notice: str | None) -> None:
        super().__init__()
        self.generator = generator
        self.path = path
        self.error = error
        self.notice = notice


class TokensReady(Message):
    """New tokens wait in the job's queue (one message per batch, not per token)."""

    def __init__(self, job_id: int) -> None:
        super().__init__()
        self.job_id = job_id


class GenerationDone(Message):
    def __init__(self, job_id: int, stats, error: str | None) -> None:
        super().__init__()
        self.job_id = job_id
        self.stats = stats  # storytui.generation.GenerationStats
        self.error = error


@dataclass
class Job:
    """One continuation being written: where it goes, its token queue, how to stop it.

    The generation thread appends each ``TokenEvent`` to ``pending`` and posts ``TokensReady``
    only when no wake-up is outstanding; the UI thread drains the whole queue at once. So the
    editor never falls behind the model, and after Esc at most one more token arrives.
    """

    id: int
    continuation: Continuation
    variant: Variant
    base: str  # the text the undo history expects at the continuation's start
    cancel: threading.Event = field(default_factory=threading.Event)
    normalizer: NewlineNormalizer = field(default_factory=NewlineNormalizer)
    pending: deque = field(default_factory=deque)
    woken: threading.Event = field(default_factory=threading.Event)


def _bindings() -> list[Binding]:
    bindings = []
    for command in COMMANDS:
        first = command.keys.split(",")[0]
        display = {"question_mark": "?", "escape": "esc"}.get(first, first)
        bindings.append(
            Binding(
                command.keys,
                command.action,
                command.label,
                key_display=display.upper() if display.startswith("f") else None,
                tooltip=command.help,
            )
        )
    return bindings


class StoryApp(App[None]):
    """The co-writing app; ``file`` None reopens the last story (or the draft)."""

    CSS_PATH = "storytui.tcss"
    TITLE = "storytui"
    BINDINGS = _bindings()

    def __init__(
        self,
        file: Path | None = None,
        *,
        autosave_seconds: float = 3.0,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.settings, settings_notice = load_settings()
        opened = open_initial(file, self.settings.last_file)  # a bad FILE raises StoryError
        self._startup_notices = ([settings_notice] if settings_notice else []) + opened.notices
        self.notices: list[str] = []  # every one-line notice shown, oldest first
        self.path: Path | None = opened.path
        self.saved: Story | None = opened.saved
        self.autosaved: Story | None = opened.story
        self._initial = opened.story
        self.prompt = opened.story.prompt
        self.memory = opened.story.memory
        self.continuations = ContinuationLog()
        self.autosave_seconds = autosave_seconds
        self.cursor_blink = cursor_blink
        self.generator = None  # storytui.generation.Generator once loaded
        self.model_path: Path | None = None
        self.model_state = LOADING
        self.model_error: str | None = None
        self.sampling = None  # storytui.sampling.SamplingSettings once imported
        self.job: Job | None = None
        self.last_stats = None
        self._job_ids = itertools.count(1)
        self._status_dirty = True
        self._autosave_error: str | None = None
        self._final_autosave = True

    # ------------------------------------------------------------------ layout and start

    def compose(self) -> ComposeResult:
        self._editor = StoryEditor(
            self._initial.text,
            on_writer_edit=self._writer_edit,
            id="story",
            placeholder="Start writing; F5 lets the model continue from the cursor.",
        )
        with Horizontal(id="body"):
            yield self._editor
            yield SidePanel(self.prompt, self.memory, id="panel")
        self._notice_line = Static("", id="notice")
        self._status_line = Static("", id="status")
        yield self._notice_line
        yield self._status_line
        yield Footer(compact=True)

    @property
    def editor(self) -> StoryEditor:
        return self._editor

    @property
    def panel(self) -> SidePanel:
        return self.query_one("#panel", SidePanel)

    def on_mount(self) -> None:
        editor = self.editor
        editor.cursor_blink = self.cursor_blink
        editor.move_cursor(editor.document.end)
        editor.focus()
        for notice in self._startup_notices:
            self._notice(notice)
        self._remember_file()
        self._load_model(None, first=True)
        self.set_interval(self.autosave_seconds, self._autosave_tick)
        self.set_interval(0.5, self._refresh_status_if_dirty)
        self._refresh_status()

    def _notice(self, text: str, severity: str = "warning", toast: bool = True) -> None:
        """A one-line message under the story that stays until replaced (and a toast)."""
        self.notices.append(text)
        self._notice_line.update(Content(text))
        self._notice_line.set_class(True, "-visible")
        if toast:
            self.notify(text, severity=severity, timeout=8, markup=False)

    def _clear_notice(self) -> None:
        self._notice_line.update("")
        self._notice_line.set_class(False, "-visible")

    # ------------------------------------------------------------------ model loading

    def _load_model(self, target: Path | None, first: bool = False) -> None:
        self.model_state = LOADING
        self._refresh_status()
        self.run_worker(
            partial(self._load_model_thread, target, first),
            thread=True,
            group="model",
            exit_on_error=False,
        )

    def _load_model_thread(self, target: Path | None, first: bool) -> None:
        """Runs in a thread: import torch, then load the checkpoint into a Generator."""
        import storytui.sampling  # noqa: F401  (imports torch: the slow part)

        if first:
            self.post_message(StackReady())
        from storytui.checkpoint import NO_MODEL_HINT, load_checkpoint, resolve_model
        from storytui.session import generator_for

        notice = None
        try:
            if target is None:
                try:
                    target = resolve_model(self.settings.model)
                except StoryError as exc:
                    if not self.settings.model:
                        raise
                    notice = f"{exc}; using the best available model instead"
                    target = resolve_model(None)
            generator = generator_for(load_checkpoint(target))
        except StoryError as exc:
            error = str(exc)
            if error == NO_MODEL_HINT:
                error, notice = None, NO_MODEL_HINT
            self.post_message(ModelLoaded(None, None, error, notice))
            return
        self.post_message(ModelLoaded(generator, Path(target), None, notice))

    def on_stack_ready(self, _message: StackReady) -> None:
        from storytui.sampling import PRESET_SETTINGS, SamplingSettings

        preset = self.settings.preset
        try:
            if self.settings.sampling:
                self.sampling = SamplingSettings.from_json(self.settings.sampling)
            else:
                self.sampling = PRESET_SETTINGS.get(preset, SamplingSettings())
        except (StoryError, TypeError, ValueError) as exc:
            self._notice(f"saved sampling settings were invalid ({exc}); using the defaults")
            self.sampling, preset = SamplingSettings(), "balanced"
        self.panel.show_sampling(self.sampling, preset, PRESET_SETTINGS)

    def on_model_loaded(self, message: ModelLoaded) -> None:
        if message.generator is not None:
            self.generator = message.generator
            self.model_path = message.path
            self.model_state = READY
            self.model_error = None
            self._clear_notice()
        elif self.generator is None:
            self.model_state = NO_MODEL
            self.model_error = message.error
        else:
            self.model_state = READY  # a failed switch keeps the model we had
        if message.notice:
            self._notice(message.notice, toast=message.generator is not None)
        if message.error:
            self._notice(message.error, severity="error")
        self._status_dirty = True
        self._refresh_status()
        self.refresh_bindings()

    # ------------------------------------------------------------------ generation

    def _why_not_generate(self) -> str | None:
        if self.job is not None:
            return "the model is already writing (Esc stops it)"
        if self.generator is None:
            if self.model_state == LOADING:
                return "the model is still loading"
            from storytui.checkpoint import NO_MODEL_HINT

            return self.model_error or NO_MODEL_HINT
        if self.sampling is None:
            return "the sampling settings are still loading"
        return None

    def action_continue(self) -> None:
        if reason := self._why_not_generate():
            self.notify(reason, severity="warning", markup=False)
            return
        continuation = self.continuations.begin(self.editor.cursor_index)
        self._start_job(continuation, continuation.variant, base="")

    def action_retry(self) -> None:
        continuation = self._target_or_say("nothing to retry: continue first (F5)")
        if continuation is not None:
            self._regenerate(continuation, Variant())

    def _target_or_say(self, message: str) -> Continuation | None:
        if reason := self._why_not_generate():
            self.notify(reason, severity="warning", markup=False)
            return None
        continuation = self.continuations.target(self.editor.cursor_index)
        if continuation is None:
            self.notify(message, severity="warning")
        return continuation

    def _regenerate(self, continuation: Continuation, variant: Variant) -> None:
        """Write a new variant (starting with ``variant``'s text) where ``continuation`` is."""
        base = self._detach(continuation)
        editor = self.editor
        start = continuation.start
        with editor.app_edit():
            editor.replace_span(start, start + len(base), variant.text)
        self.continuations.replaced(start, start + len(base), len(variant.text), owner=continuation)
        continuation.variants.append(variant)
        continuation.current = len(continuation.variants) - 1
        editor.move_cursor(editor.location_of(continuation.end))
        self._start_job(continuation, variant, base)

    def _start_job(self, continuation: Continuation, variant: Variant, base: str) -> None:
        editor = self.editor
        job = Job(next(self._job_ids), continuation, variant, base)
        self.job = job
        editor.read_only = True
        context = editor.text[: continuation.start] + variant.text
        self.run_worker(
            partial(
                self._generate_thread,
                job,
                self.generator,
                context,
                self.sampling,
                self.prompt,
                self.memory,
            ),
            thread=True,
            group="generate",
            exit_on_error=False,
        )
        self._refresh_marks()
        self._refresh_status()
        self.refresh_bindings()

    def _generate_thread(self, job: Job, generator, context, settings, prompt, memory) -> None:
        """Runs in a thread: queue each token for the UI thread, in order."""
        error = None
        try:
            for event in generator.stream_events(
                context, settings, prompt=prompt, memory=memory, cancel=job.cancel
            ):
                job.pending.append(event)
                if not job.woken.is_set():
                    job.woken.set()
                    self.post_message(TokensReady(job.id))
        except StoryError as exc:
            error = str(exc)
        except Exception as exc:  # a model failure must not take the writer's text down
            error = f"generation failed: {type(exc).__name__}: {exc}"
        self.post_message(GenerationDone(job.id, dataclasses.replace(generator.last_stats), error))

    def on_tokens_ready(self, message: TokensReady) -> None:
        job = self.job
        if job is not None and message.job_id == job.id:
            self._drain(job)

    def _drain(self, job: Job) -> None:
        """Put every queued token into the story with one edit."""
        job.woken.clear()  # before draining: a token queued after this posts a new wake-up
        continuation, variant = job.continuation, job.variant
        at = continuation.start + len(variant.text)
        pieces = []
        while job.pending:
            event = job.pending.popleft()
            text = job.normalizer.push(event.text)
            variant.add(text, event.prob, event.token, event.alternatives)
            pieces.append(text)
        text = "".join(pieces)
        if text:
            editor = self.editor
            with editor.app_edit(follow=editor.cursor_index == at):
                editor.replace_span(at, at, text)
            self.continuations.replaced(at, at, len(text), owner=continuation)
            self._refresh_marks()
            self._status_dirty = True

    def on_generation_done(self, message: GenerationDone) -> None:
        job = self.job
        if job is None or message.job_id != job.id:
            return
        self._drain(job)
        self.job = None
        self._commit(job.continuation, job.base, shown=job.continuation.text)
        self.editor.read_only = False
        self.last_stats = message.stats
        job.variant.seed = message.stats.seed
        self.panel.show_last_seed(message.stats.seed)
        if message.error:
            self._notice(message.error, severity="error")
        self._refresh_marks()
        self._status_dirty = True
        self._refresh_status()
        self.refresh_bindings()

    def action_stop(self) -> None:
        if self.job is not None:
            self.job.cancel.set()
        else:
            self.editor.focus()

    # ------------------------------------------------------------------ undo history upkeep

    def _detach(self, continuation: Continuation) -> str:
        """Take ``continuation``'s text out of the undo history if nothing was edited since.

        Returns the text the history now expects at the continuation's start: "" when its undo
        step could be taken back, else the shown variant (which is then replaced as one step).
        """
        editor = self.editor
        entry = continuation.history_entry
        continuation.history_entry = None
        if entry is not None and editor.undo_entry_on_top(entry):
            end = continuation.end
            editor.undo_quietly()
            self.continuations.replaced(continuation.start, end, 0, owner=continuation)
            return ""
        return continuation.text

    def _commit(self, continuation: Continuation, base: str, shown: str) -> None:
        """Make the current variant one undo step that replaces ``base``.

        ``shown`` is what the text holds at the continuation's start now (written outside the
        history); it is swapped back to ``base`` first so the history stays true to the text.
        """
        editor = self.editor
        text = continuation.text
        if text == base:
            return
        start = continuation.start
        selection = editor.selection
        if shown != base:
            with editor.app_edit(follow=False):
                editor.replace_span(start, start + len(shown), base)
        with editor.app_edit(record=True, follow=False):
            editor.history.checkpoint()
            continuation.history_entry = editor.replace_span(start, start + len(base), text)
            editor.history.checkpoint()
        editor.selection = selection

    def _show_variant(self, continuation: Continuation, index: int) -> None:
        base = self._detach(continuation)
        continuation.current = index
        self._commit(continuation, base, shown=base)
        start = continuation.start
        self.continuations.replaced(
            start, start + len(base), len(continuation.text), owner=continuation
        )
        self.editor.move_cursor(self.editor.location_of(continuation.end))

    # ------------------------------------------------------------------ alternatives

    def _cycle(self, step: int) -> None:
        if self.job is not None:
            self.notify("stop the model first (Esc)", severity="warning")
            return
        continuation = self.continuations.target(self.editor.cursor_index)
        if continuation is None or len(continuation.variants) < 2:
            self.notify("no other alternatives here: ctrl+r writes one", severity="warning")
            return
        self._show_variant(continuation, (continuation.current + step) % len(continuation.variants))
        self._refresh_marks()
        self._refresh_status()

    def action_previous_alternative(self) -> None:
        self._cycle(-1)

    def action_next_alternative(self) -> None:
        self._cycle(+1)

    def action_keep(self) -> None:
        if self.job is not None:
            self.notify("stop the model first (Esc)", severity="warning")
            return
        kept = self.continuations.keep_all()
        self.notify(
            f"kept {kept} continuation{'s' if kept != 1 else ''}" if kept else "nothing to keep"
        )
        self._refresh_marks()
        self.refresh_bindings()

    @work(group="dialog", exclusive=True)
    async def action_token_alternatives(self) -> None:
        if self.job is not None:
            self.notify("stop the model first (Esc)", severity="warning")
            return
        found = self.continuations.token_at(self.editor.cursor_index)
        if found is None:
            self.notify("put the cursor on highlighted generated text", severity="warning")
            return
        continuation, index = found
        token = continuation.variant.tokens[index]
        if not token.alternatives:
            self.notify("the model recorded no alternatives for this token", severity="warning")
            return
        choice = await self.push_screen_wait(
            TokenAlternatives(token.text, token.prob, token.alternatives)
        )
        if (
            choice is None
            or self._why_not_generate()
            or continuation not in self.continuations.live
        ):
            return
        alternative = token.alternatives[choice]
        replacement = GeneratedToken(
            0,
            normalize_newlines(alternative.text),
            alternative.prob,
            alternative.token,
            token.alternatives,
        )
        self._regenerate(continuation, continuation.variant.branch(index, replacement))

    def action_toggle_probabilities(self) -> None:
        self.settings.show_probabilities = not self.settings.show_probabilities
        self._save_settings()
        self._refresh_marks()
        if self.settings.show_probabilities:
            self.notify(PROBABILITY_LEGEND)

    # ------------------------------------------------------------------ writer's edits

    def _writer_edit(self, old: str, new: str) -> None:
        self.continuations.writer_edit(old, new)
        self._refresh_marks()
        self._status_dirty = True
        self.refresh_bindings()

    def _refresh_marks(self) -> None:
        self.editor.set_marks(self.continuations.marks(self.settings.show_probabilities))

    @on(TextArea.SelectionChanged, "#story")
    def _cursor_moved(self) -> None:
        self._status_dirty = True

    @on(SidePanel.StoryFieldsChanged)
    def _story_fields_changed(self, message: SidePanel.StoryFieldsChanged) -> None:
        self.prompt, self.memory = message.prompt, message.memory
        self._status_dirty = True

    @on(SidePanel.SamplingChanged)
    def _sampling_changed(self, message: SidePanel.SamplingChanged) -> None:
        self.sampling = message.settings
        self.settings.sampling = message.settings.to_json()
        self.settings.preset = message.preset
        self._save_settings()

    def _save_settings(self) -> None:
        try:
            save_settings(self.settings)
        except StoryError as exc:
            self._notice(f"settings not saved: {exc}", severity="error")

    # ------------------------------------------------------------------ the story and its files

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
        self.prompt, self.memory = opened.story.prompt, opened.story.memory
        self.continuations.clear()
        editor = self.editor
        editor.load_text(opened.story.text)
        editor.move_cursor(editor.document.end)
        self.panel.set_story_fields(self.prompt, self.memory)
        self._clear_notice()
        for notice in opened.notices:
            self._notice(notice)
        self._remember_file()
        self._refresh_marks()
        self._token_counts = None
        self._status_dirty = True
        self._refresh_status()
        self.refresh_bindings()
        editor.focus()

    @work(group="dialog", exclusive=True)
    async def action_quit(self) -> None:
        if self.job is not None:
            self.job.cancel.set()
        if not await self._settle_unsaved("quitting"):
            return
        self._autosave()  # the draft, or a stale recovery copy removed
        self._final_autosave = False
        self.exit()

    def on_unmount(self) -> None:
        if self.job is not None:
            self.job.cancel.set()
        if self._final_autosave:
            # on failure the last autosave, at most a few seconds old, is on disk
            with contextlib.suppress(StoryError):
                autosave(self.path, self.current_story(), self.saved)

    # ------------------------------------------------------------------ panel, model, help

    def action_toggle_panel(self) -> None:
        panel = self.panel
        panel.toggle_class("-visible")
        if panel.has_class("-visible"):
            panel.scroll_home(animate=False)
            self.query_one("#prompt").focus(scroll_visible=False)
        else:
            self.editor.focus()

    def action_pick_model(self) -> None:
        if self.job is not None:
            self.notify("stop the model first (Esc)", severity="warning")
            return
        if self.sampling is None:
            self.notify("the model stack is still loading", severity="warning")
            return
        from storytui.checkpoint import NO_MODEL_HINT, list_checkpoints

        self.push_screen(
            ModelPicker(list_checkpoints(), self.model_path, NO_MODEL_HINT), self._model_picked
        )

    def _model_picked(self, path: Path | None) -> None:
        if path is None or path == self.model_path:
            return
        self.settings.model = "default" if path == paths.bundled_model_dir() else path.name
        self._save_settings()
        self._load_model(path)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide what cannot apply now, so the footer shows what the writer can do."""
        generating = self.job is not None
        if action == "stop":
            return generating
        if action == "continue":
            return not generating
        if action in (
            "retry",
            "previous_alternative",
            "next_alternative",
            "keep",
            "token_alternatives",
        ):
            return bool(self.continuations.live) and not generating
        return True

    def get_system_commands(self, screen: Screen):
        """The command palette: every action from the key table, then Textual's own."""
        ours = {command.label.lower() for command in COMMANDS} | {"quit", "keys"}
        for command in COMMANDS:
            yield SystemCommand(
                command.label, command.help, partial(self.run_action, command.action)
            )
        yield SystemCommand("Undo", "Undo typing, or a whole continuation", self.editor.action_undo)
        yield SystemCommand("Redo", "Redo what was undone", self.editor.action_redo)
        for command in super().get_system_commands(screen):
            if command.title.lower() not in ours:
                yield command

    # ------------------------------------------------------------------ status bar

    def _refresh_status_if_dirty(self) -> None:
        if self._status_dirty:
            self._refresh_status()

    def _refresh_status(self) -> None:
        self._status_dirty = False
        self._status_line.update(self.status_text())

    def status_text(self) -> str:
        editor = self.editor
        text = editor.text
        parts = [self._file_status()]
        if self.generator is not None and self.model_state == READY:
            name = getattr(self.generator, "checkpoint_name", "model")
            parts.append(f"{name} · {'writing…' if self.job else READY}")
        else:
            parts.append(self.model_state)
        counts = self._count_tokens(text, editor.cursor_index)
        if counts is not None and self.generator is not None:
            context, total = counts
            block = self.generator.block_size
            cut = f", {context - block} cut" if context > block else ""
            parts.append(f"ctx {min(context, block)}/{block}{cut}")
        else:
            total = None
        if self.last_stats is not None:
            parts.append(f"{self.last_stats.tokens_per_second:.1f} tok/s")
        words = f"{len(text.split())} words"
        parts.append(words + (f" · {total} tokens" if total is not None else ""))
        continuation = self.continuations.target(editor.cursor_index)
        if continuation is not None and len(continuation.variants) > 1:
            parts.append(f"alt {continuation.current + 1}/{len(continuation.variants)}")
        return " │ ".join(parts)

    def _file_status(self) -> str:
        if self.path is None:
            state = "autosaved" if self.current_story() == self.autosaved else "autosaving…"
            return f"draft · {state}"
        return f"{self.path.name} · {'modified' if self.modified else 'saved'}"

    def _count_tokens(self, text: str, cursor: int) -> tuple[int, int] | None:
        """(tokens the model would see for a continuation here, tokens in the story)."""
        if self.generator is None:
            return None
        head, before = self.generator.context_ids(text[:cursor], self.prompt, self.memory)
        total = len(before) if cursor >= len(text) else len(self.generator.tokenizer.encode(text))
        return len(head) + len(before), total


def run_app(file: Path | None) -> None:
    """``storytui [FILE]``: open the app (a FILE that cannot be read raises StoryError)."""
    StoryApp(file).run()
