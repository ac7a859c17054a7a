"""Encoding the story while the writer pauses, so that F5 answers at once.

Encoding a 1,000-token story costs the 77M model a few hundred milliseconds on a laptop CPU:
the wait between F5 and the first word. The writer's pauses are free time, so whenever they
stop typing (or move the cursor, or change the prompt, memory or token budget) for
``IDLE_SECONDS``, a thread worker asks the ``Generator`` to ``prefill`` the context a
continuation at the cursor would see. The generator's KV cache then already holds it; after more
typing at the end of a story that fits the window only the new tokens are encoded. An encode
that is out of date, or running when a continuation starts, is cancelled: it stops within one
``PREFILL_CHUNK`` of tokens, and what it encoded is reused.
"""

from __future__ import annotations

import threading
from functools import partial
from typing import TYPE_CHECKING

from storytui.tui.debounce import Debounce

if TYPE_CHECKING:
    from storytui.tui.app import StoryApp

IDLE_SECONDS = 0.6  # a pause this long in typing starts an encode


def encode_in_thread(
    generator, text: str, settings, prompt: str, memory: str, cancel: threading.Event
) -> int:
    """Runs in a thread worker: the number of tokens encoded (0 if none, or on failure).

    A failure here is not the writer's concern: the continuation they ask for next encodes
    (and reports any error) itself.
    """
    try:
        return generator.prefill(text, settings, prompt=prompt, memory=memory, cancel=cancel)
    except Exception:
        return 0


class EncodeAhead:
    """Keeps ``app.generator``'s cache holding the story up to the cursor."""

    def __init__(self, app: StoryApp, idle_seconds: float = IDLE_SECONDS) -> None:
        self.app = app
        self.idle_seconds = idle_seconds
        self._pause = Debounce(app, self._start)  # one timer however fast the keys come
        self.encoded_text: str | None = None  # the text before the cursor at the last encode
        self._encoded: tuple | None = None  # everything the last encode depended on
        self._cancel: threading.Event | None = None  # stops the last encode started

    def schedule(self) -> None:
        """Something the context depends on changed: encode after the next pause."""
        self._pause.poke(self.idle_seconds)

    def _start(self) -> None:
        app = self.app
        if app.generator is None or app.sampling is None or app.job is not None:
            return
        text = app.editor.text[: app.editor.cursor_index]
        key = (id(app.generator), text, app.prompt, app.memory, app.sampling.max_new_tokens)
        if key == self._encoded:
            return
        self._encoded, self.encoded_text = key, text
        if self._cancel is not None:
            self._cancel.set()  # an encode still running is out of date
        self._cancel = threading.Event()
        app.run_worker(
            partial(
                encode_in_thread,
                app.generator,
                text,
                app.sampling,
                app.prompt,
                app.memory,
                self._cancel,
            ),
            thread=True,
            group="encode-ahead",
            exit_on_error=False,
        )

    def cancel(self) -> None:
        """A continuation is starting: stop encoding now (what is encoded stays cached), and
        encode again at the next pause."""
        self._pause.cancel()
        if self._cancel is not None:
            self._cancel.set()
        self._encoded = self.encoded_text = None
