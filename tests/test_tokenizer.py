"""The vocabulary round-trips any text and streams without splitting characters."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storytui.errors import StoryError
from storytui.tokenizer import (
    DEFAULT_TOKENIZER,
    StreamDecoder,
    Tokenizer,
    load_tokenizer,
    ranks_hash,
)
from trainer.bpe import train_bpe


@pytest.fixture(scope="module")
def tok() -> Tokenizer:
    return load_tokenizer()


def test_default_vocabulary_is_about_16k(tok: Tokenizer) -> None:
    assert tok.name == DEFAULT_TOKENIZER
    assert tok.n_vocab == 16384
    assert tok.eot == 16383
    assert tok.hash.startswith("sha256:")


@settings(max_examples=300, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=200))
def test_any_string_round_trips(tok: Tokenizer, text: str) -> None:
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(codec="utf-8"), max_size=120))
def test_stream_decoder_never_emits_half_a_character(tok: Tokenizer, text: str) -> None:
    decoder = StreamDecoder(tok)
    pieces = [decoder.push(t) for t in tok.encode(text)] + [decoder.flush()]
    assert "".join(pieces) == text
    assert all("\ufffd" not in piece for piece in pieces) or "\ufffd" in text


def test_multibyte_character_split_across_tokens_is_held_back(tok: Tokenizer) -> None:
    # an emoji is 4 UTF-8 bytes; feeding its bytes as single-byte tokens must show nothing until complete
    emoji = "🐳".encode()
    byte_tokens = [tok.encoding.encode_single_token(bytes([b])) for b in emoji]
    decoder = tok.stream_decoder()
    outputs = [decoder.push(t) for t in byte_tokens]
    assert outputs[:3] == ["", "", ""]
    assert outputs[3] == "🐳"


def test_special_token_text_is_encoded_as_plain_text(tok: Tokenizer) -> None:
    ids = tok.encode("a <|endoftext|> b")
    assert tok.eot not in ids
    assert tok.decode(ids) == "a <|endoftext|> b"


def test_trained_vocabulary_is_deterministic_and_hash_changes_with_content() -> None:
    corpus = ["the whale the whale the sea and the ship " * 50]
    first = train_bpe(corpus, 300, show_progress=False)
    second = train_bpe(corpus, 300, show_progress=False)
    assert first == second
    assert 256 < len(first) <= 300
    assert sorted(first.values()) == list(range(len(first)))
    assert ranks_hash(first) == ranks_hash(second)
    smaller = train_bpe(corpus, 262, show_progress=False)
    assert ranks_hash(smaller) != ranks_hash(first)
    assert b"the" in first or b" the" in first


def test_unknown_tokenizer_is_one_clear_error() -> None:
    with pytest.raises(StoryError, match="unknown tokenizer 'nope'"):
        load_tokenizer("nope")


def test_ranks_file_is_read_fresh_each_time(tmp_path) -> None:
    from storytui.tokenizer import _load_ranks_file, write_ranks

    path = tmp_path / "v.tiktoken"
    first = {bytes([b]): b for b in range(256)}
    write_ranks(path, first)
    assert _load_ranks_file(path) == first
    second = {**first, b"th": 256}
    write_ranks(path, second)  # same path, new content: no stale cached copy may come back
    assert _load_ranks_file(path) == second
    path.write_text("not base64 at all\n")
    with pytest.raises(StoryError, match="cannot read vocabulary file"):
        _load_ranks_file(path)
