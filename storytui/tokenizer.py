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

# What the text so far still owes before it is valid UTF-8 again (RFC 3629). State 0 owes
# nothing; the others owe continuation bytes, and the next one must lie in [low, high]: after
# E0, ED, F0 and F4 that range is narrower, which rules out overlong forms, surrogates and
# code points past U+10FFFF (exactly what Python's strict decoder refuses).
UTF8_OWED: dict[int, tuple[int, int, int]] = {  # state: (bytes owed, low, high)
    1: (1, 0x80, 0xBF),
    2: (2, 0x80, 0xBF),
    3: (3, 0x80, 0xBF),
    4: (2, 0xA0, 0xBF),  # after E0
    5: (2, 0x80, 0x9F),  # after ED
    6: (3, 0x90, 0xBF),  # after F0
    7: (3, 0x80, 0x8F),  # after F4
}
UTF8_STATES = 1 + len(UTF8_OWED)
UTF8_INVALID = -1
UTF8_MAX_OWED = 3
# bytes owed in each state, and (last, for UTF8_INVALID as an index) more than can ever be owed
UTF8_OWED_BYTES = np.array([0, *(owed for owed, _, _ in UTF8_OWED.values()), UTF8_MAX_OWED + 1])


class Tokenizer:
    """A tiktoken encoding plus what storytui needs around it: name, hash, EOT, byte lengths."""

    def __init__(self, name: str, ranks: dict[bytes, int], *, bundled: bool = False) -> None:
        self.name = name
        self.ranks = ranks
        # every install has it (assets/ or gpt2), so a checkpoint need not carry a copy
        self.bundled = bundled
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
        self._utf8_tables: dict[int, Utf8Table] = {}

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

    def utf8_table(self, width: int | None = None) -> Utf8Table:
        """Which ids may follow in each UTF-8 state, for logits ``width`` ids wide (a model may
        have more outputs than the vocabulary; those extra ids are never allowed). Built once:
        about 20 ms for 16K tokens."""
        width = width or self.n_vocab
        if width not in self._utf8_tables:
            pieces = [self.token_bytes(token) for token in range(self.eot)]
            self._utf8_tables[width] = Utf8Table.build(pieces, width, self.name)
        return self._utf8_tables[width]

    def utf8_state(self, ids: list[int]) -> int:
        """The UTF-8 state the text of ``ids`` ends in (end of text's own text is ASCII)."""
        tail = ids[-4:]  # a character has at most 4 bytes, a token at least 1
        return utf8_state(b"".join(self.token_bytes(token) for token in tail))


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

    def push_bytes(self, data: bytes) -> str:
        """Part of a token (the rest of it was text already there: see ``Generator``'s healing)."""
        return self._decoder.decode(data)

    def flush(self) -> str:
        return self._decoder.decode(b"", final=True)


def _utf8_steps() -> np.ndarray:
    """``steps[state, byte]``: the state after ``byte``, ``UTF8_INVALID`` if it breaks UTF-8.

    The last row is the invalid state itself (all ``UTF8_INVALID``), so ``UTF8_INVALID`` used
    as a row index stays invalid: a whole token's bytes run through without a branch.
    """
    steps = np.full((UTF8_STATES + 1, 256), UTF8_INVALID, dtype=np.int8)
    steps[0, :0x80] = 0
    steps[0, 0xC2:0xE0] = 1
    steps[0, 0xE1:0xF0] = 2
    steps[0, [0xE0, 0xED]] = [4, 5]
    steps[0, 0xF1:0xF4] = 3
    steps[0, [0xF0, 0xF4]] = [6, 7]
    for state, (owed, low, high) in UTF8_OWED.items():
        steps[state, low : high + 1] = owed - 1
    return steps


UTF8_STEPS = _utf8_steps()


def utf8_state(data: bytes) -> int:
    """The state ``data`` leaves, resynchronising after an invalid byte as a decoder does (the
    byte that broke a sequence starts afresh), so that any tail of a text gives its state."""
    state = 0
    for byte in data:
        state = int(UTF8_STEPS[state, byte])
        if state == UTF8_INVALID:
            state = max(int(UTF8_STEPS[0, byte]), 0)
    return state


