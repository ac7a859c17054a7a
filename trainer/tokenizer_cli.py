"""Train the project's vocabulary from the cleaned corpora in the data dir."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from storytui import paths
from storytui.errors import StoryError
from trainer.bpe import train_tokenizer_file


def corpus_texts() -> Iterator[str]:
    """Every cleaned book and every WritingPrompts train story (never valid/test)."""
    books = sorted(paths.clean_dir("gutenberg").glob("*.txt"))
    pairs = paths.clean_dir("writingprompts") / "train.jsonl"
    if not books and not pairs.exists():
        raise StoryError(
            "no cleaned text yet: run `storytui data download gutenberg --from DIR` "
            "and `storytui data download writingprompts --from PATH` first"
        )
    for book in books:
        yield book.read_text(encoding="utf-8")
    if pairs.exists():
        with pairs.open(encoding="utf-8") as handle:
            for line in handle:
                row = json.loads(line)
                yield f"{row.get('prompt', '')}\n{row['story']}\n"


MIN_SIZE = 258  # the 256 single bytes, one merge and <|endoftext|>
MAX_SIZE = 1 << 16  # token shards keep ids in 16 bits for vocabularies up to this size


def run_train_tokenizer(name: str, size: int, out: Path | None) -> Path:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise StoryError(
            f"invalid --size: {size} (must be between {MIN_SIZE} and {MAX_SIZE:,}: the 256 "
            "byte tokens, at least one merge and <|endoftext|>)"
        )
    console = Console()
    out = out or paths.tokenizer_cache_dir() / f"{name}.tiktoken"
    started = time.perf_counter()
    ranks = train_tokenizer_file(corpus_texts(), out, size - 1)
    console.print(
        f"Trained {len(ranks):,} ranks (+ <|endoftext|>) in {time.perf_counter() - started:.0f}s -> {out}"
    )
    return out
