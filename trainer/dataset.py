"""Token shards: documents tokenised once into flat memory-mapped arrays, batched at random.

A dataset is a folder ``shards/<name>/`` holding, per split, ``<split>.bin`` (token ids, uint16
or uint32 for vocabularies over 65,536) and ``<split>.mask.bin`` (uint8, 1 where the token is a
training target), plus ``meta.json`` (tokenizer name and hash, a fingerprint of the input text,
counts per split). Each document is ``header tokens + body tokens + <|endoftext|>``; the header
(a finetuning prompt) is conditioning only, so its mask is 0 and its tokens never enter the
loss. Building is skipped when the tokenizer and the input text are unchanged, and replaced as
one directory rename when they are not, so a killed build never leaves a half dataset behind.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from storytui import paths
from storytui.atomic import atomic_directory
from storytui.errors import StoryError
from storytui.story_format import StoryTemplate, format_story

FORMAT_VERSION = 1
META = "meta.json"
IGNORE_INDEX = -100  # what torch's cross-entropy skips
_CHUNK_CHARS = 4_000_000  # text handed to one encode_batch call

Document = tuple[str, str]  # (header masked from the loss, body trained on)


class TokenizerLike(Protocol):
    name: str
    hash: str
    n_vocab: int
    eot: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...


@dataclass(frozen=True)
class SplitStats:
    documents: int
    tokens: int
    targets: int
    bytes: int
    target_bytes: int


def token_dtype(n_vocab: int) -> np.dtype:
    """uint16 holds ids up to 65,535; bigger vocabularies need uint32."""
    return np.dtype(np.uint16 if n_vocab <= 1 << 16 else np.uint32)


class ShardSet:
    """A built dataset: memory-mapped splits and the batches training and evaluation draw."""

    def __init__(self, name: str, directory: Path, meta: dict) -> None:
        self.name = name
        self.directory = directory
        self.meta = meta
        self.dtype = np.dtype(meta["dtype"])
        self._arrays: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def load(cls, name: str) -> ShardSet:
        directory = paths.shards_dir(name)
        meta = _read_meta(directory)
        if meta is None:
            raise StoryError(f"no token shards named {name!r} in {directory.parent}")
        if not _files_complete(directory, meta):
            raise StoryError(f"token shards {name!r} are incomplete; build them again")
        return cls(name, directory, meta)

    @property
    def splits(self) -> list[str]:
        return list(self.meta["splits"])

    def stats(self, split: str) -> SplitStats:
        return SplitStats(**self._split_meta(split))

    def matches(self, tokenizer: TokenizerLike) -> bool:
        """True when these shards were made with exactly this vocabulary."""
        return self.meta["tokenizer_hash"] == tokenizer.hash

    def arrays(self, split: str) -> tuple[np.ndarray, np.ndarray]:
        """(token ids, target mask) of one split, memory-mapped read-only."""
        if split not in self._arrays:
            count = self._split_meta(split)["tokens"]
            self._arrays[split] = (
                _map(self.directory / f"{split}.bin", self.dtype, count),
                _map(self.directory / f"{split}.mask.bin", np.dtype(np.uint8), count),
            )
        return self._arrays[split]

    def get_batch(
        self,
        split: str,
        batch_size: int,
        block_size: int,
        generator: torch.Generator,
        device: str | torch.device = "cpu",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``batch_size`` random windows: ``x`` the inputs, ``y`` the next tokens, with
        ``y = -100`` where the mask says the token is not a target (a finetuning prompt)."""
        tokens, mask = self.arrays(split)
        if len(tokens) <= block_size:
            raise StoryError(
                f"split {split!r} of {self.name!r} has {len(tokens):,} tokens; "
                f"a batch needs more than block size {block_size}"
            )
        starts = torch.randint(0, len(tokens) - block_size, (batch_size,), generator=generator)
        return self._windows(tokens, mask, [(int(s), block_size, 0) for s in starts], device)

    def iter_eval_batches(
        self,
        split: str,
        batch_size: int,
        block_size: int,
        max_batches: int | None = None,
        device: str | torch.device = "cpu",
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Cover the split in order, every target exactly once (the last window is shifted
        back to stay full, its already-seen targets set to -100), the same way every time."""
        tokens, mask = self.arrays(split)
        windows = _eval_windows(len(tokens), block_size)
        for i in range(0, len(windows), batch_size):
            if max_batches is not None and i // batch_size >= max_batches:
                return
            yield self._windows(tokens, mask, windows[i : i + batch_size], device)

    def _windows(
        self,
        tokens: np.ndarray,
        mask: np.ndarray,
        windows: list[tuple[int, int, int]],
        device: str | torch.device,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        length = windows[0][1]
        ids = np.stack([tokens[s : s + length + 1] for s, _, _ in windows]).astype(np.int64)
        targets = np.stack([mask[s + 1 : s + length + 1] for s, _, _ in windows]) == 0
        for row, (_, _, seen) in enumerate(windows):
            targets[row, :seen] = True
        x = torch.from_numpy(ids[:, :-1].copy())
        y = torch.from_numpy(ids[:, 1:].copy())
        y[torch.from_numpy(targets)] = IGNORE_INDEX
        device = torch.device(device)
        if device.type == "cuda":
            return x.pin_memory().to(device, non_blocking=True), y.pin_memory().to(
                device, non_blocking=True
            )
        return x.to(device), y.to(device)

    def _split_meta(self, split: str) -> dict:
        try:
            return self.meta["splits"][split]
        except KeyError:
            raise StoryError(
                f"token shards {self.name!r} have no split {split!r} "
                f"(they have {', '.join(self.splits)})"
            ) from None


def _eval_windows(n_tokens: int, block_size: int) -> list[tuple[int, int, int]]:
    """(start, length, targets already covered) for an in-order pass over ``n_tokens``."""
    n_targets = n_tokens - 1
    if n_targets <= 0:
        return []
    if n_targets <= block_size:
        return [(0, n_targets, 0)]
    windows = [(s, block_size, 0) for s in range(0, n_targets - block_size + 1, block_size)]
    covered = windows[-1][0] + block_size
    if covered < n_targets:
        start = n_targets - block_size
        windows.append((start, block_size, covered - start))
    return windows


def _map(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", shape=(count,))


# --- building ------------------------------------------------------------------------------


def build_shards(
    name: str,
    documents: Mapping[str, Iterable[Document]],
    tokenizer: TokenizerLike,
    *,
    force: bool = False,
    console: Console | None = None,
    progress: bool = True,
) -> ShardSet:
    """Tokenise ``{split: [(header, body), ...]}`` into ``shards/<name>/`` and return it.

    Returns the existing shards at once when they were built from the same text with the same
    vocabulary; rebuilds when either changed (or ``force``). One process builds at a time: the
    ranks of a data-parallel run all ask for the same shards, and all but the first then take
    what it built (even with ``force``: it was built after they asked) instead of tokenising
    the whole corpus again.
    """
    docs = {split: list(items) for split, items in documents.items()}
    if not docs:
        raise StoryError(f"nothing to tokenise for {name!r}: no splits given")
    fingerprint = fingerprint_documents(docs)
    directory = paths.shards_dir(name)
    asked = _read_meta(directory)
    with _one_builder(directory):
        existing = _read_meta(directory)
        built_meanwhile = existing is not None and existing != asked
        if (
            (not force or built_meanwhile)
            and existing is not None
            and existing.get("format") == FORMAT_VERSION
            and existing.get("tokenizer_hash") == tokenizer.hash
            and existing.get("fingerprint") == fingerprint
            and _files_complete(directory, existing)
        ):
            return ShardSet(name, directory, existing)
        return _write_shards(name, directory, docs, tokenizer, fingerprint, console, progress)


@contextlib.contextmanager
def _one_builder(directory: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``directory`` while building it; where the lock cannot be
    taken (no fcntl, a folder that cannot be written) build without it: the write itself
    reports a folder it cannot write to."""
    try:
        import fcntl

        directory.parent.mkdir(parents=True, exist_ok=True)
        handle = open(directory.parent / f".{directory.name}.lock", "a")  # noqa: SIM115
    except (ImportError, OSError):
        yield
        return
    with handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the handle closes
        yield


def _write_shards(
    name: str,
    directory: Path,
    docs: dict[str, list[Document]],
    tokenizer: TokenizerLike,
    fingerprint: str,
    console: Console | None,
    progress: bool,
) -> ShardSet:
    dtype = token_dtype(tokenizer.n_vocab)
    bar = _progress(console, progress)
    with bar, atomic_directory(directory) as tmp:
        splits = {}
        for split, items in docs.items():
            total = sum(len(h) + len(b) for h, b in items)
            task = bar.add_task(f"{name}/{split}", total=total or 1)
            stats = _write_split(
                tmp, split, items, tokenizer, dtype, lambda n, t=task: bar.advance(t, n)
            )
            bar.update(task, completed=total or 1)
            splits[split] = stats.__dict__
        meta = {
            "format": FORMAT_VERSION,
            "name": name,
            "tokenizer": tokenizer.name,
            "tokenizer_hash": tokenizer.hash,
            "n_vocab": tokenizer.n_vocab,
            "eot": tokenizer.eot,
            "dtype": dtype.name,
            "fingerprint": fingerprint,
            "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
            "splits": splits,
        }
        (tmp / META).write_text(json.dumps(meta, indent=2), encoding="utf-8")
    return ShardSet(name, directory, meta)


def fingerprint_documents(documents: Mapping[str, list[Document]]) -> str:
    """A hash of every split's text, so that changed or added data forces a rebuild."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"format {FORMAT_VERSION}\n".encode())
    for split in sorted(documents):
        digest.update(f"split {split} {len(documents[split])}\n".encode())
        for header, body in documents[split]:
            for part in (header, body):
                data = part.encode("utf-8")
                digest.update(len(data).to_bytes(8, "little"))
                digest.update(data)
    return digest.hexdigest()


def _write_split(
    directory: Path,
    split: str,
    documents: list[Document],
    tokenizer: TokenizerLike,
    dtype: np.dtype,
    advance: Callable[[int], None],
) -> SplitStats:
    tokens = targets = n_bytes = target_bytes = 0
    with (
        open(directory / f"{split}.bin", "wb") as token_file,
        open(directory / f"{split}.mask.bin", "wb") as mask_file,
    ):
        for chunk in _chunks(documents):
            headers = tokenizer.encode_batch([h for h, _ in chunk])
            bodies = tokenizer.encode_batch([b for _, b in chunk])
            ids: list[int] = []
            marks: list[np.ndarray] = []
            for head, body in zip(headers, bodies, strict=True):
                ids += head
                ids += body
                ids.append(tokenizer.eot)
                marks.append(np.zeros(len(head), dtype=np.uint8))
                marks.append(np.ones(len(body) + 1, dtype=np.uint8))
            token_file.write(np.asarray(ids, dtype=dtype).tobytes())
            mask = np.concatenate(marks) if marks else np.zeros(0, dtype=np.uint8)
            mask_file.write(mask.tobytes())
            tokens += len(ids)
            targets += int(mask.sum())
            for header, body in chunk:
                body_bytes = len(body.encode("utf-8"))
                n_bytes += len(header.encode("utf-8")) + body_bytes
                target_bytes += body_bytes
            advance(sum(len(h) + len(b) for h, b in chunk))
    return SplitStats(len(documents), tokens, targets, n_bytes, target_bytes)


def _chunks(documents: list[Document]) -> Iterator[list[Document]]:
    chunk: list[Document] = []
    size = 0
    for doc in documents:
        chunk.append(doc)
        size += len(doc[0]) + len(doc[1])
        if size >= _CHUNK_CHARS or len(chunk) >= 1024:
            yield chunk
            chunk, size = [], 0
    if chunk:
        yield chunk


def _progress(console: Console | None, enabled: bool) -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.percentage:>3.0f}%"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console or Console(stderr=True),
        transient=True,
        disable=not enabled,
    )


def _read_meta(directory: Path) -> dict | None:
    try:
        meta = json.loads((directory / META).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return meta if isinstance(meta, dict) and isinstance(meta.get("splits"), dict) else None


def _files_complete(directory: Path, meta: dict) -> bool:
    itemsize = np.dtype(meta.get("dtype", "uint16")).itemsize
    for split, info in meta["splits"].items():
        n = info.get("tokens", -1)
        for file, size in ((f"{split}.bin", n * itemsize), (f"{split}.mask.bin", n)):
            path = directory / file
            if not path.exists() or path.stat().st_size != size:
                return False
    return True


# --- the project's two datasets ------------------------------------------------------------


def heldout_books(val_fraction: float = 0.03) -> list[Path]:
    """The cleaned books kept out of pretraining: ~3% of them (at least one; those whose file
    name hashes lowest, so the choice is stable). Evaluation reads the same list."""
    from trainer.sources.gutenberg import cleaned_books

    books = cleaned_books()
    n_val = max(1, round(len(books) * val_fraction)) if len(books) >= 2 else 0
    return sorted(books, key=lambda p: _hash_fraction(p.stem))[:n_val]


def pretrain_documents(val_fraction: float = 0.03) -> dict[str, list[Document]]:
    """Cleaned Gutenberg books, split by book: the held-out books are ``val``, so validation
    text is never trained on, not even as neighbouring paragraphs of the same book."""
    from trainer.sources.gutenberg import cleaned_books

    books = cleaned_books()
    if not books:
        raise StoryError("no cleaned books yet; run `storytui data download gutenberg` first")
    held_out = set(heldout_books(val_fraction))
    splits: dict[str, list[Document]] = {"train": [], "val": []}
    for book in books:
        splits["val" if book in held_out else "train"].append(("", book.read_text("utf-8")))
    return splits


def finetune_documents(
    template: StoryTemplate | None = None, tales: bool = False
) -> dict[str, list[Document]]:
    """WritingPrompts pairs laid out by ``format_story``: the prompt header is conditioning,
    the story is the target. Official splits map train→train, valid→val, test→test.

    With ``tales`` the training split also gets the tales of the story collections among the
    books, each titled by its prompt (held-out books excluded); evaluation stays WritingPrompts.
    """
    from trainer.sources.tales import load_tales
    from trainer.sources.writingprompts import load_pairs

    splits: dict[str, list[Document]] = {}
    for source_split, split in (("train", "train"), ("valid", "val"), ("test", "test")):
        formatted = (
            format_story(p.story, p.prompt, template=template) for p in load_pairs(source_split)
        )
        splits[split] = [(f.header, f.story) for f in formatted]
    if not splits["train"]:
        raise StoryError(
            "no WritingPrompts pairs yet; run `storytui data download writingprompts` first"
        )
    if tales:
        found = load_tales(exclude=set(heldout_books()))
        if not found:
            raise StoryError(
                "no tales found: --tales needs the story collections among the books; "
                "run `storytui data download gutenberg` first"
            )
        formatted_tales = (format_story(t.story, t.title, template=template) for t in found)
        splits["train"] += [(f.header, f.story) for f in formatted_tales]
    return splits


def _hash_fraction(text: str) -> float:
    return int(hashlib.sha1(text.encode("utf-8")).hexdigest()[:8], 16) / 0x1_0000_0000