class Utf8Table:
    """Per UTF-8 state, the ids that keep the text valid and the state each one leaves.

    ``next_state[s, id]`` is the state after token ``id`` in state ``s``, ``UTF8_INVALID`` when
    its bytes cannot follow (a stray continuation byte, a lead byte cut short, an overlong or
    surrogate form inside it). End of text is allowed only in state 0, and leaves state 0.

    ``forbidden[s, b]`` masks, in state ``s``, the invalid ids and those that would leave more
    than ``b`` bytes owed: near the token limit a character must be finishable in the tokens
    left (one continuation byte each at worst), so a continuation never ends mid-character.
    ``bias`` is that mask as scores to add to logits (0 or ``-inf``): one vectorised add costs
    a few microseconds on 16K scores, a ``masked_fill`` several times that.
    """

    def __init__(self, next_state: np.ndarray) -> None:
        self.next_state = next_state
        owed_after = UTF8_OWED_BYTES[next_state]
        budgets = np.arange(UTF8_MAX_OWED + 1)[None, :, None]
        self.forbidden = owed_after[:, None, :] > budgets
        self.bias = np.where(self.forbidden, np.float32(-np.inf), np.float32(0))

    @classmethod
    def build(cls, pieces: list[bytes], width: int, name: str = "") -> Utf8Table:
        """Run the bytes of every token (``pieces[id]``) from every state at once; ids from
        ``len(pieces)`` up to ``width`` are end of text (the first) and unused outputs."""
        lengths = np.array([len(piece) for piece in pieces], dtype=np.int64)
        rows = np.repeat(np.arange(len(pieces)), lengths)
        columns = np.arange(len(rows)) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        padded = np.zeros((len(pieces), int(lengths.max(initial=0))), dtype=np.uint8)
        padded[rows, columns] = np.frombuffer(b"".join(pieces), dtype=np.uint8)
        states = np.tile(np.arange(UTF8_STATES, dtype=np.int8)[:, None], (1, len(pieces)))
        for position in range(padded.shape[1]):
            ids = np.flatnonzero(lengths > position)
            states[:, ids] = UTF8_STEPS[states[:, ids], padded[ids, position]]
        next_state = np.full((UTF8_STATES, width), UTF8_INVALID, dtype=np.int8)
        next_state[:, : len(pieces)] = states
        if width > len(pieces):
            next_state[0, len(pieces)] = 0
        table = cls(next_state)
        for state in range(UTF8_STATES):
            if table.forbidden[state, table.budget(state, 1)].all():
                raise StoryError(f"vocabulary {name!r} cannot finish UTF-8 state {state}")
        return table

    @staticmethod
    def budget(state: int, remaining: int) -> int:
        """Bytes a token may leave owed with ``remaining`` tokens to go (this one included).

        One continuation byte a token always fits, so that is the least budget ever asked for
        (a prompt that owes more bytes than tokens are left ends mid-character regardless)."""
        owed = int(UTF8_OWED_BYTES[state])
        return max(min(remaining - 1, UTF8_MAX_OWED), owed - 1)


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


def bundled_tokenizers() -> list[str]:
    """Vocabularies every install has: those in ``assets/tokenizer/`` and ``gpt2``."""
    return [*sorted(p.stem for p in paths.tokenizer_assets_dir().glob("*.tiktoken")), "gpt2"]


def trained_tokenizers() -> list[str]:
    """Vocabularies this user trained (``storytui train tokenizer``), by name."""
    names = {
        path.stem
        for folder in (paths.trained_tokenizers_dir(), paths.legacy_tokenizers_dir())
        for path in folder.glob("*.tiktoken")
    }
    return sorted(names - set(bundled_tokenizers()))


def available_tokenizers() -> list[str]:
    return [*bundled_tokenizers(), *trained_tokenizers()]


def trained_tokenizer_path(name: str) -> Path:
    return paths.trained_tokenizers_dir() / f"{name}.tiktoken"


def load_tokenizer(name: str | None = None) -> Tokenizer:
    """Load a vocabulary by name: bundled (``assets/tokenizer/<name>.tiktoken``, ``gpt2``)
    first, then one this user trained. A bundled name always means the bundled vocabulary."""
    name = name or DEFAULT_TOKENIZER
    if name == "gpt2":
        return _gpt2_tokenizer(os.environ.get(GPT2_VOCAB_ENV))
    bundled = paths.tokenizer_assets_dir() / f"{name}.tiktoken"
    if bundled.is_file():
        return read_tokenizer_file(bundled, name, bundled=True)
    for folder in (paths.trained_tokenizers_dir(), paths.legacy_tokenizers_dir()):
        path = folder / f"{name}.tiktoken"
        if path.is_file():
            return read_tokenizer_file(path, name)
    raise StoryError(f"unknown tokenizer {name!r}; available: {', '.join(available_tokenizers())}")


