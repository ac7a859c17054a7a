"""The vocabulary round-trips any text and streams without splitting characters."""

from __future__ import annotations

import codecs

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storytui.errors import StoryError
from storytui.tokenizer import (
    DEFAULT_TOKENIZER,
    UTF8_INVALID,
    UTF8_OWED_BYTES,
    UTF8_STATES,
    StreamDecoder,
    Tokenizer,
    Utf8Table,
    load_tokenizer,
    ranks_hash,
    utf8_state,
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
    path.write_text("YQ== 0\nnot base64 at all\n")
    with pytest.raises(StoryError, match=r"\.tiktoken: line 2 is not a base64 token and its rank$"):
        _load_ranks_file(path)
    path.unlink()
    path.mkdir()
    with pytest.raises(StoryError, match=r"^cannot read vocabulary file .*: Is a directory$"):
        _load_ranks_file(path)


# ---------------------------------------------------------------------------- valid UTF-8

# A text that leaves each UTF-8 state: nothing owed; 1, 2, 3 continuation bytes owed; and the
# leads whose second byte has a narrower range (E0, ED, F0, F4).
STATE_PREFIXES = (b"", b"\xc3", b"\xe2", b"\xf1", b"\xe0", b"\xed", b"\xf0", b"\xf4")
SINGLE_BYTES = [bytes([b]) for b in range(256)]


def python_owed(data: bytes) -> int | None:
    """Bytes Python's strict decoder still needs after ``data``; None if nothing can fix it."""
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(data)
    except UnicodeDecodeError:
        return None
    pending = decoder.getstate()[0]
    if not pending:
        return 0
    for owed in range(1, 4):
        for first in range(0x80, 0xC0):
            try:
                (pending + bytes([first]) + b"\x80" * (owed - 1)).decode()
                return owed
            except UnicodeDecodeError:
                pass
    return None


def assert_table_agrees_with_python(table: Utf8Table, pieces: list[bytes]) -> None:
    """In every state, a token is allowed exactly when Python's decoder accepts its bytes after
    that state's prefix, and then leaves as many bytes owed as Python says."""
    for state, prefix in enumerate(STATE_PREFIXES):
        for token, piece in enumerate(pieces):
            expected = python_owed(prefix + piece)
            after = int(table.next_state[state, token])
            if expected is None:
                assert after == UTF8_INVALID, (state, piece)
            else:
                assert after != UTF8_INVALID, (state, piece)
                assert UTF8_OWED_BYTES[after] == expected, (state, piece)
                assert utf8_state(prefix + piece) == after, (state, piece)


@pytest.mark.parametrize(
    "char", ["a", "é", "€", "🐳", "\u0800", "\ud7ff", "\U00010000", "\U00040000", "\U0010ffff"]
)
def test_each_byte_of_a_character_owes_one_byte_less(char: str) -> None:
    """1- to 4-byte characters, the strict E0/ED/F0/F4 leads among them: the state after each
    byte owes the rest of the character, and the whole character owes nothing."""
    data = char.encode()
    owed = [int(UTF8_OWED_BYTES[utf8_state(data[:i])]) for i in range(1, len(data) + 1)]
    assert owed == list(range(len(data) - 1, -1, -1))


@pytest.mark.parametrize(
    "data",
    [
        b"\x80",  # a continuation byte with nothing to continue
        b"\xbf",
        b"\xc0\xaf",  # overlong "/"
        b"\xc1\xbf",
        b"\xe0\x80\x80",  # overlong NUL
        b"\xed\xa0\x80",  # a surrogate
        b"\xf0\x80\x80\x80",  # overlong
        b"\xf4\x90\x80\x80",  # past U+10FFFF
        b"\xf5",
        b"\xff",
        b"\xc3a",  # a lead byte followed by a non-continuation
        b"\xe2\x82a",
        b"a\x80",
    ],
)
def test_invalid_bytes_are_forbidden_from_every_state_they_do_not_fit(data: bytes) -> None:
    table = Utf8Table.build([*SINGLE_BYTES, data], 257)
    assert table.next_state[0, 256] == UTF8_INVALID
    assert_table_agrees_with_python(table, [*SINGLE_BYTES, data])


def test_a_hand_built_vocabulary_allows_exactly_what_fits_each_state() -> None:
    """Ids 256 on: whole words, a token starting with a continuation byte, a cut character, a
    surrogate; then end of text and one unused output."""
    extra = [b"caf\xc3\xa9", b"\xa9 ok", b"\xe2\x82", b"\xed\xa0\x80", b"\x9f\x90\xb3"]
    pieces = [*SINGLE_BYTES, *extra]
    eot, unused = len(pieces), len(pieces) + 1
    table = Utf8Table.build(pieces, len(pieces) + 2)
    allowed = {
        piece: {s for s in range(UTF8_STATES) if table.next_state[s, 256 + i] != UTF8_INVALID}
        for i, piece in enumerate(extra)
    }
    assert allowed == {
        b"caf\xc3\xa9": {0},
        b"\xa9 ok": {1},  # é's second byte, then text
        b"\xe2\x82": {0},  # leaves one byte owed
        b"\xed\xa0\x80": set(),
        b"\x9f\x90\xb3": {3, 6},  # the end of 🐳 after F0 or F1-F3; not after F4 (80-8F)
    }
    assert table.next_state[0, 256 + 2] == utf8_state(b"\xe2\x82")
    assert UTF8_OWED_BYTES[table.next_state[0, 256 + 2]] == 1
    assert [s for s in range(UTF8_STATES) if table.next_state[s, eot] != UTF8_INVALID] == [0]
    assert table.next_state[0, eot] == 0
    assert (table.next_state[:, unused] == UTF8_INVALID).all()
    assert (table.forbidden[:, -1] == (table.next_state == UTF8_INVALID)).all()
    assert_table_agrees_with_python(table, pieces)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(min_size=1, max_size=6), min_size=1, max_size=20))
