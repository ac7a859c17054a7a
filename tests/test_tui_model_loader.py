"""The app's model loading: the model it opens with when the best one is broken."""

from __future__ import annotations

from pathlib import Path

from storytui.tui.model_loader import ModelLoaded, load_in_thread
from tests.conftest import make_tiny_checkpoint
from tests.test_checkpoint import _corrupt


def _load(target: Path | None, preferred: str | None) -> ModelLoaded:
    posted = []
    load_in_thread(target, preferred, announce_stack=False, post=posted.append)
    (loaded,) = posted
    return loaded


def test_a_broken_best_model_opens_the_next_with_a_notice(storytui_home: Path) -> None:
    models = storytui_home / "models"
    good = make_tiny_checkpoint(models / "good", created="2026-01-01T00:00:00+00:00")
    broken = make_tiny_checkpoint(models / "broken", created="2026-02-01T00:00:00+00:00")
    _corrupt(broken, "truncated")
    for preferred in (None, "broken"):  # the best available, or the last one used
        loaded = _load(None, preferred)
        assert loaded.generator is not None and loaded.path == good
        assert loaded.error is None and "broken" in loaded.notice
    picked = _load(broken, None)  # chosen in the model picker: its own error, nothing else
    assert picked.generator is None and "corrupt or truncated" in picked.error
