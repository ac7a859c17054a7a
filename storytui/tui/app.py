"""storytui's co-writing app: a story editor where a small language model writes along.

The editor is usable at once: torch and the model load in a background thread while the writer
types (``model_loader``). Continuations stream from a thread worker into the editor at the
cursor (``cowriter``); whenever the writer pauses, the story up to the cursor is encoded ahead
so that F5 answers at once (``encode_ahead``); files are saved, autosaved and recovered by
``file_actions``; ctrl+f finds and replaces in the story (``find_bar``). This module wires them
to the screen: layout, keys, panel, model picker, help and the status bar.

Nothing here imports torch at module level: ``storytui.sampling``, ``storytui.checkpoint`` and
``storytui.session`` are imported by the loader thread, and by the UI thread only after that.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from textual import on, work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.screen import Screen
from textual.widgets import Static, TextArea

from storytui import paths
from storytui.errors import StoryError
from storytui.tui.commands import COMMANDS, FIND_BAR_COMMANDS, bindings_for, run_anyway
from storytui.tui.continuations import (
    PROBABILITY_BUCKETS,
    Continuation,
    ContinuationLog,
    HistoryStep,
)
from storytui.tui.cowriter import CoWriter, GenerationDone, Job, TokensReady, stream_into
from storytui.tui.dialogs import TokenAlternatives, whole_alternatives
from storytui.tui.editor import StoryEditor
from storytui.tui.encode_ahead import EncodeAhead
from storytui.tui.file_actions import FileActions
from storytui.tui.find import Span
from storytui.tui.find_bar import FindBar
from storytui.tui.footer import StoryFooter
from storytui.tui.help import HelpScreen
from storytui.tui.model_loader import ModelLoaded, StackReady, load_in_thread
from storytui.tui.model_picker import ModelPicker
from storytui.tui.sampling_panel import SidePanel
from storytui.tui.settings_store import load_settings, save_settings
from storytui.tui.status_line import StatusLine, StatusPart, join_parts
from storytui.tui.story_files import OpenedStory, Story, open_initial

LOADING, READY, NO_MODEL = "loading model…", "ready", "no model"
STOP_FIRST = "stop the model first (Esc)"
CONTINUE_FIRST = "press F5 to continue the story"
DRAWS_PER_SECOND = 20  # how often streamed tokens are put on screen
COUNT_IN_THREAD_CHARS = 100_000  # longer stories are counted off the UI thread
# How F8 shows each probability bucket: (in colour, under NO_COLOR). Textual turns colours to
# greys under NO_COLOR, so the stylesheet then adds the text styles named here.
PROBABILITY_LOOKS = {
    "prob-high": ("green", "plain"),
    "prob-mid": ("yellow", "underlined"),
    "prob-low": ("orange", "bold underlined"),
    "prob-rare": ("red", "reversed"),
}


def probability_legend(no_color: bool) -> str:
    """The F8 legend in the words of what the writer sees: colours, or under NO_COLOR the text
    styles (naming colours that show as greys would tell nothing)."""
    *buckets, (_, rare) = PROBABILITY_BUCKETS
    looks = [f"{PROBABILITY_LOOKS[kind][no_color]} ≥{floor:.0%}" for floor, kind in buckets]
    looks.append(f"{PROBABILITY_LOOKS[rare][no_color]} <{buckets[-1][0]:.0%}")
    return f"token {'marks' if no_color else 'colours'}: {', '.join(looks)} likely"


def _bindings() -> list[Binding]:
    """App key bindings from the command table.

    Tab and shift+tab stay Textual's own (the screen's), not priority bindings: a priority tab
    moves focus before the keys ahead of it in a burst are handled, and a field's ctrl+u typed
    just before it then reached the story's binding instead (deleting a line of the story).
    """
    return bindings_for(COMMANDS)


class StoryApp(FileActions, App[None]):
    """The co-writing app; ``file`` None reopens the last story (or the draft)."""

    CSS_PATH = paths.stylesheet_path()
    TITLE = "storytui"
    BINDINGS = _bindings()

    def __init__(
        self,
        file: Path | None = None,
        *,
        autosave_seconds: float = 3.0,
        watch_seconds: float = 1.0,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.settings, settings_notice = load_settings()
        opened = open_initial(file, self.settings.last_file)  # a bad FILE raises StoryError
        self._settings_notice = settings_notice
        self._startup_notices = opened.notices  # about the file: a save makes them old news
        self.notices: list[str] = []  # every one-line notice shown, oldest first
        self.path: Path | None = opened.path
        self.saved: Story | None = opened.saved
        self.autosaved: Story | None = opened.story
        self._initial = opened.story
        self.prompt = opened.story.prompt
        self.memory = opened.story.memory
        self.autosave_seconds = autosave_seconds
        self.watch_seconds = watch_seconds  # how often the open file is checked for changes
        self.cursor_blink = cursor_blink
        self.generator = None  # storytui.generation.Generator once loaded
        self.model_path: Path | None = None
        self._model_request = 0  # the latest load asked for; only its answer is used
        self.model_state = LOADING
        self.model_error: str | None = None
        self.sampling = None  # storytui.sampling.SamplingSettings once imported
        self.last_stats = None
        self._status_dirty = True
        self._counts: tuple[tuple, StoryCounts] | None = None  # (what was counted, the counts)
        self._notice_topic = ""
        self._writing_with = ""  # the model the running job writes with
        self._model_notices: set[str] = set()
        self._last_draw = 0.0
        self._bindings_state: tuple[bool, bool] | None = None  # as the footer last heard it
        self.encode_ahead = EncodeAhead(self)

    # ------------------------------------------------------------------ layout and start

    def compose(self) -> ComposeResult:
        self._editor = StoryEditor(
            self._initial.text,
            on_writer_edit=self._writer_edit,
            id="story",
            placeholder="Start writing; F5 lets the model continue from the cursor.",
        )
        self.cowriter = CoWriter(self._editor)
        with Horizontal(id="body"):
            yield self._editor
            yield SidePanel(self.prompt, self.memory, id="panel")
        self.find_bar = FindBar(self._editor, self._replace_found, id="find-bar")
        yield self.find_bar
        self._notice_line = Static("", id="notice")
        self._status_line = StatusLine(id="status")
        yield self._notice_line
        yield self._status_line
        yield StoryFooter(compact=True)

    @property
    def editor(self) -> StoryEditor:
        return self._editor

    @property
    def job(self) -> Job | None:
        """The continuation being written, if any."""
        return self.cowriter.job

    @property
    def continuations(self) -> ContinuationLog:
        return self.cowriter.continuations

    @property
    def panel(self) -> SidePanel:
        return self.query_one("#panel", SidePanel)

    def on_mount(self) -> None:
        editor = self.editor
        editor.cursor_blink = self.cursor_blink
        editor.move_cursor(editor.document.end)
        editor.focus()
        if self._settings_notice:
            self._notice(self._settings_notice)
        for notice in self._startup_notices:
            self._notice(notice, topic="file")
        self._remember_file()
        self._load_model(None, first=True)
        self.set_interval(self.autosave_seconds, self._autosave_tick)
        self.set_interval(self.watch_seconds, self._watch_tick)
        self.set_interval(0.5, self._refresh_status_if_dirty)
        self._refresh_status()

    def _notice(
        self, text: str, severity: str = "warning", toast: bool = True, topic: str = ""
    ) -> None:
        """A one-line message under the story that stays until replaced, or until what it is
        about (``topic``: "file", "generation", ...) goes right; errors also get a toast."""
        self.notices.append(text)
        self._notice_topic = topic
        self._notice_line.update(Content(text))
        self._notice_line.set_class(True, "-visible")
        if toast and severity == "error":
            self.notify(text, severity=severity, timeout=8, markup=False)

    def _clear_notice(self, topic: str | None = None) -> None:
        """Remove the message line; with ``topic``, only a message about that."""
        if topic is not None and topic != self._notice_topic:
            return
        self._notice_topic = ""
        self._notice_line.update("")
        self._notice_line.set_class(False, "-visible")

    @property
    def _closing_down(self) -> bool:
        """True once the screens are gone: a late message from a thread has nothing to update."""
        return not self.screen_stack

    # ------------------------------------------------------------------ model loading

    def _load_model(self, target: Path | None, first: bool = False) -> None:
        """Load in a thread; a load asked for later supersedes this one (threads cannot be
        stopped, so its answer is dropped when it comes)."""
        self._model_request += 1
        self.model_state = LOADING
        self._refresh_status()
        load = partial(load_in_thread, target, self.settings.model, first, self.post_message)
        self.run_worker(
            partial(load, request=self._model_request),
            thread=True,
            group="model",
            exit_on_error=False,
        )

    def on_stack_ready(self, _message: StackReady) -> None:
        if self._closing_down:
            return
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
        self.encode_ahead.schedule()

    def on_model_loaded(self, message: ModelLoaded) -> None:
        if self._closing_down or message.request != self._model_request:
            return  # a superseded load: the writer has picked another model since
        if message.generator is not None:
            self.generator = message.generator
            self.model_path = message.path
            self.model_state = READY
            self.model_error = None
            if self.notices and self.notices[-1] in self._model_notices:
                self._clear_notice()  # an old "no model" or load error no longer applies
        elif self.generator is None:
            self.model_state = NO_MODEL
            self.model_error = message.error
        else:
            self.model_state = READY  # a failed switch keeps the model we had
        for text, severity in ((message.notice, "warning"), (message.error, "error")):
            if text:
                self._model_notices.add(text)
                self._notice(text, severity=severity, toast=text != self._no_model_hint())
        self._status_dirty = True
        self._refresh_status()
        self._refresh_bindings()
        self.encode_ahead.schedule()

    # ------------------------------------------------------------------ generation

    @staticmethod
    def _no_model_hint() -> str:
        from storytui.checkpoint import NO_MODEL_HINT  # torch is loaded by the time it is needed

        return NO_MODEL_HINT

    def _why_not_generate(self) -> str | None:
        if self.job is not None:
            return "the model is already writing (Esc stops it)"
        if self.generator is None:
            if self.model_state == LOADING:
                return "the model is still loading"
            return self.model_error or self._no_model_hint()
        if self.sampling is None:
            return "the sampling settings are still loading"
        return None

    def action_continue(self) -> None:
        if reason := self._why_not_generate():
            self.notify(reason, severity="warning", markup=False)
            return
        self._run(self.cowriter.start_at_cursor())

    def action_retry(self) -> None:
        if self._said_why_not_rework("nothing to retry"):
            return
        if reason := self._why_not_generate():
            self._warn(reason)
            return
        continuation = self._target_or_say()
        if continuation is not None:
            self._run(self.cowriter.start_retry(continuation))

    @property
    def _can_rework(self) -> bool:
        """Retry, F3/F4, keep and F9 apply: a continuation is marked and the model is idle."""
        return self.job is None and bool(self.continuations.live)

    def _said_why_not_rework(self, nothing: str) -> bool:
        """Say why retry, F3/F4, keep or F9 cannot act now, all in the same words (``nothing``
        names what is missing: "nothing to retry"); True if they cannot."""
        if self._can_rework:
            return False
        if self.job is not None:
            self._warn(STOP_FIRST)
        elif (no_model := self._why_not_generate()) is not None:  # F5 would not work either
            self._warn(f"{nothing}, and {no_model}")
        else:
            self._warn(f"{nothing}: {CONTINUE_FIRST}")
        return True

    def _warn(self, message: str) -> None:
        self.notify(message, severity="warning", markup=False)

    def _target_or_say(self) -> Continuation | None:
        """The continuation at the cursor, or None once the writer is told where they are."""
        continuation = self.continuations.target(self.editor.cursor_index)
        if continuation is None:
            line = self.editor.location_of(self.continuations.live[-1].start)[0] + 1
            self._warn(f"put the cursor in a continuation first (the latest starts on line {line})")
        return continuation

    def _run(self, job: Job) -> None:
        """Start the generation thread for a job the co-writer has set up."""
        self.encode_ahead.cancel()  # the job encodes its own context; don't make it wait
        self._writing_with = getattr(self.generator, "checkpoint_name", "model")
        self.run_worker(
            partial(
                stream_into,
                job,
                self.generator,
                self.sampling,
                self.prompt,
                self.memory,
                self.post_message,
            ),
            thread=True,
            group="generate",
            exit_on_error=False,
        )
        self._refresh_marks()
        self._refresh_status()
        self._refresh_bindings()

    def on_tokens_ready(self, message: TokensReady) -> None:
        """Show queued tokens, at most ``DRAWS_PER_SECOND`` times a second.

        Each draw re-renders the editor; drawing every token of a fast model would take CPU
        from the model itself. Until the queue is drained no further wake-up is posted.
        """
        wait = self._last_draw + 1 / DRAWS_PER_SECOND - time.monotonic()
        if wait > 0:
            self.set_timer(wait, partial(self._draw_tokens, message.job_id))
        else:
            self._draw_tokens(message.job_id)

    def _draw_tokens(self, job_id: int) -> None:
        if self.job is None or self.job.id != job_id or self._closing_down:
            return
        self._last_draw = time.monotonic()
        if self.cowriter.drain():
            self._refresh_marks()
            self._status_dirty = True

    def on_generation_done(self, message: GenerationDone) -> None:
        if self.job is None or message.job_id != self.job.id or self._closing_down:
            return
        self.cowriter.finish(message.stats.seed)
        self.editor.type_ahead_in()
        self.last_stats = message.stats
        self.panel.show_last_seed(message.stats.seed)
        if message.error:
            self._notice(message.error, severity="error", topic="generation")
        else:
            self._clear_notice("generation")
        self._refresh_marks()
        self._refresh_status()
        self._refresh_bindings()
        self.encode_ahead.schedule()

    def on_story_editor_typed_ahead(self, message: StoryEditor.TypedAhead) -> None:
        """The writer types while the model writes: the model stops, the typing goes in."""
        if self.job is not None and not self.job.cancel.is_set():
            self.cowriter.stop()

    def action_stop(self) -> None:
        """Esc: stop the model; while it is not writing, back to the story (from the panel)."""
        if self.job is not None:
            self.cowriter.stop()
        else:
            self.editor.focus()

    async def action_run_anyway(self, action: str) -> None:
        """The key of an action that does not apply now (the footer leaves it out, Textual
        refuses it): run it all the same, for it to say why, or to do what is left to do."""
        result = getattr(self, f"action_{action}")()
        if inspect.isawaitable(result):
            await result

    # ------------------------------------------------------------------ alternatives

    def _cycle(self, step: int) -> None:
        if self._said_why_not_rework("no alternatives to show"):
            return
        continuation = self._target_or_say()
        if continuation is None:
            return
        if len(continuation.variants) < 2:
            self._warn("no other alternatives here: ctrl+r writes one")
            return
        self.cowriter.cycle(continuation, step)
        self._refresh_marks()
        self._refresh_status()

    def action_previous_alternative(self) -> None:
        self._cycle(-1)

    def action_next_alternative(self) -> None:
        self._cycle(+1)

    def action_keep(self) -> None:
        if self._said_why_not_rework("nothing to keep"):
            return
        kept = self.continuations.keep_all()
        self.notify(f"kept {kept} continuation{'s' if kept != 1 else ''}")
        self._refresh_marks()
        self._refresh_bindings()

    @work(group="dialog", exclusive=True)
    async def action_token_alternatives(self) -> None:
        if self._said_why_not_rework("no generated text"):
            return
        found = self.continuations.token_at(self.editor.cursor_index)
        if found is None:
            self.notify("put the cursor on highlighted generated text", severity="warning")
            return
        continuation, index = found
        token = continuation.variant.tokens[index]
        offered = whole_alternatives(token.alternatives)
        if not offered:
            self.notify(
                "the model recorded no alternatives for this token"
                if not token.alternatives
                else "the model wrote this character byte by byte: no whole alternatives here",
                severity="warning",
            )
            return
        choice = await self.push_screen_wait(
            TokenAlternatives(token.text, token.prob, tuple(alt for _, alt in offered))
        )
        if (
            choice is not None
            and not self._why_not_generate()
            and continuation in self.continuations.live
        ):
            self._run(self.cowriter.start_from_token(continuation, index, offered[choice][0]))

    def action_toggle_probabilities(self) -> None:
        self.settings.show_probabilities = not self.settings.show_probabilities
        self._save_settings()
        self._refresh_marks()
        if self.settings.show_probabilities:
            self.notify(probability_legend(self.no_color))

    # ------------------------------------------------------------------ writer's edits

    def _writer_edit(self, old: str, new: str, step: HistoryStep | None) -> None:
        self.continuations.writer_edit(old, new, step)
        self._after_writer_edit()

    def _replace_found(self, spans: Sequence[Span], replacement: str) -> str | None:
        """The find bar's replace, as the writer's edit: one undo step, every continuation
        it does not touch kept where it is; refused (the reason returned) while the model
        writes, as the text is the model's until it stops."""
        if self.job is not None:
            return "the model is writing: stop it first (Esc in the story), then replace"
        entry = self.editor.replace_spans(spans, replacement)
        size = len(replacement)
        self.continuations.writer_replaced([(s, e - s, size) for s, e in spans], entry)
        self._after_writer_edit()
        return None

    def _after_writer_edit(self) -> None:
        self._refresh_marks()
        self._status_dirty = True
        self._refresh_bindings(changed_only=True)
        self.encode_ahead.schedule()

    def _refresh_marks(self) -> None:
        self.editor.set_marks(self.continuations.marks(self.settings.show_probabilities))

    @on(TextArea.Changed, "#story")
    def _story_changed(self) -> None:
        self.find_bar.story_changed()

    @on(TextArea.SelectionChanged, "#story")
    def _cursor_moved(self) -> None:
        self._status_dirty = True
        self.encode_ahead.schedule()

    @on(SidePanel.StoryFieldsChanged)
    def _story_fields_changed(self, message: SidePanel.StoryFieldsChanged) -> None:
        self.prompt, self.memory = message.prompt, message.memory
        self._status_dirty = True
        self.encode_ahead.schedule()

    @on(SidePanel.SamplingChanged)
    def _sampling_changed(self, message: SidePanel.SamplingChanged) -> None:
        self.sampling = message.settings
        self.settings.sampling = message.settings.to_json()
        self.settings.preset = message.preset
        self._save_settings()
        self.encode_ahead.schedule()

    def _save_settings(self) -> None:
        try:
            save_settings(self.settings)
        except StoryError as exc:
            self._notice(f"settings not saved: {exc}", severity="error")

    def _show_story(self, opened: OpenedStory, cursor: int | None = None) -> None:
        """Put a freshly opened (or reloaded) story on screen, the files already settled;
        ``cursor`` is where the cursor goes (None: the end)."""
        self.prompt, self.memory = opened.story.prompt, opened.story.memory
        self.continuations.clear()
        editor = self.editor
        editor.load_text(opened.story.text)
        editor.move_cursor(editor.document.end if cursor is None else editor.location_of(cursor))
        self.panel.set_story_fields(self.prompt, self.memory)
        self._clear_notice()
        for notice in opened.notices:
            self._notice(notice, topic="file")
        self._refresh_marks()
        self._refresh_status()
        self._refresh_bindings()
        editor.focus()

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
        if path is None:
            return
        self.settings.model = "default" if path == paths.bundled_model_dir() else path.name
        self._save_settings()
        if path != self.model_path:
            self._load_model(path)
            return
        name = getattr(self.generator, "checkpoint_name", path.name)
        if self.model_state == LOADING:  # back to this one while another loads: that is dropped
            self._model_request += 1
            self.model_state = READY
            self._refresh_status()
            self.notify(f"keeping {name}", markup=False)
        else:
            self.notify(f"{name} is the model in use already", markup=False)

    def action_find(self) -> None:
        self.find_bar.open()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        """Hide what cannot apply now, so the footer shows what the writer can do."""
        generating = self.job is not None
        if action == "find":  # not over a dialog; in the bar, ctrl+f is the bar's own
            bar = self.find_bar
            return self.screen is bar.screen and not bar.has_focus_within
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
            return self._can_rework
        return True

    def _bindings_state_now(self) -> tuple[bool, bool]:
        """What ``check_action`` answers from, but for focus and screens (Textual refreshes the
        bindings itself when those change)."""
        return self.job is not None, self._can_rework

    def _refresh_bindings(self, changed_only: bool = False) -> None:
        """Have the footer show the keys that apply now. A refresh composes the footer anew,
        too much for every keystroke: with ``changed_only`` (the writer's edits) it happens only
        if what ``check_action`` answers from has changed since the last one."""
        state = self._bindings_state_now()
        if changed_only and state == self._bindings_state:
            return
        self._bindings_state = state
        self.refresh_bindings()

    def get_system_commands(self, screen: Screen):
        """The command palette: every action from the key table, then Textual's own."""
        ours = {command.label.lower() for command in COMMANDS + FIND_BAR_COMMANDS}
        ours |= {"quit", "keys"}
        for command in COMMANDS:
            action = run_anyway(command.action) if command.runs_anyway else command.action
            yield SystemCommand(command.label, command.help, partial(self.run_action, action))
        for command in FIND_BAR_COMMANDS:
            yield SystemCommand(
                command.label,
                command.help,
                partial(self.run_action, command.action, self.find_bar),
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
        self._status_line.show(self.status_parts())

    def status_text(self) -> str:
        """The whole status bar, as a terminal wide enough for all of it shows it."""
        return join_parts(self.status_parts())

    def status_parts(self) -> list[StatusPart]:
        """The status bar's parts in their order; ranked (0 first) by what a narrow terminal
        keeps longest: the file, the model, the alternative shown, then the numbers."""
        editor = self.editor
        parts = [StatusPart(self._file_status(), 0)]
        if self.job is not None:  # the model that writes, even while another one loads
            parts.append(StatusPart(f"{self._writing_with} · writing…", 1))
            if self.model_state != READY:
                parts.append(StatusPart(f"next: {self.model_state}", 3))
        elif self.generator is not None and self.model_state == READY:
            name = getattr(self.generator, "checkpoint_name", "model")
            parts.append(StatusPart(f"{name} · {READY}", 1))
        else:
            parts.append(StatusPart(self.model_state, 1))
        counts = self._story_counts(editor.text, editor.cursor_index)
        if counts.context is not None and self.generator is not None:
            seen, cut = counts.context
            dropped = f", {cut} cut" if cut > 0 else ""
            if counts.header_cut:  # the end of the prompt or memory does not reach the model
                dropped += f", end of {' and '.join(counts.header_cut)} cut"
            parts.append(StatusPart(f"ctx {seen}/{self.generator.block_size}{dropped}", 4))
        if self.last_stats is not None and self.last_stats.new_tokens:  # none: nothing timed
            stats = self.last_stats
            first = f"first {stats.first_token_seconds * 1000:.0f} ms"  # the wait after F5
            parts.append(StatusPart(f"{stats.tokens_per_second:.1f} tok/s · {first}", 6))
        if counts.words is not None:
            tokens = f" · {counts.tokens} tokens" if counts.tokens is not None else ""
            parts.append(StatusPart(f"{counts.words} words{tokens}", 5))
        continuation = self.continuations.target(editor.cursor_index)
        if continuation is not None and len(continuation.variants) > 1:
            alt = f"alt {continuation.current + 1}/{len(continuation.variants)}"
            parts.append(StatusPart(alt, 2))
        return parts

    def _story_counts(self, text: str, cursor: int) -> StoryCounts:
        """The status bar's counts for ``text``; a long story is counted in a thread (encoding
        5 MB takes a second), showing the last counts until the new ones are ready."""
        room = self.sampling.max_new_tokens if self.sampling else None
        inputs = (text, cursor, self.prompt, self.memory, room)
        key = (hash(text), len(text), *inputs[1:], id(self.generator))
        if self._counts is not None and self._counts[0] == key:
            return self._counts[1]
        if len(text) <= COUNT_IN_THREAD_CHARS:
            counts = self._count(*inputs)
            self._counts = (key, counts)
            return counts
        self._count_in_thread(key, inputs)
        return self._counts[1] if self._counts is not None else StoryCounts()

    @work(thread=True, group="status-counts", exclusive=True)
    def _count_in_thread(self, key: tuple, inputs: tuple) -> None:
        counts = self._count(*inputs)
        self.call_from_thread(self._counted, key, counts)

    def _counted(self, key: tuple, counts: StoryCounts) -> None:
        self._counts = (key, counts)
        self._status_dirty = True

    def _count(
        self, text: str, cursor: int, prompt: str, memory: str, room: int | None
    ) -> StoryCounts:
        words = len(text.split())
        tokens = self._count_tokens(text, cursor, prompt, memory, room)
        if tokens is None:
            return StoryCounts(words=words)
        seen, cut, total = tokens
        header_cut = (
            tuple(self.generator.conditioning_cut(prompt, memory)) if self.generator else ()
        )
        return StoryCounts(context=(seen, cut), words=words, tokens=total, header_cut=header_cut)

    def _file_status(self) -> str:
        if self.path is None:
            state = "autosaved" if self.current_story() == self.autosaved else "autosaving…"
            return f"draft · {state}"
        if self.saved is None and not self._disk_state:
            return f"{self.path.name} · new, not saved yet"
        state = "modified" if self.modified else "saved"
        return " · ".join(filter(None, (self.path.name, state, self._disk_state)))

    def _count_tokens(
        self, text: str, cursor: int, prompt: str, memory: str, room: int | None
    ) -> tuple[int, int, int] | None:
        """(tokens the model would see for a continuation here, tokens cut from their start to
        make room, tokens in the story)."""
        generator = self.generator
        if generator is None:
            return None
        head, before = generator.context_ids(text[:cursor], prompt, memory)
        healed, _ = generator.heal(before)  # trailing whitespace: the model writes it again
        fitted = generator.fit_context(head, healed, room or generator.block_size // 4)
        seen = len(fitted.head) + len(fitted.tail)
        total = len(before) if cursor >= len(text) else len(generator.tokenizer.encode(text))
        return seen, max(len(head) + len(healed) - seen, 0), total


@dataclass(frozen=True)
class StoryCounts:
    """What the status bar counts: tokens seen / cut for a continuation at the cursor, words
    and tokens in the story (None: not known yet)."""

    context: tuple[int, int] | None = None
    words: int | None = None
    tokens: int | None = None
    header_cut: tuple[str, ...] = ()  # "prompt", "memory": what lost its end to fit


def run_app(file: Path | None) -> None:
    """``storytui [FILE]``: open the app (a FILE that cannot be read raises StoryError)."""
    StoryApp(file).run()
