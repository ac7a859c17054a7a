"""Load a model by name into a ready ``Generator``: shared by the CLI and the app."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from storytui.checkpoint import Checkpoint, load_best_checkpoint, load_checkpoint, resolve_model
from storytui.errors import StoryError
from storytui.generation import DEFAULT_PRECISION, PRECISIONS, Generator


def load_generator(
    name_or_dir: str | None,
    precision: str | None = None,
    on_skip: Callable[[str], object] | None = None,
) -> Generator:
    """The named model, or with ``None`` the best one that loads; ``on_skip`` hears why each
    better one could not. A bad ``precision`` is refused before any model is read."""
    check_precision(precision)
    if name_or_dir is not None:
        return generator_for(load_checkpoint(resolve_model(name_or_dir)), precision)
    checkpoint, skipped = load_best_checkpoint()
    for reason in skipped:
        if on_skip is not None:
            on_skip(reason)
    return generator_for(checkpoint, precision)


def check_precision(precision: str | None) -> None:
    """None (the default for the model) or one of ``PRECISIONS``, exactly as spelt."""
    if precision is not None and precision not in PRECISIONS:
        raise StoryError(f"invalid precision {precision!r} (choose {', '.join(PRECISIONS)})")


def generator_for(checkpoint: Checkpoint, precision: str | None = None) -> Generator:
    check_precision(precision)
    if precision is None:
        # imported seed models run in fp32 so greedy decoding repeats the original's tokens
        precision = "fp32" if checkpoint.meta.model.arch == "seed" else DEFAULT_PRECISION
    generator = Generator(
        checkpoint.model,
        checkpoint.tokenizer,
        template=checkpoint.meta.template,
        precision=precision,
    )
    generator.checkpoint_name = checkpoint.name
    generator.checkpoint_path = Path(checkpoint.path)
    return generator
