"""The app's own record of what the model wrote: spans in the story, alternatives, token odds.

The editor's undo history cannot describe a streamed continuation (every insert is its own step
and only 50 are kept), so the app keeps this record instead. Each ``Continuation`` sits at a
character offset in the story and owns every ``Variant`` generated at that spot (retries and
picks from the token alternatives); one variant is shown at a time. Continuations stay marked
("live") until the writer edits inside them or keeps them.

All offsets are str indices into the editor's text, which always uses ``\\n`` line breaks.
"""

from __future__ import annotations

import bisect
import itertools
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from storytui.textfile import normalize_newlines

# Probability buckets for the colour-by-probability view: (lowest probability, mark kind).
PROBABILITY_BUCKETS = ((0.6, "prob-high"), (0.3, "prob-mid"), (0.1, "prob-low"), (0.0, "prob-rare"))
GENERATED = "generated"

# A continuation that ends against the next word gets this space as its last token: it is the
# continuation's own text, so undo, retry and the alternatives take it with the rest.
SEPARATOR = " "
SEPARATOR_TOKEN = -2  # the token id it is recorded with (-1: text flushed by the generator)
# What a following character must not be for a space to go before it: the punctuation that
# hangs on the word before it (. , ; : ! ? ' " … ) ] } ” ’ - —), and whitespace.
_HANGS_ON_WORD_BEFORE = frozenset({"Po", "Pe", "Pf", "Pd"})
# ...and what a continuation's last character must not be: an opening bracket or quote.
_HANGS_ON_WORD_AFTER = frozenset({"Ps", "Pi"})


def needs_separator(last: str, following: str) -> bool:
    """Does a continuation ending in ``last`` need a space before ``following`` to read as
    text? Yes when both are characters, neither is whitespace, and neither is punctuation that
    belongs against the other word ("" means nothing: the story's end or an empty text)."""
    if not last or not following or last.isspace() or following.isspace():
        return False
    return (
        unicodedata.category(following) not in _HANGS_ON_WORD_BEFORE
        and unicodedata.category(last) not in _HANGS_ON_WORD_AFTER
    )


def trim_lead(text: str, before: str) -> str:
    """A continuation's first text without the spaces it starts with when the story has
    whitespace (or nothing) before it: no doubled space, no line that starts indented.

    The generator normally writes such a space itself and hides it (token healing); a model
    without healing (an imported seed model) shows it, and this keeps it out."""
    if before and not before.isspace():
        return text
    return text.lstrip(" ")


class NewlineNormalizer:
    """``normalize_newlines`` for a stream of pieces: a ``\\r\\n`` split across two is one break."""

    def __init__(self) -> None:
        self._after_cr = False

    def push(self, piece: str) -> str:
        if self._after_cr and piece.startswith("\n"):
            piece = piece[1:]
        if piece:
            self._after_cr = piece.endswith("\r")
        return normalize_newlines(piece)


@dataclass(frozen=True)
class GeneratedToken:
    """One sampled token as it appears in a variant; ``alternatives`` are the model's top picks."""

    start: int  # offset in the variant's text
    text: str
    prob: float
    token: int = -1
    alternatives: tuple[Any, ...] = ()  # storytui.generation.Alternative (token, text, prob)

    @property
    def end(self) -> int:
        return self.start + len(self.text)


