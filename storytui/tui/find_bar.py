"""The find bar under the story: incremental find, next / previous, replace and replace all.

Typing in its find field selects the first match at or after where the search started and
scrolls to it; Enter (or down) goes on, shift+enter (or up) goes back, both round the ends
with a note. The matches are found once per query or change of the story (``find.py``), so
stepping, counting and drawing them cost no search. The bar never edits the story itself: a
replace goes through the app's ``replace_in_story(spans, text)``, which makes it the writer's
edit (one undo step, the continuation record kept exact) or says why not.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import BindingType
from textual.containers import HorizontalGroup
from textual.content import Content
from textual.widget import Widget
from textual.widgets import Input, Label
from textual.widgets.text_area import Selection

from storytui.tui.commands import FIND_BAR_COMMANDS, bindings_for
from storytui.tui.debounce import Debounce
from storytui.tui.editor import StoryEditor
from storytui.tui.find import Matches, Span, find_starts, ignores_case

RECOUNT_SECONDS = 0.25  # after the story changes, how long the bar waits to count again
WRAPPED_FORWARD, WRAPPED_BACK = "wrapped to the start", "wrapped to the end"


def _short(text: str, limit: int = 40) -> str:
    """A query or replacement as a message quotes it: one line, cut short (a selected
    paragraph would fill the screen)."""
    line = " ".join(text.split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


class FindBar(HorizontalGroup):
    """One line: the find field, "3 of 12", and the replace field when asked for."""

    BINDINGS: ClassVar[list[BindingType]] = bindings_for(
        FIND_BAR_COMMANDS,
        skip=frozenset({"enter"}),  # Enter is the fields' own: Submitted
    )

    def __init__(
        self,
        editor: StoryEditor,
        replace_in_story: Callable[[Sequence[Span], str], str | None],
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.editor = editor
        self.replace_in_story = replace_in_story  # the writer's edit, or why it would not be
        self._found: Matches | None = None
        self._texts: tuple[int, str, str | None] = (-1, "", None)  # (version, text, lowered)
        self._anchor = 0  # where the search for the query being typed starts
        self._note = ""
        self.count_text = ""  # what the bar says about the matches: "3 of 12", "no matches"
        self._recount_later = Debounce(self, self._recount)  # one timer while the story changes

    def compose(self) -> ComposeResult:
        yield Label("find", classes="find-label")
        yield Input(placeholder="Enter: next  ↑: previous", id="find-query", compact=True)
        yield Label("", id="find-count")
        yield Label("replace with", classes="find-label replace-part")
        yield Input(
            placeholder="Enter: replace  alt+a: all",
            id="find-replacement",
            classes="replace-part",
            compact=True,
        )

    @property
    def query_field(self) -> Input:
        return self.query_one("#find-query", Input)

    @property
    def replacement_field(self) -> Input:
        return self.query_one("#find-replacement", Input)

    @property
    def is_open(self) -> bool:
        return self.has_class("-visible")

    @property
    def replacing(self) -> bool:
        return self.has_class("-replacing")

    # ------------------------------------------------------------------ opening and closing

    def open(self, replacing: bool = False) -> None:
        """Show the bar with the selection (one line of it) or the last query, and find from
        the selection's start; ``replacing`` shows the replace field too and focuses it (an
        open bar keeps the one it shows)."""
        field = self.query_field
        prefill = self._prefill()
        self.set_class(replacing or (self.is_open and self.replacing), "-replacing")
        self.add_class("-visible")
        self._anchor = self._selected()[0]
        self._note = ""
        with self.prevent(Input.Changed):  # found right here, not once more when it arrives
            field.value = prefill
        self._find_from(self._anchor)
        self._focus(self.replacement_field if replacing else field)
        field.select_all()

    def _prefill(self) -> str:
        """The selected text if it is one line and not a match already (a match selected by
        the last search would turn "anna" into "Anna"), else the last query."""
        selected = self.editor.selected_text
        last = self.query_field.value
        if not selected or "\n" in selected:
            return last
        if last and self._matches().index_of(self._selected()) is not None:
            return last
        return selected

    def action_close(self) -> None:
        """Back to the story, the match selected; the query stays for next time."""
        self._focus(self.editor)
        self.remove_class("-visible", "-replacing")
        self._stop_recount()
        self.editor.set_find_marks((), 0)

    def action_toggle_replace(self) -> None:
        """Show the replace field, or move between the two fields."""
        if not self.is_open or not self.replacing or not self.replacement_field.has_focus:
            self._show_replace()
        else:
            self._focus(self.query_field)

    def _show_replace(self) -> None:
        """Open the bar with the replace field, or show it in the open bar; focus it."""
        if not self.is_open:
            self.open(replacing=True)
        else:
            self.add_class("-replacing")
            self._focus(self.replacement_field)

    def _focus(self, widget: Widget) -> None:
        """Focus ``widget`` now, not after the keys already on their way (as ``focus()``
        would): typed right after ctrl+f or Esc, they belong where the focus went."""
        self.screen.set_focus(widget)

    # ------------------------------------------------------------------ finding

    @on(Input.Changed, "#find-query")
    def _query_changed(self, event: Input.Changed) -> None:
        event.stop()
        if self.is_open:
            self._note = ""
            self._find_from(self._anchor)

    @on(Input.Changed, "#find-replacement")
    def _replacement_changed(self, event: Input.Changed) -> None:
        event.stop()

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        event.stop()
        if event.input is self.replacement_field:
            self.action_replace_one()
        else:
            self.action_find_next()

    def action_find_next(self) -> None:
        self._step(+1)

    def action_find_previous(self) -> None:
        self._step(-1)

    def _step(self, direction: int) -> None:
        if not self.is_open:
            self.open()  # finds the first match at or after the cursor
            return
        matches = self._matches()
        if not matches:
            self._show_none()
            return
        start, end = self._selected()
        if direction > 0:
            index, wrapped = matches.at_or_after(end)
        else:
            index, wrapped = matches.before(start)
        self._anchor = matches.starts[index]
        note = (WRAPPED_FORWARD if direction > 0 else WRAPPED_BACK) if wrapped else ""
        self._select(matches, index, note)

    def _find_from(self, offset: int) -> None:
        """Select the first match at or after ``offset`` (round to the first if none)."""
        matches = self._matches()
        if not matches:
            self._show_none()
            return
        index, wrapped = matches.at_or_after(offset)
        self._select(matches, index, WRAPPED_FORWARD if wrapped else "")

    def _select(self, matches: Matches, index: int, note: str) -> None:
        start, end = matches.span(index)
        editor = self.editor
        editor.selection = Selection(editor.location_of(start), editor.location_of(end))
        self._note = note
        self._show_count(matches, index)

    def _show_none(self) -> None:
        """No match: say so, and leave no earlier match selected as if it were one."""
        if self.query_field.value:
            self.editor.move_cursor(self.editor.location_of(self._anchor))
            self._say("no matches")
        else:
            self._say("")

    def _show_count(self, matches: Matches, index: int | None) -> None:
        if index is None:
            total = len(matches)
            self._say(f"{total} match{'es' if total != 1 else ''}" if total else "no matches")
            return
        note = f" · {self._note}" if self._note else ""
        self._say(f"{index + 1} of {len(matches)}{note}")

    def _say(self, text: str) -> None:
        self.count_text = text
        self.query_one("#find-count", Label).update(Content(text))

    def _selected(self) -> Span:
        """The editor's selection as offsets, in story order."""
        start, end = sorted(self.editor.selection)
        return self.editor.index_of(start), self.editor.index_of(end)

    def _matches(self) -> Matches:
        """The matches of the query in the story as it is now, found again only when either
        changed since; shown in the editor while the bar is open."""
        query, version = self.query_field.value, self.editor.version
        found = self._found
        if found is None or found.query != query or found.version != version:
            text, lowered = self._story_text(lower=ignores_case(query))
            found = self._found = Matches(query, find_starts(text, query, lowered), version)
        if self.is_open and self.editor.find_marks[1] is not found.starts:
            self.editor.set_find_marks(found.starts, found.length)
        return found

    def _story_text(self, lower: bool) -> tuple[str, str | None]:
        """The story's text (and lowered, if asked), joined once per version of it."""
        version = self.editor.version
        if self._texts[0] != version:
            self._texts = (version, self.editor.text, None)
        _, text, lowered = self._texts
        if lower and lowered is None:
            lowered = text.lower()
            self._texts = (version, text, lowered)
        return text, lowered

    # ------------------------------------------------------------------ the story changes

    def story_changed(self) -> None:
        """The story's text changed (the writer, the model, an undo): count again once it
        has been still for a moment. Until then the old matches are simply not drawn."""
        if not self.is_open:
            return
        self._recount_later.poke(RECOUNT_SECONDS)

    def _recount(self) -> None:
        if self.is_open:
            matches = self._matches()
            self._show_count(matches, matches.index_of(self._selected()))

    def _stop_recount(self) -> None:
        self._recount_later.cancel()

    # ------------------------------------------------------------------ replacing

    def action_replace_one(self) -> None:
        """Replace the selected match and select the next; with no match selected, select
        the next one first, so the writer sees what Enter will replace."""
        if not self._ready_to_replace():
            return
        span = self._selected()
        if self._matches().index_of(span) is None:
            self._step(+1)
            return
        if self._replace([span]) is not None:
            self._anchor = span[0] + len(self.replacement_field.value)
            self._note = ""
            self._find_from(self._anchor)

    def action_replace_all(self) -> None:
        """Replace every match in one undo step and say how many."""
        if not self._ready_to_replace():
            return
        matches = self._matches()
        if not matches:
            self._show_none()
            return
        count = self._replace(matches.spans())
        if count is None:
            return
        replacement = self.replacement_field.value
        self.notify(
            f'replaced {count} match{"es" if count != 1 else ""} of "{_short(matches.query)}" '
            f'with "{_short(replacement)}"',
            markup=False,
        )
        self._recount()

    def _ready_to_replace(self) -> bool:
        """The replace field is shown; if not, show it and let the writer type first."""
        if self.is_open and self.replacing:
            return True
        self._show_replace()
        return False

    def _replace(self, spans: Sequence[Span]) -> int | None:
        """Put the replacement in the spans that do not hold it already; how many changed
        (None: refused, and the writer told why)."""
        replacement = self.replacement_field.value
        text, _ = self._story_text(lower=False)
        changed = [(start, end) for start, end in spans if text[start:end] != replacement]
        if not changed:
            return 0
        if reason := self.replace_in_story(changed, replacement):
            self.notify(reason, severity="warning", markup=False)
            return None
        return len(changed)
