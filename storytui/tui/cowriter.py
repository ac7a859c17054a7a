"""Putting the model's text into the story: streaming, alternatives and the undo history.

``CoWriter`` owns the continuation record and the one running ``Job``. The generation thread
(``stream_into``) appends each ``TokenEvent`` to the job's queue and posts ``TokensReady`` only
when no wake-up is outstanding; the UI thread then drains the whole queue in one edit. So the
editor never falls behind the model, tokens arrive in order, none is lost or doubled, and after
Esc at most one more token arrives.

Streamed text is written outside the editor's undo history. When a continuation finishes (or
another alternative is shown) the text at its spot is swapped back to what the history expects
and the new text recorded as a single step, so ctrl+z removes a whole continuation at once and
the history always describes the real text.

A continuation written in mid-text ends the way prose does: when it stops against the next word
it gets a space of its own (its last token, so undo, retry and the alternatives take it along),
and one that ends in spaces before a space loses them; it never starts with a space the text
before it already has.
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from textual.message import Message

from storytui.errors import StoryError
from storytui.tui.continuations import (
    SEPARATOR,
    Continuation,
    ContinuationLog,
    GeneratedToken,
    NewlineNormalizer,
    Variant,
    needs_separator,
    normalize_newlines,
    trim_lead,
)
from storytui.tui.editor import StoryEditor


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
    """One continuation being written: where it goes, its token queue, how to stop it."""

    id: int
    continuation: Continuation
    variant: Variant
    base: int | None  # the variant the undo history expects at the start (None: no text)
    context: str  # the story the model continues
    previous: int | None = None  # a retry's: the variant shown before it (None: not a retry)
    cancel: threading.Event = field(default_factory=threading.Event)
    normalizer: NewlineNormalizer = field(default_factory=NewlineNormalizer)
    pending: deque = field(default_factory=deque)
    woken: threading.Event = field(default_factory=threading.Event)


def stream_into(
    job: Job, generator, settings, prompt: str, memory: str, post: Callable[[Message], object]
) -> None:
    """Runs in a thread: queue every token of ``job`` for the UI thread, in order."""
    error = None
    try:
        for event in generator.stream_events(
            job.context, settings, prompt=prompt, memory=memory, cancel=job.cancel
        ):
            job.pending.append(event)
            if not job.woken.is_set():
                job.woken.set()
                post(TokensReady(job.id))
    except StoryError as exc:
        error = str(exc)
    except Exception as exc:  # a model failure must not take the writer's text down
        error = f"generation failed: {type(exc).__name__}: {exc}"
    post(GenerationDone(job.id, dataclasses.replace(generator.last_stats), error))


class CoWriter:
    """Writes continuations into ``editor`` and keeps the record and undo history true."""

    def __init__(self, editor: StoryEditor) -> None:
        self.editor = editor
        self.continuations = ContinuationLog()
        self.job: Job | None = None
        self._job_ids = itertools.count(1)

    # ------------------------------------------------------------------ starting a job

    def start_at_cursor(self) -> Job:
        continuation = self.continuations.begin(self.editor.cursor_index)
        return self._start(continuation, continuation.variant, base=None)

    def start_retry(self, continuation: Continuation) -> Job:
        return self._rewrite(continuation, Variant())

    def start_from_token(self, continuation: Continuation, index: int, choice: int) -> Job:
        """Replace token ``index`` with its alternative ``choice`` and continue from there."""
        token = continuation.variant.tokens[index]
        alternative = token.alternatives[choice]
        text = normalize_newlines(alternative.text)
        if index == 0:
            text = trim_lead(text, self.editor.char_at(continuation.start - 1))
        replacement = GeneratedToken(
            0,
            text,
            alternative.prob,
            alternative.token,
            token.alternatives,
        )
        return self._rewrite(continuation, continuation.variant.branch(index, replacement))

    def _rewrite(self, continuation: Continuation, variant: Variant) -> Job:
        """A new variant (starting with ``variant``'s text) in place of the shown one."""
        previous = continuation.current
        base = self._detach(continuation)
        editor = self.editor
        start, end = continuation.start, continuation.start + len(continuation.text_of(base))
        with editor.app_edit():
            editor.replace_span(start, end, variant.text)
        self.continuations.replaced(start, end, len(variant.text), owner=continuation)
        continuation.variants.append(variant)
        continuation.current = len(continuation.variants) - 1
        editor.move_cursor(editor.location_of(continuation.end))
        return self._start(continuation, variant, base, previous)

    def _start(
        self, continuation: Continuation, variant: Variant, base: int | None, previous=None
    ) -> Job:
        context = self.editor.text[: continuation.start] + variant.text
        self.job = Job(next(self._job_ids), continuation, variant, base, context, previous)
        self.editor.read_only = True
        return self.job

    # ------------------------------------------------------------------ while it runs

    def drain(self) -> bool:
        """Put every queued token into the story with one edit; True if text was added."""
        job = self.job
        if job is None:
            return False
        job.woken.clear()  # before draining: a token queued after this posts a new wake-up
        continuation, variant = job.continuation, job.variant
        at = continuation.start + len(variant.text)
        pieces = []
        while job.pending:
            event = job.pending.popleft()
            text = job.normalizer.push(event.text)
            if not variant.text:
                text = trim_lead(text, self.editor.char_at(continuation.start - 1))
            variant.add(text, event.prob, event.token, event.alternatives)
            pieces.append(text)
        text = "".join(pieces)
        if not text:
            return False
        editor = self.editor
        with editor.app_edit(follow=editor.cursor_index == at):
            editor.replace_span(at, at, text)
        self.continuations.replaced(at, at, len(text), owner=continuation)
        return True

    def finish(self, seed: int) -> Job:
        """The thread is done: take the last tokens, record one undo step, unlock the editor."""
        job = self.job
        assert job is not None
        self.drain()
        if job.previous is not None and not job.variant.text:
            self._drop_empty_retry(job)
        elif not self.editor.typed_ahead:  # typed ahead, the writer's keys follow the last word
            self._meet_the_text_after(job.continuation)
        self.job = None
        job.variant.seed = seed
        self._commit(job.continuation, job.base, shown=job.continuation.text)
        self.editor.read_only = False
        return job

    def _drop_empty_retry(self, job: Job) -> None:
        """A retry stopped before its first word adds no empty alternative: the one shown
        before it is back, and the retry left nothing to undo."""
        continuation, editor = job.continuation, self.editor
        continuation.variants.remove(job.variant)
        continuation.current = job.previous
        start = continuation.start
        with editor.app_edit(follow=False):
            editor.replace_span(start, start, continuation.text)  # the retry's text: none
        self.continuations.replaced(start, start, len(continuation.text), owner=continuation)
        editor.move_cursor(editor.location_of(continuation.end))

    def _meet_the_text_after(self, continuation: Continuation) -> None:
        """Make a continuation's end meet the story after it as prose does: a space of its own
        before the next word ("the hallway and", not "the hallwayand"), none doubled."""
        editor = self.editor
        end = continuation.end
        following = editor.char_at(end)
        if needs_separator(continuation.text[-1:], following):
            continuation.variant.add_separator()
            with editor.app_edit(follow=editor.cursor_index == end):
                editor.replace_span(end, end, SEPARATOR)
            self.continuations.replaced(end, end, len(SEPARATOR), owner=continuation)
        elif following.isspace() and (dropped := continuation.variant.drop_trailing_spaces()):
            with editor.app_edit(follow=False):
                editor.replace_span(end - dropped, end, "")
            self.continuations.replaced(end - dropped, end, 0, owner=continuation)

    def stop(self) -> None:
        if self.job is not None:
            self.job.cancel.set()

    # ------------------------------------------------------------------ alternatives

    def cycle(self, continuation: Continuation, step: int) -> None:
        """Show the alternative ``step`` places on from the shown one."""
        index = (continuation.current + step) % len(continuation.variants)
        base = self._detach(continuation)
        continuation.current = index
        shown = continuation.text_of(base)
        self._commit(continuation, base, shown=shown)
        start = continuation.start
        self.continuations.replaced(
            start, start + len(shown), len(continuation.text), owner=continuation
        )
        self.editor.move_cursor(self.editor.location_of(continuation.end))

    # ------------------------------------------------------------------ undo history upkeep

    def _detach(self, continuation: Continuation) -> int | None:
        """Take ``continuation``'s text out of the undo history if nothing was edited since.

        Returns the variant the history now expects at the continuation's start: the one its
        undo step replaced when that step could be taken back (None: no text; or the variant
        shown before it when it replaced one: a retry after an edit elsewhere), else the shown
        variant (which is then replaced as one step). A step taken back can be redone until
        the next one is recorded (ctrl+y after F3 back to the alternative that was there).
        """
        editor = self.editor
        steps = continuation.steps
        if steps and editor.undo_entry_on_top(steps[-1].entry):
            end, base = continuation.end, steps[-1].base
            continuation.undone_steps.append(steps.pop())
            editor.undo_quietly()
            size = len(continuation.text_of(base))
            self.continuations.replaced(continuation.start, end, size, owner=continuation)
            return base
        return continuation.current

    def _commit(self, continuation: Continuation, base: int | None, shown: str) -> None:
        """Make the shown variant one undo step that replaces variant ``base``.

        ``shown`` is what the text holds at the continuation's start now (written outside the
        history); it is swapped back to ``base`` first so the history stays true to the text.
        """
        editor = self.editor
        text, base_text = continuation.text, continuation.text_of(base)
        if text == base_text:
            return
        start = continuation.start
        selection = editor.selection
        if shown != base_text:
            with editor.app_edit(follow=False):
                editor.replace_span(start, start + len(shown), base_text)
        with editor.app_edit(record=True, follow=False):
            editor.history.checkpoint()
            entry = editor.replace_span(start, start + len(base_text), text)
            editor.history.checkpoint()
        self.continuations.recorded(continuation, entry, base)
        editor.selection = selection