@dataclass
class Variant:
    """One continuation text at a spot, token by token."""

    text: str = ""
    tokens: list[GeneratedToken] = field(default_factory=list)
    seed: int | None = None

    def add(self, text: str, prob: float, token: int = -1, alternatives: tuple = ()) -> None:
        self.tokens.append(GeneratedToken(len(self.text), text, prob, token, alternatives))
        self.text += text

    def add_separator(self) -> None:
        """End with the space that keeps the last word off the story's next one."""
        self.add(SEPARATOR, 1.0, SEPARATOR_TOKEN)

    def drop_trailing_spaces(self) -> int:
        """Take the spaces off the end (the story has whitespace after it); returns how many.
        A token left without text keeps its place, like one that ended mid-character."""
        kept = len(self.text.rstrip(" "))
        count = len(self.text) - kept
        self.text = self.text[:kept]
        self.tokens = [
            token
            if token.end <= kept
            else replace(
                token, start=min(token.start, kept), text=token.text[: max(kept - token.start, 0)]
            )
            for token in self.tokens
        ]
        return count

    def _word_tokens(self) -> list[int]:
        """Indices of the tokens with text the model wrote (not the separator)."""
        return [i for i, t in enumerate(self.tokens) if t.text and t.token != SEPARATOR_TOKEN]

    def branch(self, index: int, replacement: GeneratedToken) -> Variant:
        """A new variant: this one's first ``index`` tokens, then ``replacement`` in place of the rest."""
        kept = self.tokens[:index]
        start = kept[-1].end if kept else 0
        variant = Variant(text=self.text[:start], tokens=list(kept))
        variant.add(replacement.text, replacement.prob, replacement.token, replacement.alternatives)
        return variant

    def token_index_at(self, offset: int) -> int | None:
        """Index of the model's token covering ``offset`` (an offset at the end of its words,
        or on the separator after them: the last one)."""
        visible = self._word_tokens()
        if not visible:
            return None
        if offset >= self.tokens[visible[-1]].end:
            return visible[-1]
        ends = [self.tokens[i].end for i in visible]
        position = bisect.bisect_right(ends, offset)
        return visible[position] if position < len(visible) else None


@dataclass(frozen=True)
class Shown:
    """An undo entry of the editor that put variant ``variant`` of a continuation in the story,
    in place of variant ``base`` (None: where there was none). Kept so that undoing a swap of
    alternatives shows the one before it again instead of dropping the continuation."""

    entry: Any
    variant: int
    base: int | None


@dataclass(eq=False)
class Continuation:
    """Everything generated at one spot of the story; ``variants[current]`` is in the text."""

    start: int
    variants: list[Variant] = field(default_factory=lambda: [Variant()])
    current: int = 0
    # its entries in the editor's undo history, oldest first (the last put in the shown
    # variant), and those undone since, newest last
    steps: list[Shown] = field(default_factory=list)
    undone_steps: list[Shown] = field(default_factory=list)

    @property
    def variant(self) -> Variant:
        return self.variants[self.current]

    @property
    def history_entry(self) -> Any:
        """The undo entry that put the shown variant in the story (None: none left)."""
        return self.steps[-1].entry if self.steps else None

    def text_of(self, index: int | None) -> str:
        """Variant ``index``'s text ("" for None: no variant)."""
        return "" if index is None else self.variants[index].text

    @property
    def text(self) -> str:
        return self.variant.text

    @property
    def end(self) -> int:
        return self.start + len(self.variant.text)

    def contains(self, offset: int) -> bool:
        return self.start <= offset <= self.end


@dataclass(frozen=True)
class Mark:
    start: int
    end: int
    kind: str  # GENERATED or one of the probability bucket kinds


UNDO, REDO = "undo", "redo"
Replacement = tuple[int, int, int]  # (start, old length, new length) of a replaced span


@dataclass(frozen=True)
class HistoryStep:
    """An undo or redo in the editor: the entries (edits) it took back or put back.

    Continuations are matched to their entry by identity, not by text, so a redo finds its
    continuation even after other steps moved the text around it. ``start`` is the offset
    where the first entry begins in the text after the step.
    """

    kind: str  # UNDO or REDO
    entries: tuple[Any, ...]
    start: int


def _written_by(continuations: list[Continuation], step: HistoryStep) -> Continuation | None:
    """The continuation whose undo entry is the step's only entry, if any."""
    if len(step.entries) != 1:
        return None
    for continuation in continuations:
        if continuation.history_entry is step.entries[0]:
            return continuation
    return None


