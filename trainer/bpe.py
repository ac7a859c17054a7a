"""Train a byte-level BPE vocabulary and save it as a tiktoken ranks file.

The merges are learned with Hugging Face ``tokenizers`` (Rust, minutes on ~100 MB instead of
hours in Python) over the same GPT-2 pre-tokenisation that storytui's tiktoken encoding uses, then
written as tiktoken ranks: the 256 single bytes first, then each merge in the order it was learned.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from pathlib import Path

from storytui.tokenizer import GPT2_PATTERN, write_ranks


def _byte_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from bytes to printable characters (what ByteLevel uses)."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            chars.append(256 + extra)
            extra += 1
    return {byte: chr(char) for byte, char in zip(printable, chars, strict=True)}


def train_bpe(
    texts: Iterable[str], n_ranks: int, *, show_progress: bool = True
) -> dict[bytes, int]:
    """Learn ``n_ranks`` mergeable ranks (256 bytes + merges) from ``texts``."""
    from tokenizers import Regex, pre_tokenizers, trainers
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers.models import BPE

    if n_ranks <= 256:
        raise ValueError("a byte-level vocabulary needs more than 256 ranks")
    hf = HFTokenizer(BPE())
    hf.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(GPT2_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=n_ranks,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=show_progress,
        min_frequency=2,
    )
    hf.train_from_iterator(_chunks(texts), trainer=trainer)
    merges = json.loads(hf.to_str())["model"]["merges"]

    decode = {char: byte for byte, char in _byte_to_unicode().items()}
    ranks: dict[bytes, int] = {bytes([byte]): byte for byte in range(256)}
    for merge in merges:
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        token = bytes(decode[c] for c in left) + bytes(decode[c] for c in right)
        if token not in ranks:
            ranks[token] = len(ranks)
        if len(ranks) >= n_ranks:
            break
    return ranks


def _chunks(texts: Iterable[str], size: int = 1 << 20) -> Iterator[str]:
    """Feed long books in ~1 MB pieces (split on paragraphs) so memory stays flat."""
    for text in texts:
        start = 0
        while start < len(text):
            end = text.find("\n\n", start + size)
            end = len(text) if end == -1 else end + 2
            yield text[start:end]
            start = end


def train_tokenizer_file(texts: Iterable[str], out: Path, n_ranks: int) -> dict[bytes, int]:
    import sys

    # the tokenizers library's bar, in a terminal only: in a log it is blank lines
    ranks = train_bpe(texts, n_ranks, show_progress=sys.stderr.isatty())
    write_ranks(out, ranks)
    return ranks