def check_vocabulary_name(name: str) -> str:
    """A name for a vocabulary of the user's: plain (``--tokenizer`` takes it back as typed),
    without the file's ``.tiktoken``, and no bundled vocabulary's in any letter case (which
    it would hide, or be confused with)."""
    paths.check_plain_name(name, "vocabulary")
    if name.lower().endswith(".tiktoken"):
        raise StoryError(f"vocabulary name {name!r}: leave out .tiktoken (the file adds it)")
    bundled = {known.lower(): known for known in bundled_tokenizers()}
    known = bundled.get(name.lower())
    if known == name:
        raise StoryError(f"{name!r} is the name of a bundled vocabulary; choose another")
    if known is not None:
        raise StoryError(
            f"{name!r} is the bundled vocabulary {known!r}'s name in other letters; choose another"
        )
    return name


def choose_tokenizer(choice: str) -> Tokenizer:
    """What ``--tokenizer`` names: a vocabulary by name, or a ``.tiktoken`` file (named by its
    stem, which must not be a bundled vocabulary's name: the two would be confused)."""
    path = Path(choice).expanduser()
    if choice.endswith(".tiktoken") or os.sep in choice:
        if not path.is_file():
            raise StoryError(f"--tokenizer: {path} is not a file")
        name = path.name.removesuffix(".tiktoken")
        try:
            check_vocabulary_name(name)
        except StoryError as exc:
            raise StoryError(
                f"--tokenizer {path}: {exc} (a checkpoint names its vocabulary by the file's "
                "name: rename the file)"
            ) from None
        return read_tokenizer_file(path, name)
    if choice not in available_tokenizers():
        raise StoryError(
            f"--tokenizer: no vocabulary named {choice!r} (available: "
            f"{', '.join(available_tokenizers())}); train one with "
            f"`storytui train tokenizer --name {choice}`, or give a .tiktoken file"
        )
    return load_tokenizer(choice)


def read_tokenizer_file(path: Path, name: str | None = None, *, bundled: bool = False) -> Tokenizer:
    """A ranks file as a Tokenizer, parsed once per version of the file (by mtime and size)."""
    try:
        stat = path.stat()
    except OSError as exc:
        raise StoryError(f"cannot read vocabulary file {path}: {exc.strerror}") from exc
    resolved = str(path.resolve())
    return _tokenizer_file(name or path.stem, resolved, stat.st_mtime_ns, stat.st_size, bundled)


@cache
def _tokenizer_file(name: str, path: str, _mtime: int, _size: int, bundled: bool) -> Tokenizer:
    return Tokenizer(name, _load_ranks_file(Path(path)), bundled=bundled)


@cache
def _gpt2_tokenizer(_local: str | None) -> Tokenizer:
    return Tokenizer("gpt2", _gpt2_ranks(), bundled=True)


def _load_ranks_file(path: Path) -> dict[bytes, int]:
    """Parse a tiktoken ranks file ourselves: tiktoken's loader caches by path in a temp dir, so
    a retrained vocabulary at the same path would silently load the stale copy."""
    try:
        lines = path.read_bytes().splitlines()
    except OSError as exc:
        raise StoryError(f"cannot read vocabulary file {path}: {exc.strerror or exc}") from exc
    ranks: dict[bytes, int] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            token, rank = line.split()
            ranks[base64.b64decode(token, validate=True)] = int(rank)
        except ValueError as exc:
            raise StoryError(
                f"vocabulary file {path}: line {number} is not a base64 token and its rank"
            ) from exc
    if sorted(ranks.values()) != list(range(len(ranks))):
        raise StoryError(f"vocabulary file {path} has gaps or duplicates in its ranks")
    missing = sum(bytes([byte]) not in ranks for byte in range(256))
    if missing:  # tiktoken needs every byte as a token of its own (else it panics)
        raise StoryError(
            f"vocabulary file {path} is not a byte-level vocabulary: {missing} of the 256 "
            "single-byte tokens are missing"
        )
    return ranks


def _gpt2_ranks() -> dict[bytes, int]:
    """GPT-2 ranks from ``$STORYTUI_GPT2_VOCAB`` if set, else tiktoken's download (cached)."""
    local = os.environ.get(GPT2_VOCAB_ENV)
    if local:
        path = Path(local).expanduser()
        if not path.is_file():
            raise StoryError(f"{GPT2_VOCAB_ENV} points to {path}, which is not a file")
        return _load_ranks_file(path)
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(paths.tiktoken_cache_dir()))
    try:
        encoding = tiktoken.get_encoding("gpt2")
    except Exception as exc:
        raise StoryError(
            "the GPT-2 vocabulary could not be downloaded; set "
            f"{GPT2_VOCAB_ENV} to a local gpt2.tiktoken file ({type(exc).__name__})"
        ) from exc
    return dict(encoding._mergeable_ranks)