def _swapped_back_by(continuations: list[Continuation], step: HistoryStep) -> Continuation | None:
    """The continuation whose newest undone swap of alternatives the step redoes, if any."""
    if len(step.entries) != 1:
        return None
    for continuation in continuations:
        undone = continuation.undone_steps
        if undone and undone[-1].entry is step.entries[0]:
            return continuation
    return None


class ContinuationLog:
    """The live (marked) continuations in story order of creation, plus recently undone ones."""

    MAX_UNDONE = 50

    def __init__(self) -> None:
        self.live: list[Continuation] = []
        self.undone: list[Continuation] = []
        # Continuations the writer typed into: an undo that gives back their text marks them again.
        self.edited: list[Continuation] = []
        self._replacements: list[tuple[Any, tuple[Replacement, ...]]] = []  # (undo entry, spans)

    # ------------------------------------------------------------------ lookup

    def target(self, offset: int) -> Continuation | None:
        """The continuation the writer means: the newest one around ``offset`` (None when the
        cursor is in none: retry and alternatives never change text away from the cursor)."""
        for continuation in reversed(self.live):
            if continuation.contains(offset):
                return continuation
        return None

    def token_at(self, offset: int) -> tuple[Continuation, int] | None:
        """(continuation, token index) of the generated token under ``offset``."""
        for continuation in reversed(self.live):
            if continuation.contains(offset) and continuation.text:
                index = continuation.variant.token_index_at(offset - continuation.start)
                if index is not None:
                    return continuation, index
        return None

    # ------------------------------------------------------------------ changes made by the app

    def begin(self, start: int) -> Continuation:
        continuation = Continuation(start)
        self.live.append(continuation)
        return continuation

    def replaced(self, start: int, end: int, new_length: int, owner: Continuation | None) -> None:
        """The story's ``[start, end)`` now holds ``new_length`` characters written by the app.

        ``owner`` is the continuation whose text changed (the caller updates its variant);
        others after the change move with it, others overlapping it count as edited.
        """
        delta = new_length - (end - start)
        for continuation in list(self.live):
            if continuation is owner:
                continue
            if continuation.start >= end:
                continuation.start += delta
            elif continuation.end > start and continuation.start < end:
                self.live.remove(continuation)
        for continuation in list(self.edited):
            if continuation.start >= end:
                continuation.start += delta
            elif continuation.end > start:
                self.edited.remove(continuation)  # the app wrote over it: nothing to give back

    def recorded(self, continuation: Continuation, entry: Any, base: int | None) -> None:
        """The editor's newest undo entry ``entry`` puts the shown variant of ``continuation``
        in place of its variant ``base`` (None: of no text). A new entry ends every redo."""
        continuation.steps.append(Shown(entry, continuation.current, base))
        del continuation.steps[: -self.MAX_UNDONE]
        self._forget_redo()

    def keep_all(self) -> int:
        """Accept every live continuation: unmark it and forget its alternatives."""
        count = len(self.live)
        self.live.clear()
        self.undone.clear()
        self.edited.clear()
        return count

    def clear(self) -> None:
        self.live.clear()
        self.undone.clear()
        self.edited.clear()
        self._replacements.clear()

    # ------------------------------------------------------------------ changes made by the writer

    def writer_edit(self, old: str, new: str, step: HistoryStep | None = None) -> None:
        """Follow an edit the writer made from ``old`` to ``new``.

        ``step`` is None for typing, paste and the like: nothing can be redone after those, so
        undone continuations are forgotten. For an undo or redo it names the editor's entries:
        undoing the one that wrote a continuation files the continuation as undone, redoing it
        brings it back with its alternatives, however many other steps were undone and redone
        in between; undoing one that swapped an alternative for another (F3, F4, a retry made
        after an edit elsewhere) shows the other again, still marked. Other continuations move
        with the text, and one the edit touches counts as edited by the writer: no longer
        marked.
        """
        if old == new:
            return
        growth = len(new) - len(old)
        if step is None:
            self._follow(old, new)
            self._forget_redo()
        elif step.kind == UNDO and (continuation := _written_by(self.live, step)):
            if continuation.steps[-1].base is None:
                self._take_back(continuation, growth)
            else:
                self._swap_back(continuation, old, new)
        elif step.kind == REDO and (continuation := _written_by(self.undone, step)):
            if new.startswith(continuation.text, step.start):
                self._put_back(continuation, step.start, growth)
            else:
                self.undone.remove(continuation)  # not its text: nothing to bring back
                self._follow(old, new)
        elif step.kind == REDO and (continuation := _swapped_back_by(self.live, step)):
            self._swap_forward(continuation, old, new)
        elif (spans := self._replacement_moved_by(step)) is not None:
            self._follow_spans(spans)
        else:
            self._follow(old, new)
            if step.kind == UNDO:
                self._mark_again(new)

    def writer_replaced(self, spans: Sequence[Replacement], entry: Any) -> None:
        """Follow the writer's replace (find and replace): each ``(start, old length, new
        length)`` span, in story order and not overlapping, changed in the one undo step
        ``entry``.

        Unlike ``_follow``, which sees only the stretch from the first change to the last,
        this moves a continuation between two replaced words along untouched; one holding a
        replaced word counts as edited. Undoing or redoing ``entry`` is followed as exactly.
        """
        self._follow_spans(spans)
        self._forget_redo()
        self._replacements.append((entry, tuple(spans)))
        del self._replacements[: -self.MAX_UNDONE]

    def _replacement_moved_by(self, step: HistoryStep) -> tuple[Replacement, ...] | None:
        """The spans an undo or redo of a recorded replace changes (undo: in reverse)."""
        if len(step.entries) != 1:
            return None
        for entry, spans in self._replacements:
            if entry is step.entries[0]:
                return spans if step.kind == REDO else _reversed_spans(spans)
        return None

    def _follow_spans(self, spans: Sequence[Replacement]) -> None:
        """Move continuations past replaced spans; unmark the ones a span touches."""
        ends = [start + old for start, old, _ in spans]
        shifts = list(itertools.accumulate((new - old for _, old, new in spans), initial=0))
        self.edited.clear()  # a replace moves text in several places: too many to follow
        for continuation in list(self.live):
            index = bisect.bisect_right(ends, continuation.start)  # spans wholly before it
            if index < len(spans) and spans[index][0] < continuation.end:
                self.live.remove(continuation)
            else:
                continuation.start += shifts[index]

    def _forget_redo(self) -> None:
        """The editor's redo history is gone: nothing undone can come back."""
        self.undone.clear()
        for continuation in self.live:
            continuation.undone_steps.clear()

    def _swap_back(self, continuation: Continuation, old: str, new: str) -> None:
        """Its entry that swapped one alternative for another was undone: the one before is
        shown again, and the continuation stays marked with all its alternatives."""
        shown = continuation.steps[-1]
        if self._shows(continuation, shown.base, old, new):
            continuation.undone_steps.append(continuation.steps.pop())

    def _swap_forward(self, continuation: Continuation, old: str, new: str) -> None:
        """Its swap of alternatives was redone: the alternative it showed is shown again."""
        shown = continuation.undone_steps[-1]
        if self._shows(continuation, shown.variant, old, new):
            continuation.steps.append(continuation.undone_steps.pop())

    def _shows(self, continuation: Continuation, index: int | None, old: str, new: str) -> bool:
        """Make variant ``index`` the shown one if ``new`` holds it at the continuation's start;
        else (not its text after all) follow the change as a plain edit. True if shown."""
        if index is None or not new.startswith(continuation.text_of(index), continuation.start):
            self._follow(old, new)
            return False
        start, end = continuation.start, continuation.end
        continuation.current = index
        self.replaced(start, end, len(continuation.text), owner=continuation)
        return True

    def _take_back(self, continuation: Continuation, growth: int) -> None:
        """Its undo entry was undone: file it away and move the others along."""
        self.live.remove(continuation)
        start, end = continuation.start, continuation.end
        self.replaced(start, end, end - start + growth, owner=None)
        self.undone.append(continuation)
        del self.undone[: -self.MAX_UNDONE]

    def _put_back(self, continuation: Continuation, start: int, growth: int) -> None:
        """Its undo entry was redone: it is at ``start`` again, marked, with its alternatives."""
        self.undone.remove(continuation)
        size = len(continuation.text)
        continuation.start = start
        self.replaced(start, start + size - growth, size, owner=continuation)
        self.live.append(continuation)

    def _follow(self, old: str, new: str) -> None:
        """Move continuations after a plain edit; unmark the ones it touches (kept aside in
        ``edited`` when the edit starts inside one, where an undo can give its text back)."""
        growth = len(new) - len(old)
        prefix = _common_prefix(old, new)
        suffix = _common_suffix(old, new, limit=min(len(old), len(new)) - prefix)
        old_end = len(old) - suffix
        for continuation in list(self.live):
            if continuation.end <= prefix:
                continue  # before the edit (typing right after a continuation leaves it whole)
            if continuation.start >= old_end:
                continuation.start += growth
            else:
                self.live.remove(continuation)
                if continuation.start <= prefix:
                    self.edited.append(continuation)
        del self.edited[: -self.MAX_UNDONE]
        for continuation in list(self.edited):
            if continuation.start >= old_end:
                continuation.start += growth
            elif continuation.start > prefix:  # the edit began before it: its place is lost
                self.edited.remove(continuation)

    def _mark_again(self, text: str) -> None:
        """After an undo: each edited continuation whose text is back in place, where no marked
        one is, is marked again, with its alternatives."""
        for continuation in reversed(list(self.edited)):
            start, end = continuation.start, continuation.end
            if text[start:end] != continuation.text or not continuation.text:
                continue
            if any(other.start < end and start < other.end for other in self.live):
                continue
            self.edited.remove(continuation)
            self.live.append(continuation)

    # ------------------------------------------------------------------ display

    def marks(self, by_probability: bool) -> list[Mark]:
        """Character ranges to highlight, sorted by start."""
        marks: list[Mark] = []
        for continuation in self.live:
            if not continuation.text:
                continue
            if not by_probability:
                marks.append(Mark(continuation.start, continuation.end, GENERATED))
                continue
            for token in continuation.variant.tokens:
                if token.text and token.token != SEPARATOR_TOKEN:  # no odds for the app's space
                    marks.append(
                        Mark(
                            continuation.start + token.start,
                            continuation.start + token.end,
                            probability_kind(token.prob),
                        )
                    )
        marks.sort(key=lambda mark: mark.start)
        return marks


def _reversed_spans(spans: Sequence[Replacement]) -> tuple[Replacement, ...]:
    """The spans that take a replace back, in the text after it."""
    reversed_spans, shift = [], 0
    for start, old, new in spans:
        reversed_spans.append((start + shift, new, old))
        shift += new - old
    return tuple(reversed_spans)


def probability_kind(prob: float) -> str:
    for floor, kind in PROBABILITY_BUCKETS:
        if prob >= floor:
            return kind
    return PROBABILITY_BUCKETS[-1][1]


def _common_prefix(a: str, b: str) -> int:
    """Length of the common prefix, by bisection over C-speed slice compares."""
    low, high = 0, min(len(a), len(b))
    while low < high:
        middle = (low + high + 1) // 2
        if a[:middle] == b[:middle]:
            low = middle
        else:
            high = middle - 1
    return low


def _common_suffix(a: str, b: str, limit: int) -> int:
    low, high = 0, max(limit, 0)
    while low < high:
        middle = (low + high + 1) // 2
        if a[len(a) - middle :] == b[len(b) - middle :]:
            low = middle
        else:
            high = middle - 1
    return low
