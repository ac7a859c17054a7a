"""The `gpt2` vocabulary encodes exactly as tiktoken's own GPT-2 encoding (the seed models')."""

from __future__ import annotations

import pytest
import tiktoken
from hypothesis import given, settings
from hypothesis import strategies as st
from tiktoken_ext.openai_public import r50k_pat_str

from storytui.tokenizer import EOT_TEXT, Tokenizer
from tests.seed_reference import GPT2_VOCAB_SIZE, use_gpt2_vocabulary

pytestmark = pytest.mark.gpt2

TRICKY = [
    "Hello world",
    "I'm sure they'll say we've done it, didn't you? 'Tis the SEASON'S end.",
    "  leading spaces, trailing spaces   ",
    "tabs\tand\nnewlines\n\n\nand   \n  mixed \r\n endings\n",
    "numbers 12345 3.14159 1,000,000 and 2nd",
    "ünïcödé, 日本語のテキスト, emoji 🐉🔥, combining é",
    "punctuation!!! ...?? --- ### Prompt:\n",
    "<|endoftext|> is plain text here",
    "Below is a writing prompt. Write a creative story based on it.\n\n### Prompt:\n",
]


@pytest.fixture(scope="module")
def pair() -> tuple[Tokenizer, tiktoken.Encoding]:
    with pytest.MonkeyPatch.context() as monkeypatch:
        ours = use_gpt2_vocabulary(monkeypatch)
    official = tiktoken.Encoding(
        name="gpt2-official",
        pat_str=r50k_pat_str,
        mergeable_ranks=dict(ours.encoding._mergeable_ranks),
        special_tokens={EOT_TEXT: 50256},
    )
    return ours, official


def test_vocabulary_size_and_end_of_text(pair) -> None:
    ours, _ = pair
    assert ours.n_vocab == GPT2_VOCAB_SIZE
    assert ours.eot == 50256
    assert ours.encoding.encode(EOT_TEXT, allowed_special="all") == [50256]
    assert ours.encode(EOT_TEXT) != [50256]  # user text never smuggles in a special token


def test_known_gpt2_ids(pair) -> None:
    ours, _ = pair
    assert ours.encode("Hello world") == [15496, 995]
    assert ours.encode(" the") == [262]
    assert ours.decode([15496, 995]) == "Hello world"


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_text_encodes_like_tiktoken(pair, text: str) -> None:
    ours, official = pair
    assert ours.encode(text) == official.encode_ordinary(text)
    assert ours.decode(ours.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=80))
def test_any_text_encodes_like_tiktoken(pair, text: str) -> None:
    ours, official = pair
    assert ours.encode(text) == official.encode_ordinary(text)
