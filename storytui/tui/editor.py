"""The story editor: a soft-wrapping TextArea that marks generated text and reports edits.

What it adds to Textual's TextArea:

* ``marks``: character ranges drawn with the ``story-editor--*`` component styles (generated
  text, or its tokens coloured by probability), applied through ``get_line``.
* ``on_writer_edit(old, new, step)``: called after every change the writer makes (typing,
  paste, undo, redo) so the app can keep its continuation record in step with the text;
  ``step`` names the undo entries an undo or redo moved (None for other changes).
* ``app_edit()``: a block in which the app changes the text itself; those changes are not
  reported and, unless asked, not recorded in the undo history. The app records each finished
  continuation as one undo step, so ctrl+z removes a whole continuation at once.
* ``typed_ahead``: what the writer types while the model writes (the editor is read-only then):
  kept, announced with ``TypedAhead`` so that the app stops the model, and typed in once it
  has (``type_ahead_in``). Keys that would change text already there stop the model too.
* ``version``: counts every change to the text, so what was worked out from one text (the find
  bar's matches) can tell it is out of date without comparing texts.
* ``find_marks``: the find bar's matches, drawn with ``story-editor--find-match`` while they
  still belong to the text (same ``version``); ``replace_spans`` replaces several spans as one
  undo step.
"""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Offset
from textual.message import Message
from textual.widgets import TextArea
from textual.widgets.text_area import Edit, EditHistory, Location

from storytui.tui.continuations import REDO, UNDO, HistoryStep, Mark
from storytui.tui.find import Span, moved_offset, replaced_region

MARK_STYLES = ("generated", "prob-high", "prob-mid", "prob-low", "prob-rare", "find-match")
STOPPING_KEYS = frozenset({"backspace", "delete", "ctrl+w", "ctrl+u", "ctrl+k", "ctrl+v"})


@dataclass
class _PausableHistory(EditHistory):
    """Textual's undo history, with a switch to leave the app's own edits out of it."""

    paused: bool = field(default=False, init=False)

    def record(self, edit: Edit) -> None:
        if not self.paused:
            super().record(edit)


