"""Train the project's vocabulary from the cleaned corpora in the data dir."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

from rich.console import Console

from storytui import paths
from storytui.errors import StoryError
from storytui.tokenizer import check_vocabulary_name, trained_tokenizer_path
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


def default_name(size: int) -> str:
    """``custom-16k`` for 16,384 tokens: a name that says what it is and hides no bundled one."""
    return f"custom-{size // 1024}k" if size % 1024 == 0 else f"custom-{size}"


def output_path(name: str | None, size: int, out: Path | None, force: bool) -> Path:
    """Where the vocabulary goes: ``--out FILE.tiktoken``, else the data dir's
    ``tokenizers/NAME.tiktoken``. Either way its name (the file's, without ``.tiktoken``) is one
    ``--tokenizer`` takes back, and an existing file is replaced only with ``--force``. Checked
    before training, which takes minutes on real text."""
    if out is None:
        path = trained_tokenizer_path(
            check_vocabulary_name(default_name(size) if name is None else name)
        )
    else:
        path = out.expanduser()
        if path.is_dir():
            raise StoryError(f"--out {path} is a folder; give a file: {path / 'NAME.tiktoken'}")
        if path.suffix != ".tiktoken":
            raise StoryError(f"--out {path}: the file's name must end in .tiktoken")
        stem = path.name.removesuffix(".tiktoken")
        if name is not None and name != stem:
            raise StoryError(
                f"--name {name!r} and --out {path} disagree: a vocabulary's name is its file's "
                "name; give one of them"
            )
        check_vocabulary_name(stem)
        if not path.parent.is_dir():
            raise StoryError(f"--out {path}: the folder {path.parent} does not exist")
    if path.exists() and not force:
        raise StoryError(
            f"{path} exists; --force replaces it (checkpoints trained with it keep their own "
            "copy), or choose another name"
        )
    return path


def run_train_tokenizer(name: str | None, size: int, out: Path | None, force: bool = False) -> Path:
    if not MIN_SIZE <= size <= MAX_SIZE:
        raise StoryError(
            f"invalid --size: {size} (must be between {MIN_SIZE} and {MAX_SIZE:,}: the 256 "
            "byte tokens, at least one merge and <|endoftext|>)"
        )
    path = output_path(name, size, out, force)
    console = Console(soft_wrap=True, highlight=False)  # a path or command stays on one line
    started = time.perf_counter()
    ranks = train_tokenizer_file(corpus_texts(), path, size - 1)
    console.print(
        f"Trained {len(ranks):,} ranks (+ <|endoftext|>) in "
        f"{time.perf_counter() - started:.0f}s -> {path}"
    )
    if len(ranks) + 1 < size:
        console.print(
            f"note: the text had pairs worth merging for only {len(ranks) + 1:,} of the "
            f"{size:,} tokens asked for; more text gives a larger vocabulary"
        )
    choice = str(path) if out is not None else path.stem
    console.print(f"Pretrain with it: storytui train pretrain --tokenizer {choice} --out NAME")
    return path
