"""Byte-level BPE tokenizers as ``tiktoken`` encodings.

``storytui-16k`` is the project's own vocabulary (trained by ``storytui train tokenizer``, shipped
in ``assets/tokenizer/``); ``gpt2`` is the 50,257-token GPT-2 vocabulary that imported seed models
use. Both are plain tiktoken ranks files, so encoding is tiktoken's fast Rust BPE. Every
checkpoint records the name and hash of its vocabulary, and loading refuses a mismatch.
"""

from __future__ import annotations

import base64
import codecs
import hashlib
import os
from functools import cache
from pathlib import Path

import numpy as np
import tiktoken

from storytui import paths
from storytui.errors import StoryError

DEFAULT_TOKENIZER = "storytui-16k"
EOT_TEXT = "<|endoftext|>"
# GPT-2's pre-tokenisation: contractions, letters, digits, punctuation runs, whitespace.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_VOCAB_ENV = "STORYTUI_GPT2_VOCAB"


class Tokenizer:
    """A tiktoken encoding plus what storytui needs around it: name, hash, EOT, byte lengths."""

    def __init__(self, name: str, ranks: dict[bytes, int]) -> None:
        self.name = name
        self.eot = len(ranks)
        self.encoding = tiktoken.Encoding(
            name=name,
            pat_str=GPT2_PATTERN,
            mergeable_ranks=ranks,
            special_tokens={EOT_TEXT: self.eot},
        )
        self.n_vocab = self.encoding.n_vocab
        self.hash = ranks_hash(ranks)
        self._byte_lengths: np.ndarray | None = None

    def encode(self, text: str) -> list[int]:
        """Encode ordinary text; special-token strings in it are treated as plain text."""
        return self.encoding.encode_ordinary(text)

    def encode_batch(self, texts: list[str]) -> list[list[int]]:
        return self.encoding.encode_ordinary_batch(texts, num_threads=max(1, os.cpu_count() or 1))

    def decode(self, ids: list[int]) -> str:
        return self.encoding.decode(ids, errors="replace")

    def token_bytes(self, token: int) -> bytes:
        return self.encoding.decode_single_token_bytes(token)

    def token_byte_lengths(self) -> np.ndarray:
        """UTF-8 bytes each id stands for (EOT counts as 0): the denominator of bits per byte."""
        if self._byte_lengths is None:
            lengths = np.zeros(self.n_vocab, dtype=np.int64)
            for token in range(self.eot):
                lengths[token] = len(self.token_bytes(token))
            self._byte_lengths = lengths
        return self._byte_lengths

    def stream_decoder(self) -> StreamDecoder:
        return StreamDecoder(self)


class StreamDecoder:
    """Turns tokens into text deltas that never split a UTF-8 character.

    A token may end in the middle of a multi-byte character; its bytes wait until the character
    is complete. ``flush`` returns whatever is left (as U+FFFD if it can never complete).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token: int) -> str:
        if token == self._tokenizer.eot:
            return ""
        return self._decoder.decode(self._tokenizer.token_bytes(token))

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


def ranks_hash(ranks: dict[bytes, int]) -> str:
    """A stable fingerprint of a vocabulary, whatever file or download it came from."""
    digest = hashlib.sha256()
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        digest.update(base64.b64encode(token) + b" " + str(rank).encode() + b"\n")
    return "sha256:" + digest.hexdigest()[:16]


def write_ranks(path: Path, ranks: dict[bytes, int]) -> None:
    """Write ranks in tiktoken's file format (base64 token, space, rank)."""
    from storytui.atomic import atomic_write_text

    lines = [
        f"{base64.b64encode(token).decode()} {rank}"
        for token, rank in sorted(ranks.items(), key=lambda item: item[1])
    ]
    atomic_write_text(path, "\n".join(lines) + "\n")


def available_tokenizers() -> list[str]:
    bundled = sorted(p.stem for p in paths.tokenizer_assets_dir().glob("*.tiktoken"))
    return [*bundled, "gpt2"]


@cache
def load_tokenizer(name: str | None = None) -> Tokenizer:
    """Load a vocabulary by name: a bundled ``assets/tokenizer/<name>.tiktoken`` or ``gpt2``."""
    name = name or DEFAULT_TOKENIZER
    if name == "gpt2":
        return Tokenizer("gpt2", _gpt2_ranks())
    candidates = [
        paths.tokenizer_assets_dir() / f"{name}.tiktoken",
        paths.cache_dir() / "tokenizers" / f"{name}.tiktoken",
    ]
    for path in candidates:
        if path.is_file():
            return Tokenizer(name, _load_ranks_file(path))
    raise StoryError(f"unknown tokenizer {name!r}; available: {', '.join(available_tokenizers())}")


def _load_ranks_file(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken ranks file ourselves: tiktoken's loader caches by path in a temp dir, so
    a retrained vocabulary at the same path would silently load the stale copy."""
    try:
        ranks: dict[bytes, int] = {}
        for line in path.read_bytes().splitlines():
            if line.strip():
                token, rank = line.split()
                ranks[base64.b64decode(token, validate=True)] = int(rank)
    except (ValueError, OSError) as exc:
        raise StoryError(f"cannot read vocabulary file {path}: {exc}") from exc
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise StoryError(f"vocabulary file {path} has gaps or duplicates in its ranks")
    return ranks


def _gpt2_ranks() -> dict[bytes, int]:
    """GPT-2 ranks from ``$STORYTUI_GPT2_VOCAB`` if set, else tiktoken's download (cached)."""
    local = os.environ.get(GPT2_VOCAB_ENV)
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise StoryError(f"{GPT2_VOCAB_ENV} points to {path}, which is not a file")
        return _load_ranks_file(path)
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(paths.cache_dir() / "tiktoken"))
    try:
        encoding = tiktoken.get_encoding("gpt2")
    except Exception as exc:
        raise StoryError(
            "the GPT-2 vocabulary could not be downloaded; set "
            f"{GPT2_VOCAB_ENV} to a local gpt2.tiktoken file ({type(exc).__name__})"
        ) from exc
    return dict(encoding._mergeable_ranks)
