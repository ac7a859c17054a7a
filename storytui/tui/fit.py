"""One-line rows of hints (the status bar, the footer's keys) on a terminal too narrow for all.

A hint cut mid-word reads as a different one ("alt" for "alt 2/2"), so a row that does not fit
loses whole hints instead, the least important first, and what stays keeps its order.
"""

from __future__ import annotations

from collections.abc import Sequence


def keep_to_fit(widths: Sequence[int], ranks: Sequence[int], room: int, gap: int = 0) -> list[bool]:
    """Which hints of a row to keep so that the kept ones, ``gap`` cells apart, fit ``room``
    cells: they go by rank, the highest (least important) first, of equal ranks the last."""
    keep = [True] * len(widths)
    by_importance = sorted(range(len(widths)), key=lambda index: (ranks[index], index))
    for index in reversed(by_importance):
        if _used(widths, keep, gap) <= room:
            break
        keep[index] = False
    return keep


def _used(widths: Sequence[int], keep: Sequence[bool], gap: int) -> int:
    kept = [width for width, kept in zip(widths, keep, strict=True) if kept]
    return sum(kept) + gap * max(len(kept) - 1, 0)
