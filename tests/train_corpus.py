"""Small synthetic corpora for the training tests, written into the test's own data dir."""

from __future__ import annotations

import json
import random
from typing import Any

from storytui import paths

NAMES = ["Alice", "Tom", "the old captain", "a small dog", "Mary", "the king", "a quiet girl"]
VERBS = ["walked to", "looked at", "ran past", "thought about", "sang to", "found", "opened"]
THINGS = ["the river", "a red door", "the garden", "the tall tower", "a silver key", "the sea"]


def sentence(rng: random.Random) -> str:
    return f"{rng.choice(NAMES).capitalize()} {rng.choice(VERBS)} {rng.choice(THINGS)}."


def write_books(n_books: int = 6, paragraphs: int = 40, seed: int = 0) -> None:
    """Cleaned 'books' of simple, repetitive sentences (a tiny model learns them quickly)."""
    rng = random.Random(seed)
    directory = paths.clean_dir("gutenberg")
    directory.mkdir(parents=True, exist_ok=True)
    for book in range(n_books):
        text = "\n\n".join(
            " ".join(sentence(rng) for _ in range(rng.randint(3, 6))) for _ in range(paragraphs)
        )
        (directory / f"pg{100 + book}.txt").write_text(text + "\n", encoding="utf-8")


def write_pairs(counts: dict[str, int] | None = None, seed: int = 1) -> None:
    """Cleaned WritingPrompts pairs: a prompt and a story of a few sentences, per split."""
    rng = random.Random(seed)
    directory = paths.clean_dir("writingprompts")
    directory.mkdir(parents=True, exist_ok=True)
    for split, n in (counts or {"train": 60, "valid": 12, "test": 6}).items():
        rows = []
        for _ in range(n):
            prompt = f"Write about {rng.choice(THINGS)} and {rng.choice(NAMES)}"
            story = " ".join(sentence(rng) for _ in range(rng.randint(4, 8)))
            rows.append(json.dumps({"prompt": prompt, "story": story, "source": "test"}))
        (directory / f"{split}.jsonl").write_text("\n".join(rows) + "\n", encoding="utf-8")


# Fast settings for the tiny preset: short sequences, small batches, fp32 on the CPU (exact).
FAST: dict[str, Any] = {"batch_size": 4, "block_size": 64, "dtype": "fp32"}


def pretrain(name: str, steps: int, **overrides: Any):
    """Build a tiny pretraining spec on the written books (not run)."""
    from trainer.stages import pretrain_spec

    halt = overrides.pop("halt_after_steps", None)
    seed = overrides.pop("seed", 1337)
    spec = pretrain_spec(
        name, "tiny", None, {**FAST, "max_steps": steps, **overrides}, seed=seed, device="cpu"
    )
    spec.halt_after_steps = halt
    spec.sample_tokens = 6
    return spec
