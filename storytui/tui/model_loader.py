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

    def __init__(
        self,
        generator,
        path: Path | None,
        error: str | None,
        notice: str | None,
        request: int = 0,
    ) -> None:
        super().__init__()
        self.generator = generator
        self.path = path
        self.error = error
        self.notice = notice
        self.request = request  # which load this answers: the app keeps only its latest


def load_in_thread(
    target: Path | None,
    preferred: str | None,
    announce_stack: bool,
    post: Callable[[Message], object],
    request: int = 0,
) -> None:
    """Load ``target``, else the model named ``preferred``, else the best one that loads;
    the answer carries ``request``."""
    import storytui.sampling  # noqa: F401  (imports torch: the slow part)

    if announce_stack:
        post(StackReady())
    from storytui.checkpoint import (
        NO_MODEL_HINT,
        load_best_checkpoint,
        load_checkpoint,
        resolve_model,
    )
    from storytui.session import generator_for

    notice = None
    try:
        checkpoint = None
        if target is not None:  # picked by the writer: its own error if it does not load
            checkpoint = load_checkpoint(target)
        elif preferred:
            try:
                checkpoint = load_checkpoint(resolve_model(preferred))
            except StoryError as exc:
                notice = f"{exc}; using the best available model instead"
        if checkpoint is None:
            checkpoint, skipped = load_best_checkpoint()
            if skipped and notice is None:
                notice = f"skipped a model that does not load: {skipped[0]}"
        generator = generator_for(checkpoint)
    except StoryError as exc:
        error = str(exc)
        if error == NO_MODEL_HINT:
            error, notice = None, NO_MODEL_HINT
        post(ModelLoaded(None, None, error, notice, request))
        return
    post(ModelLoaded(generator, Path(checkpoint.path), None, notice, request))