def test_the_table_agrees_with_pythons_decoder_on_any_bytes(extra: list[bytes]) -> None:
    pieces = [*SINGLE_BYTES, *extra]
    assert_table_agrees_with_python(Utf8Table.build(pieces, len(pieces)), pieces)


def test_the_shipped_vocabulary_table_agrees_with_pythons_decoder(tok: Tokenizer) -> None:
    table = tok.utf8_table()
    pieces = [tok.token_bytes(t) for t in range(tok.eot)]
    assert_table_agrees_with_python(table, pieces)
    continuation = [tok.encoding.encode_single_token(bytes([b])) for b in range(0x80, 0xC0)]
    assert table.forbidden[0, -1, continuation].all()
    assert not table.forbidden[1, -1, continuation].any()
    assert np.flatnonzero(~table.forbidden[1:, -1, tok.eot]).size == 0
    assert tok.utf8_table() is table  # built once per tokenizer


def test_near_the_token_limit_only_what_can_still_finish_is_allowed(tok: Tokenizer) -> None:
    """With one token left nothing may leave a byte owed; with two, at most one byte."""
    table = tok.utf8_table()
    lead4 = tok.encoding.encode_single_token(b"\xf0")
    lead2 = tok.encoding.encode_single_token(b"\xc3")
    assert table.budget(0, 1) == 0 and table.budget(0, 2) == 1 and table.budget(0, 50) == 3
    assert table.forbidden[0, 0, [lead2, lead4]].all()
    assert not table.forbidden[0, 1, lead2] and table.forbidden[0, 1, lead4]
    assert not table.forbidden[0, 3, [lead2, lead4]].any()
    ended = table.next_state[0][~table.forbidden[0, 0]]
    assert set(ended.tolist()) == {0}
    assert table.budget(3, 1) == 2  # a story owing 3 bytes with 1 token left: the least it can
    assert not table.forbidden[3, table.budget(3, 1)].all()


def test_a_vocabulary_that_cannot_finish_a_character_is_refused() -> None:
    """Without the bytes 80-8F nothing can follow F4 (U+100000 on): no mask may be empty."""
    pieces = [bytes([b]) for b in range(256) if not 0x80 <= b < 0x90]
    with pytest.raises(StoryError, match="'gappy' cannot finish UTF-8 state 7"):
        Utf8Table.build(pieces, len(pieces), "gappy")


def test_the_state_after_a_prompt_comes_from_its_last_bytes(tok: Tokenizer) -> None:
    ids = tok.encode("a whale 🐳")
    assert tok.utf8_state(ids) == 0
    cut = ids[:-1]  # the emoji's bytes are separate tokens here: the text ends mid-character
    assert UTF8_OWED_BYTES[tok.utf8_state(cut)] == 1
    assert tok.utf8_state([*cut, tok.eot]) == 0
    assert tok.utf8_state([]) == 0
    # a decoder restarts at the byte that broke a sequence
    assert utf8_state(b"\xe2(") == 0
    assert utf8_state(b"\xf0\x9f\xe2") == utf8_state(b"\xe2")
    assert utf8_state(b"\x80\x80") == 0
