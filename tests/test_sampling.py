"""Each logit processor on its own, with hand-checkable inputs."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from storytui.errors import StoryError
from storytui.sampling import (
    SamplerState,
    SamplingSettings,
    Utf8Guard,
    apply_dry,
    apply_min_p,
    apply_repetition_penalty,
    apply_top_k,
    apply_top_p,
    choose_token,
    draw,
)
from storytui.tokenizer import UTF8_OWED_BYTES, Utf8Table, utf8_state


def kept(logits: torch.Tensor) -> set[int]:
    return set(torch.nonzero(torch.isfinite(logits)).flatten().tolist())


def test_top_k_keeps_exactly_k() -> None:
    logits = torch.tensor([0.1, 3.0, 2.0, 2.0, -1.0, 5.0])
    out = apply_top_k(logits, 3)
    assert len(kept(out)) == 3
    assert {1, 5} <= kept(out)
    assert out[5] == 5.0  # kept scores are unchanged
    assert apply_top_k(logits, 0) is logits


def test_top_p_keeps_smallest_set_reaching_p() -> None:
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log()
    assert kept(apply_top_p(logits, 0.5)) == {0}
    assert kept(apply_top_p(logits, 0.6)) == {0, 1}
    assert kept(apply_top_p(logits, 0.8)) == {0, 1}
    assert kept(apply_top_p(logits, 0.81)) == {0, 1, 2}
    assert kept(apply_top_p(logits, 0.01)) == {0}
    assert kept(apply_top_p(logits, 1.0)) == {0, 1, 2, 3}


def large_vocabulary_logits(shape: str) -> torch.Tensor:
    """16K logits: gaussian with a spread (``"gauss:4"``), or one token far above a flat tail."""
    if shape == "peak-over-tail":
        logits = torch.randn(16384, generator=torch.Generator().manual_seed(7)) * 0.01
        logits[123] = 12.0  # p ≈ 0.91; each tail token ≈ e^-12 of it, below both thresholds
        return logits
    spread = float(shape.split(":")[1])
    return torch.randn(16384, generator=torch.Generator().manual_seed(7)) * spread


SHAPES = ["gauss:0.3", "gauss:1", "gauss:4", "gauss:12", "peak-over-tail"]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("p", [0.3, 0.9, 0.99])
def test_top_p_matches_a_full_sort_on_large_vocabularies(shape: str, p: float) -> None:
    """The nucleus search (sorting only the tokens above a threshold, lowered until their mass
    reaches p) must keep what a full torch sort and cumulative sum keep."""
    logits = large_vocabulary_logits(shape)
    probs = torch.softmax(logits, dim=-1)
    sorted_probs, order = torch.sort(probs, descending=True)
    before = sorted_probs.cumsum(0) - sorted_probs
    expected = set(order[before < p].tolist())
    assert kept(apply_top_p(logits, p)) == expected


def test_top_p_search_takes_each_threshold() -> None:
    """The cases above reach each branch of the search: the nucleus within the first threshold
    (2^-8 of the top probability), within the second (2^-16) only, and beyond both."""
    reached = set()
    for shape in SHAPES:
        sorted_probs = torch.softmax(large_vocabulary_logits(shape), dim=-1).sort().values.flip(0)
        for p in (0.3, 0.9, 0.99):
            floor = sorted_probs[int((sorted_probs.cumsum(0) - sorted_probs < p).sum()) - 1]
            ratio = float(floor / sorted_probs[0])
            reached.add(0 if ratio >= 2**-8 else 1 if ratio >= 2**-16 else 2)
    assert reached == {0, 1, 2}


def test_draw_is_torch_multinomial() -> None:
    """Same generator state, same id as ``torch.multinomial``, and the same random numbers used
    (the next draw agrees too), for peaked, flat and mostly masked distributions."""
    source = torch.Generator().manual_seed(0)
    for case in range(300):
        logits = torch.randn(16384, generator=source) * (case % 6)
        if case % 3 == 0:  # what top-p / min-p leave: a few survivors
            logits[torch.rand(16384, generator=source) < 0.999] = -math.inf
        probs = torch.softmax(logits, dim=-1)
        ours, theirs = torch.Generator().manual_seed(case), torch.Generator().manual_seed(case)
        for _ in range(3):
            assert draw(probs, ours) == int(torch.multinomial(probs, 1, generator=theirs))


def test_top_p_keeps_tokens_tied_with_the_last_one_kept() -> None:
    """Which of two equally likely tokens would be "first" is arbitrary, so both stay."""
    logits = torch.tensor([0.4, 0.3, 0.3]).log()
    assert kept(apply_top_p(logits, 0.5)) == {0, 1, 2}
    assert kept(apply_top_p(logits, 0.4)) == {0}


def test_min_p_is_relative_to_top_probability() -> None:
    probs = torch.tensor([0.6, 0.25, 0.1, 0.05])
    out = apply_min_p(probs.log(), 0.2)  # threshold 0.12
    assert kept(out) == {0, 1}


def test_repetition_penalty_over_window() -> None:
    logits = torch.tensor([2.0, -2.0, 2.0, 1.0])
    out = apply_repetition_penalty(logits, [0, 1, 3], penalty=2.0, window=2)
    # window 2 covers tokens [1, 3]: positive scores divided, negative multiplied
    assert out.tolist() == [2.0, -4.0, 2.0, 0.5]
    assert apply_repetition_penalty(logits, [0], 1.0, 10) is logits


def test_dry_penalises_the_token_that_extends_a_repeat() -> None:
    # history: 5 6 7 8 ... 5 6 7 -> continuing with 8 would repeat a 4-token sequence
    history = [5, 6, 7, 8, 1, 2, 3, 5, 6, 7]
    logits = torch.zeros(10)
    out = apply_dry(logits, history, multiplier=1.0, base=2.0, allowed_length=2)
    # match length 3 (5 6 7): penalty = 1 * 2 ** (3 - 2) = 2
    assert out[8] == pytest.approx(-2.0)
    assert (out[torch.arange(10) != 8] == 0).all()


def test_dry_respects_allowed_length_and_breakers() -> None:
    history = [5, 6, 7, 8, 1, 2, 3, 5, 6, 7]
    logits = torch.zeros(10)
    assert (apply_dry(logits, history, 1.0, 2.0, allowed_length=4) == 0).all()
    breakers = np.zeros(10, dtype=bool)
    breakers[6] = True  # token 6 is e.g. a newline: matches cannot cross it
    out = apply_dry(logits, history, 1.0, 2.0, allowed_length=2, breakers=breakers)
    assert (out == 0).all()  # only "7" matches (length 1) once 6 breaks the run
    longer = apply_dry(logits, [1, 2, 3, 4, 9, 1, 2, 3, 4], 0.5, 1.75, allowed_length=2)
    assert longer[9] == pytest.approx(-0.5 * 1.75 ** (4 - 2))


def test_temperature_zero_is_greedy() -> None:
    settings = SamplingSettings(temperature=0, repetition_penalty=1.0)
    logits = torch.tensor([0.0, 1.0, 3.0, 2.9])
    for seed in range(5):
        state = SamplerState(generator=torch.Generator().manual_seed(seed))
        assert choose_token(logits, settings, state) == 2


@pytest.mark.parametrize("temperature", [1e-45, 1e-38, 1e-6])
def test_a_tiny_temperature_is_nearly_greedy_not_nan(temperature: float) -> None:
    logits = torch.tensor([0.0, 1.0, 3.0, 2.9, float("-inf")])
    for top_p, min_p in ((1.0, 0.0), (0.9, 0.05)):
        settings = SamplingSettings(
            temperature=temperature, top_p=top_p, min_p=min_p, repetition_penalty=1.0
        )
        for seed in range(5):
            state = SamplerState(generator=torch.Generator().manual_seed(seed))
            assert choose_token(logits, settings, state) == 2


def test_seeded_draws_repeat_and_follow_the_distribution() -> None:
    settings = SamplingSettings(temperature=1.0, top_p=1.0, min_p=0.0, repetition_penalty=1.0)
    logits = torch.tensor([0.0, math.log(3.0)])  # p = 0.25, 0.75

    def draws(seed: int) -> list[int]:
        state = SamplerState(generator=torch.Generator().manual_seed(seed))
        return [choose_token(logits, settings, state) for _ in range(2000)]

    assert draws(1) == draws(1)
    assert draws(1) != draws(2)
    assert 0.72 < sum(draws(3)) / 2000 < 0.78


@pytest.mark.parametrize(
    "changes, message",
    [
        ({"temperature": -1}, "temperature"),
        ({"top_p": 2}, "top-p"),
        ({"top_p": 0}, "top-p"),
        ({"min_p": 1.5}, "min-p"),
        ({"top_k": -3}, "top-k"),
        ({"repetition_penalty": 0}, "repetition-penalty"),
        ({"max_new_tokens": 0}, "max-tokens"),
        ({"temperature": float("nan")}, "temperature"),
        ({"stop": ("",)}, "stop"),
    ],
)
def test_invalid_settings_are_refused_with_one_line(changes: dict, message: str) -> None:
    with pytest.raises(StoryError, match=message) as info:
        SamplingSettings(**changes).validate()
    assert "\n" not in str(info.value)


def test_settings_json_round_trip() -> None:
    settings = SamplingSettings(temperature=0.7, stop=("THE END",), seed=42, dry_multiplier=0.8)
    assert SamplingSettings.from_json(settings.to_json()) == settings


def small_utf8_table() -> tuple[Utf8Table, dict[bytes, int]]:
    """Every single byte, a few multi-byte tokens, then end of text (the last id)."""
    pieces = [bytes([b]) for b in range(256)] + [b"ok", b"\xc3\xa9", b"\xa9!", b"\xe2\x82"]
    return Utf8Table.build(pieces, len(pieces) + 1), {p: i for i, p in enumerate(pieces)}


def test_utf8_guard_masks_exactly_the_forbidden_tokens_and_keeps_the_rest_as_they_are() -> None:
    table, ids = small_utf8_table()
    logits = torch.randn(len(ids) + 1, generator=torch.Generator().manual_seed(0))
    guard = Utf8Guard(table)
    masked = guard.mask(logits, remaining=10)
    allowed = ~table.forbidden[0, -1]
    assert kept(masked) == set(np.flatnonzero(allowed).tolist())
    assert torch.equal(masked[allowed], logits[allowed])  # bit for bit
    assert ids[b"\x80"] not in kept(masked) and ids[b"\xa9!"] not in kept(masked)
    assert {ids[b"ok"], ids[b"\xc3"], ids[b"\xe2\x82"], len(ids)} <= kept(masked)
    guard.advance(ids[b"\xe2\x82"])  # one byte owed now: a token must start with it
    assert guard.state == utf8_state(b"\xe2\x82")
    continuations = {ids[bytes([b])] for b in range(0x80, 0xC0)}
    assert kept(guard.mask(logits, remaining=10)) == continuations | {ids[b"\xa9!"]}
    guard.advance(ids[b"\xac"])
    assert guard.state == 0


def test_utf8_guard_finishes_the_character_before_the_token_limit() -> None:
    table, ids = small_utf8_table()
    logits = torch.zeros(len(ids) + 1)
    guard = Utf8Guard(table)
    assert ids[b"\xc3"] not in kept(guard.mask(logits, remaining=1))
    assert ids[b"\xc3"] in kept(guard.mask(logits, remaining=2))
    assert ids[b"\xe2"] not in kept(guard.mask(logits, remaining=2))
    assert ids[b"\xe2"] in kept(guard.mask(logits, remaining=3))
    guard.advance(ids[b"\xe2"])
    assert UTF8_OWED_BYTES[guard.state] == 2
    # two bytes owed, one token left: it cannot finish; the least it can leave is one byte
    continuations = {ids[bytes([b])] for b in range(0x80, 0xC0)}
    assert kept(guard.mask(logits, remaining=1)) == continuations


def test_utf8_guard_refuses_to_advance_past_a_forbidden_token() -> None:
    table, ids = small_utf8_table()
    guard = Utf8Guard(table)
    with pytest.raises(StoryError, match="cannot follow UTF-8 state 0"):
        guard.advance(ids[b"\x80"])


def test_greedy_after_the_utf8_mask_takes_the_best_valid_token() -> None:
    table, ids = small_utf8_table()
    logits = torch.zeros(len(ids) + 1)
    logits[ids[b"\x80"]] = 9.0  # the model's favourite: a lone continuation byte
    logits[ids[b"ok"]] = 2.0
    greedy = SamplingSettings(temperature=0, repetition_penalty=1.0)
    state = SamplerState(generator=torch.Generator().manual_seed(0))
    masked = Utf8Guard(table).mask(logits, remaining=5)
    assert choose_token(logits, greedy, state) == ids[b"\x80"]
    assert choose_token(masked, greedy, state) == ids[b"ok"]
    sampled = SamplingSettings(temperature=1.0, top_p=0.5, min_p=0.2, repetition_penalty=1.0)
    # top-p and min-p run on valid tokens only, so they never leave nothing to draw
    assert choose_token(masked, sampled, state) == ids[b"ok"]


def test_valid_utf8_is_on_by_default_and_kept_in_json() -> None:
    assert SamplingSettings().valid_utf8
    off = SamplingSettings(valid_utf8=False)
    assert SamplingSettings.from_json(off.to_json()) == off
    older = {k: v for k, v in SamplingSettings().to_json().items() if k != "valid_utf8"}
    assert SamplingSettings.from_json(older).valid_utf8
