"""Finding text in the story: every match of a query, found once per query or text change.

Smart case, as in most editors: a query without capitals matches any case, one with a capital
matches exactly. All matches are found in one C-speed pass (``re`` over the whole text, lowered
once for a query without capitals) and kept as a sorted list of starts, so stepping through
them, counting them and drawing the visible ones never searches again.

All offsets are str indices into the editor's text (``\\n`` line breaks).
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from dataclasses import dataclass

Span = tuple[int, int]  # [start, end) in the story


def ignores_case(query: str) -> bool:
    """Smart case: a query with no capital letter matches any case."""
    return query == query.lower()


def find_starts(text: str, query: str, lowered: str | None = None) -> list[int]:
    """Where each match of ``query`` starts in ``text``, left to right, not overlapping.

    ``lowered`` is ``text.lower()`` when the caller has it already. Lowering keeps every offset
    when it keeps the length (one character for one); where it does not (``İ`` lowers to two),
    ``re`` compares the cases itself, which is slower but keeps the offsets right.
    """
    if not query:
        return []
    needle = re.escape(query)
    if not ignores_case(query):
        return [match.start() for match in re.finditer(needle, text)]
    lowered = text.lower() if lowered is None else lowered
    if len(lowered) != len(text):
        return [match.start() for match in re.finditer(needle, text, re.IGNORECASE)]
    return [match.start() for match in re.finditer(needle, lowered)]


@dataclass(frozen=True)
class Matches:
    """Every match of ``query`` in one version of the story (each is ``len(query)`` long:
    both ways of matching case compare one character with one)."""

    query: str
    starts: list[int]
    version: int  # the editor's ``version`` of the text they were found in

    @property
    def length(self) -> int:
        return len(self.query)

    def __len__(self) -> int:
        return len(self.starts)

    def span(self, index: int) -> Span:
        start = self.starts[index]
        return start, start + self.length

    def spans(self) -> list[Span]:
        return [(start, start + self.length) for start in self.starts]

    def index_of(self, span: Span) -> int | None:
        """The index of the match exactly at ``span``, if it is one."""
        index = bisect.bisect_left(self.starts, span[0])
        if index < len(self.starts) and self.span(index) == span:
            return index
        return None

    def at_or_after(self, offset: int) -> tuple[int, bool]:
        """(the first match starting at or after ``offset``, whether that wrapped to the
        first one); the matches must not be empty."""
        index = bisect.bisect_left(self.starts, offset)
        return (index, False) if index < len(self.starts) else (0, True)

    def before(self, offset: int) -> tuple[int, bool]:
        """(the last match starting before ``offset``, whether that wrapped to the last)."""
        index = bisect.bisect_left(self.starts, offset) - 1
        return (index, False) if index >= 0 else (len(self.starts) - 1, True)


def replaced_region(text: str, spans: Sequence[Span], replacement: str) -> str:
    """The text from the first span's start to the last one's end, each span replaced."""
    pieces, at = [], spans[0][0]
    for start, end in spans:
        pieces.append(text[at:start])
        pieces.append(replacement)
        at = end
    return "".join(pieces)


def moved_offset(offset: int, spans: Sequence[Span], replacement_length: int) -> int:
    """Where ``offset`` is once every span holds the replacement (inside one: after it)."""
    shift = 0
    for start, end in spans:
        if end <= offset:
            shift += replacement_length - (end - start)
        elif start < offset:
            return start + shift + replacement_length
        else:
            break
    return offset + shift
