"""The footer: Textual's key hints, left out whole (least important first) when they do not
fit beside the palette key, instead of running under it cut mid-hint."""

from __future__ import annotations

from textual.widget import Widget
from textual.widgets import Footer

from storytui.tui.commands import footer_rank
from storytui.tui.fit import keep_to_fit

PALETTE_KEY = "-command-palette"


class StoryFooter(Footer):
    """Shows the key hints that fit, ranked by ``FOOTER_IMPORTANCE``; again after every change
    of keys (Textual composes the footer anew) and every resize."""

    async def recompose(self) -> None:
        await super().recompose()
        self.fit_keys()
        self.call_after_refresh(self.fit_keys)  # once their styles are surely applied

    def on_resize(self) -> None:
        self.fit_keys()

    def fit_keys(self) -> None:
        keys = list(self.query_children("FooterKey"))  # by type name: the class is private
        hints = [key for key in keys if not key.has_class(PALETTE_KEY)]
        room = self.size.width - sum(_width(key) for key in keys if key.has_class(PALETTE_KEY))
        widths = [_width(key) for key in hints]
        ranks = [footer_rank(key.action) for key in hints]
        for key, keep in zip(hints, keep_to_fit(widths, ranks, room), strict=True):
            key.display = keep


def _width(key: Widget) -> int:
    """The cells ``key`` takes in the row: its text, padding, border and margin."""
    styles = key.styles
    return key.render().cell_len + styles.gutter.width + styles.margin.width
