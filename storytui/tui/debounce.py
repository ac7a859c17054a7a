"""One timer per waiting owner, however many events push its deadline on.

Stopping a timer and starting a new one on every event (the usual debounce) costs a ``Timer``,
an asyncio task and a scheduler entry per keystroke. A long paste that the terminal does not
bracket arrives as one key event per character, and at that rate the timers alone kept the app
busy for minutes. ``Debounce`` keeps one pending timer and only moves its deadline; when the
timer fires before the moved deadline it re-arms once for what is left.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from textual.message_pump import MessagePump
from textual.timer import Timer


class Debounce:
    """Calls ``callback`` once ``delay`` seconds have passed since the last ``poke``."""

    def __init__(self, owner: MessagePump, callback: Callable[[], object]) -> None:
        self.owner = owner  # whose ``set_timer`` runs the timer (it stops with the owner)
        self.callback = callback
        self._deadline: float | None = None
        self._timer: Timer | None = None

    @property
    def pending(self) -> bool:
        return self._deadline is not None

    def poke(self, delay: float) -> None:
        """Call back ``delay`` seconds from now, not at any earlier deadline."""
        self._deadline = time.monotonic() + delay
        if self._timer is None:
            self._timer = self.owner.set_timer(delay, self._fire)

    def cancel(self) -> None:
        """Call back for no poke so far."""
        self._deadline = None
        if self._timer is not None:
            self._timer.stop()
            self._timer = None

    def _fire(self) -> None:
        self._timer = None
        if self._deadline is None:
            return
        left = self._deadline - time.monotonic()
        if left > 0:  # poked since the timer was set: wait out the rest
            self._timer = self.owner.set_timer(left, self._fire)
            return
        self._deadline = None
        self.callback()
