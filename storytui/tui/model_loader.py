"""Loading the model off the UI thread: torch first, then the checkpoint.

``load_in_thread`` runs in a thread worker. It posts ``StackReady`` once torch and the sampling
module are imported (the sampling panel needs them) and ``ModelLoaded`` when the Generator is
ready or cannot be made, so the app never waits for either.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from textual.message import Message

from storytui.errors import StoryError


class StackReady(Message):
    """torch and the sampling module are imported: the sampling panel can be built."""


class ModelLoaded(Message):
    """A Generator, or why there is none (``error``), plus a notice worth showing."""

    def __init__(self, generator, path: Path | None, error: str | None, notice: str | None) -> None:
        super().__init__()
        self.generator = generator
        self.path = path
        self.error = error
        self.notice = notice


def load_in_thread(
    target: Path | None,
    preferred: str | None,
    announce_stack: bool,
    post: Callable[[Message], object],
) -> None:
    """Load ``target``, else the model named ``preferred``, else the best available one."""
    import storytui.sampling  # noqa: F401  (imports torch: the slow part)

    if announce_stack:
        post(StackReady())
    from storytui.checkpoint import NO_MODEL_HINT, load_checkpoint, resolve_model
    from storytui.session import generator_for

    notice = None
    try:
        if target is None:
            try:
                target = resolve_model(preferred)
            except StoryError as exc:
                if not preferred:
                    raise
                notice = f"{exc}; using the best available model instead"
                target = resolve_model(None)
        generator = generator_for(load_checkpoint(target))
    except StoryError as exc:
        error = str(exc)
        if error == NO_MODEL_HINT:
            error, notice = None, NO_MODEL_HINT
        post(ModelLoaded(None, None, error, notice))
        return
    post(ModelLoaded(generator, Path(target), None, notice))
