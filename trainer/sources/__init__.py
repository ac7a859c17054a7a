"""Where training text comes from, and the one punctuation convention every source follows.

All cleaned text uses straight quotes (``'`` and ``"``), the em dash ``—`` for every dash used as
punctuation (``--``, ``―``, a spaced en dash), a hyphen for hyphenated words and ranges, and
``...`` for an ellipsis. One convention keeps the vocabulary from spending tokens on typography
and makes the model's output look the same whichever source taught it.
"""

from __future__ import annotations

import re

_QUOTES = str.maketrans(
    {
        "\u2018": "'",
        "\u2019": "'",
        "\u201a": "'",
        "\u201b": "'",
        "\u2032": "'",
        "\u00b4": "'",
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u201f": '"',
        "\u2033": '"',
        "\u2015": "\u2014",  # horizontal bar
        "\u2012": "-",  # figure dash
        "\u2011": "-",  # non-breaking hyphen
        "\u2010": "-",  # hyphen
        "\u2026": "...",
        "\u00a0": " ",
        "\u2009": " ",
        "\u200a": " ",
        "\u202f": " ",
        "\u200b": None,  # zero-width space
        "\ufeff": None,  # stray byte-order marks
        "\u00ad": None,  # soft hyphen
    }
)
BINARY_REASON = "looks like a binary file, not text"  # why an importer leaves a file out
_SPACED_EN_DASH = re.compile(r"(?<=\S) \u2013 (?=\S)")
_DOUBLE_HYPHEN = re.compile(r"-{2,}|\u2013{2,}")


def normalize_punctuation(text: str) -> str:
    """Apply the quote/dash/ellipsis convention above to any text."""
    text = text.translate(_QUOTES)
    text = _SPACED_EN_DASH.sub(" \u2014 ", text)
    text = text.replace("\u2013", "-")
    return _DOUBLE_HYPHEN.sub("\u2014", text)