class StoryEditor(TextArea):
    """The story text; see the module docstring for what it adds to TextArea."""

    COMPONENT_CLASSES = TextArea.COMPONENT_CLASSES | {f"story-editor--{s}" for s in MARK_STYLES}
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+z", "undo", "Undo", tooltip="Undo typing, or a whole continuation"),
        Binding("ctrl+y", "redo", "Redo", show=False),
        Binding("ctrl+home", "story_start", "Start of the story", show=False),
        Binding("ctrl+end", "story_end", "End of the story", show=False),
    ]

    class TypedAhead(Message):
        """The writer pressed a key that edits while the model was writing."""

    def __init__(
        self,
        text: str = "",
        *,
        on_writer_edit: Callable[[str, str, HistoryStep | None], None] | None = None,
        **kwargs,
    ) -> None:
        super().__init__(
            text,
            soft_wrap=True,
            tab_behavior="focus",
            highlight_cursor_line=False,
            show_line_numbers=False,
            **kwargs,
        )
        self.history = _PausableHistory(
            max_checkpoints=self.history.max_checkpoints,
            checkpoint_timer=self.history.checkpoint_timer,
            checkpoint_max_characters=self.history.checkpoint_max_characters,
        )
        self.on_writer_edit = on_writer_edit
        self.typed_ahead = ""
        self.marks: list[Mark] = []
        self._mark_starts: list[int] = []
        self._snapshot = self.text
        self._app_edit_depth = 0
        self._line_starts: list[int] | None = None
        self._hold_scroll = False
        self.version = 0
        self.find_marks: tuple[int, Sequence[int], int] = (0, (), 0)  # (version, starts, length)

    # ------------------------------------------------------------------ typing while it writes

    async def _on_key(self, event: events.Key) -> None:
        if self.read_only and (event.is_printable or event.key == "enter"):
            event.stop()
            event.prevent_default()
            self.typed_ahead += "\n" if event.key == "enter" else (event.character or "")
            self.post_message(self.TypedAhead())
            return
        if self.read_only and event.key in STOPPING_KEYS:
            self.post_message(self.TypedAhead())  # the model stops; the key is pressed again
        await super()._on_key(event)

    def action_story_start(self) -> None:
        self.move_cursor((0, 0))

    def action_story_end(self) -> None:
        self.move_cursor(self.document.end)

    def type_ahead_in(self) -> None:
        """Type what was typed while the model wrote, at the cursor, as the writer's edit."""
        text, self.typed_ahead = self.typed_ahead, ""
        if text:
            self.insert(text)

    # ------------------------------------------------------------------ change tracking

    def edit(self, edit: Edit) -> object:
        result = super().edit(edit)
        self._text_changed()
        return result

    def undo(self) -> None:
        if self.read_only:
            return  # the app is writing: its text is not in the history yet
        self._move_in_history(UNDO, self.history.undo_stack, super().undo)

    def redo(self) -> None:
        if self.read_only:
            return
        self._move_in_history(REDO, self.history.redo_stack, super().redo)

    def _move_in_history(
        self, kind: str, stack: Sequence[list[Edit]], move: Callable[[], None]
    ) -> None:
        """Undo or redo the newest batch of ``stack`` and report which entries it moved."""
        if not stack:
            return
        entries = tuple(stack[-1])
        move()
        start = self.index_of(entries[0].top) if entries else 0
        self._text_changed(HistoryStep(kind, entries, start))

    def load_text(self, text: str) -> None:
        super().load_text(text)
        self._forget_offsets()
        self._snapshot = self.text

    def _forget_offsets(self) -> None:
        """The text changed: line starts are recounted when next needed."""
        self._line_starts = None
        self.version += 1

    def _text_changed(self, step: HistoryStep | None = None) -> None:
        self._forget_offsets()
        if self._app_edit_depth:
            return
        old, new = self._snapshot, self.text
        self._snapshot = new
        if old != new and self.on_writer_edit is not None:
            self.on_writer_edit(old, new, step)

    @contextlib.contextmanager
    def app_edit(self, *, record: bool = False, follow: bool = True) -> Iterator[None]:
        """Changes made inside are the app's: unreported, and unrecorded unless ``record``.

        With ``follow=False`` the view does not scroll to the cursor, so a writer who scrolled
        away while the model writes stays where they are.
        """
        self._app_edit_depth += 1
        paused, self.history.paused = self.history.paused, not record
        hold, self._hold_scroll = self._hold_scroll, not follow
        try:
            yield
        finally:
            self.history.paused = paused
            self._hold_scroll = hold
            self._app_edit_depth -= 1
            self._snapshot = self.text

    def scroll_cursor_visible(self, center: bool = False, animate: bool = False) -> Offset:
        # Textual (8.2) re-wraps in the middle of an edit or undo when the scrollbar comes or
        # goes, and scrolls to the cursor before moving it: skip a cursor the text no longer has
        # (it is placed and scrolled to right after).
        row, column = self.cursor_location
        lines = self.document.lines
        if self._hold_scroll or row >= len(lines) or column > len(lines[row]):
            return Offset()
        return super().scroll_cursor_visible(center, animate)

    # ------------------------------------------------------------------ offsets

    def _starts(self) -> list[int]:
        if self._line_starts is None:
            starts, total = [], 0
            for line in self.document.lines:
                starts.append(total)
                total += len(line) + 1
            self._line_starts = starts
        return self._line_starts

    def index_of(self, location: Location) -> int:
        row, column = location
        return self._starts()[row] + column

    def location_of(self, index: int) -> Location:
        starts = self._starts()
        row = max(bisect.bisect_right(starts, index) - 1, 0)
        return row, min(index - starts[row], len(self.document.lines[row]))

    def char_at(self, index: int) -> str:
        """The character at ``index`` ("" outside the text), without joining the whole text."""
        if index < 0:
            return ""
        row, column = self.location_of(index)
        line = self.document.lines[row]
        if column < len(line):
            return line[column]
        return "\n" if row + 1 < len(self.document.lines) else ""

    @property
    def cursor_index(self) -> int:
        return self.index_of(self.cursor_location)

    def replace_span(self, start: int, end: int, text: str) -> Edit:
        """Replace characters ``[start, end)`` (call inside ``app_edit``); returns the edit."""
        edit = Edit(text, self.location_of(start), self.location_of(end), True)
        self.edit(edit)
        return edit

    def replace_spans(self, spans: Sequence[Span], replacement: str) -> Edit:
        """Put ``replacement`` in each of ``spans`` (in story order) as one undo step: one edit
        from the first to the last, so a thousand replacements cost one re-wrap. The cursor
        keeps its place in the text around it. Unreported: the caller tells the record."""
        first, last = spans[0][0], spans[-1][1]
        region = replaced_region(self.text, spans, replacement)
        cursor = self.cursor_index
        with self.app_edit(record=True):
            self.history.checkpoint()
            edit = self.replace_span(first, last, region)
            self.history.checkpoint()
        self.move_cursor(self.location_of(moved_offset(cursor, spans, len(replacement))))
        return edit

    def undo_entry_on_top(self, entry: object) -> bool:
        """Is ``entry`` alone in the newest undo step (nothing edited since it)?"""
        stack = self.history.undo_stack
        return bool(stack) and len(stack[-1]) == 1 and stack[-1][0] is entry

    def undo_quietly(self) -> None:
        """Undo the newest step as an app change (not reported to ``on_writer_edit``)."""
        with self.app_edit(record=True):
            super().undo()
            self._forget_offsets()

    # ------------------------------------------------------------------ marks

    def set_marks(self, marks: list[Mark]) -> None:
        self.marks = marks
        self._mark_starts = [mark.start for mark in marks]
        self.notify_style_update()  # drops the line cache so every line is drawn again
        self.refresh()

    def set_find_marks(self, starts: Sequence[int], length: int) -> None:
        """Mark ``length`` characters at each of ``starts`` (sorted) in the text as it is now."""
        self.find_marks = (self.version, starts, length)
        self.notify_style_update()
        self.refresh()

    def get_line(self, line_index: int):
        line = super().get_line(line_index)
        version, find_starts, _ = self.find_marks
        if not self.marks and not (find_starts and version == self.version):
            return line
        start = self._starts()[line_index]
        end = start + len(line.plain)
        first = max(bisect.bisect_right(self._mark_starts, start) - 1, 0)
        for mark in self.marks[first:]:
            if mark.start >= end:
                break
            if mark.end <= start:
                continue
            style = self.get_component_rich_style(f"story-editor--{mark.kind}")
            line.stylize(style, max(mark.start - start, 0), min(mark.end, end) - start)
        if version == self.version:
            self._mark_found(line, start, end)
        return line

    def _mark_found(self, line, start: int, end: int) -> None:
        """Style the find bar's matches on the line holding ``[start, end)``."""
        _, starts, length = self.find_marks
        style = self.get_component_rich_style("story-editor--find-match")
        index = bisect.bisect_left(starts, start - length + 1)  # the first that reaches it
        while index < len(starts) and starts[index] < end:
            found = starts[index]
            line.stylize(style, max(found - start, 0), min(found + length, end) - start)
            index += 1
