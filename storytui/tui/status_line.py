"""The status bar: file, model, alternatives and counts on one line, whole parts only."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rich.cells import cell_len
from textual.content import Content
from textual.widgets import Static

from storytui.tui.fit import keep_to_fit

SEPARATOR = " │ "


@dataclass(frozen=True)
class StatusPart:
    """One part of the status bar; a narrow terminal drops the highest ``rank`` first."""

    text: str
    rank: int


def join_parts(parts: Sequence[StatusPart]) -> str:
    return SEPARATOR.join(part.text for part in parts)


def fit_parts(parts: Sequence[StatusPart], width: int) -> str:
    """The parts that fit ``width`` cells whole, in their order; at least the most important
    one, its file name shortened in the middle if even that is too wide."""
    widths = [cell_len(part.text) for part in parts]
    keep = keep_to_fit(widths, [part.rank for part in parts], width, gap=len(SEPARATOR))
    kept = [part for part, kept in zip(parts, keep, strict=True) if kept]
    if not kept and parts:
        most = min(parts, key=lambda part: part.rank)
        return shorten_name(most.text, width)
    return join_parts(kept)


def shorten_name(text: str, width: int) -> str:
    """``text`` ("name · state") in ``width`` cells: the name loses its middle, so that the
    state (``modified``) and the name's start and end (its extension) stay in view."""
    name, separator, state = text.partition(" · ")
    room = width - cell_len(separator + state) - 1  # one cell for the ellipsis
    if cell_len(text) <= width or not separator or room < 6 or len(name) != cell_len(name):
        return text  # fits, has no state, or too narrow: the stylesheet's ellipsis ends it
    end = room // 2
    return f"{name[: room - end]}…{name[-end:]}{separator}{state}"


class StatusLine(Static):
    """Shows the status parts that fit its width, again on every resize (``render`` runs at
    the width it draws at)."""

    def __init__(self, **kwargs) -> None:
        super().__init__("", **kwargs)
        self._parts: tuple[StatusPart, ...] = ()

    def show(self, parts: Sequence[StatusPart]) -> None:
        if tuple(parts) != self._parts:
            self._parts = tuple(parts)
            self.refresh()

    def render(self) -> Content:
        width = self.content_size.width
        if width <= 0:  # not laid out yet
            return Content(join_parts(self._parts))
        return Content(fit_parts(self._parts, width))
