"""Shared fixtures: an isolated data dir for every test and small checkpoints made on the spot."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from storytui.checkpoint import CheckpointMeta, save_checkpoint
from storytui.model import PRESETS, StoryModel
from storytui.story_format import StoryTemplate
from storytui.tokenizer import load_tokenizer


@pytest.fixture(autouse=True)
def storytui_home(tmp_path_factory, monkeypatch) -> Path:
    """Every test gets its own empty STORYTUI_HOME; nothing touches the real data dir."""
    home = tmp_path_factory.mktemp("storytui-home")
    monkeypatch.setenv("STORYTUI_HOME", str(home))
    # tests start as a user with no model at all; those about the bundled model opt back in
    monkeypatch.setenv("STORYTUI_BUNDLED_MODEL", str(home / "no-bundled-model"))
    return home


@pytest.fixture(autouse=True)
def exact_numerics(monkeypatch) -> None:
    """Generators made without a precision run in fp32 during tests.

    The default depends on the CPU (int4 on AVX-512, int8 elsewhere) and quantised rounding on
    the path that filled the KV cache (a token decoded alone and the same token encoded in a
    chunk round differently), so tests that compare the app's text with a fresh generation, or
    with a picture, would depend on the machine and on timing. Tests about the precisions ask
    for theirs by name.
    """
    monkeypatch.setattr("storytui.session.DEFAULT_PRECISION", "fp32")


def make_tiny_checkpoint(
    directory: Path,
    *,
    seed: int = 0,
    stage: str = "pretrain",
    created: str | None = None,
    template: StoryTemplate | None = None,
) -> Path:
    """A randomly initialised `tiny` model saved as a real checkpoint."""
    tokenizer = load_tokenizer()
    torch.manual_seed(seed)
    model = StoryModel(PRESETS["tiny"].config(tokenizer.n_vocab))
    meta = CheckpointMeta(
        model=model.config,
        tokenizer=tokenizer.name,
        tokenizer_hash=tokenizer.hash,
        preset="tiny",
        stage=stage,
        template=template or StoryTemplate(),
    )
    if created:
        meta.created = created
    return save_checkpoint(directory, model, meta)


@pytest.fixture
def tiny_checkpoint(storytui_home: Path) -> Path:
    """A tiny model installed in the data dir under the name `tiny-test`."""
    return make_tiny_checkpoint(storytui_home / "models" / "tiny-test")
