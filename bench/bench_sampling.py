"""What choosing a token costs: storytui's sampler against the textbook torch processors.

    .venv/bin/python bench/bench_sampling.py [--model DIR] [--tokens N]

Every generated token passes through ``choose_token`` (repetition penalty, temperature, top-p,
min-p, a seeded draw). The peer is the usual way to write the same chain in torch, as Hugging
Face's logits warpers do: ``torch.sort`` and ``cumsum`` for top-p, a boolean mask for min-p,
gather/scatter for the penalty, ``torch.multinomial`` for the draw. Both run on the same logits
with the same seeds, alternated round by round, and must choose the same tokens.

The logits are a trained model's own over real prose (the bundled model and Moby-Dick when
present, else a random ``tiny`` model over random tokens: a flat distribution, the worst case).

A second table prices the valid-UTF-8 mask that generation applies before ``choose_token``: the
same chain with and without it, alternated round by round, and the mask on its own.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_report
from bench_generate import STORY_SOURCE, read_prose

from storytui.sampling import (
    PRESET_SETTINGS,
    SamplerState,
    SamplingSettings,
    Utf8Guard,
    choose_token,
)
from storytui.tokenizer import Tokenizer, load_tokenizer

BUNDLED = Path(__file__).resolve().parent.parent / "assets" / "models" / "default"


def textbook_choose(logits: torch.Tensor, settings: SamplingSettings, state: SamplerState) -> int:
    """The same chain in plain torch (the peer)."""
    seen = torch.tensor(sorted(set(state.history[-settings.repetition_window :])))
    scores = logits.gather(0, seen)
    scores = torch.where(
        scores > 0, scores / settings.repetition_penalty, scores * settings.repetition_penalty
    )
    logits = logits.scatter(0, seen, scores) / settings.temperature
    sorted_logits, order = torch.sort(logits, descending=True)
    probs = sorted_logits.softmax(-1)
    before = probs.double().cumsum(0) - probs
    drop_sorted = before >= settings.top_p
    drop_sorted &= probs < probs[int((~drop_sorted).sum()) - 1]  # ties with the last kept stay
    logits = logits.masked_fill(drop_sorted.scatter(0, order, drop_sorted), -math.inf)
    probs = logits.softmax(-1)
    logits = logits.masked_fill(probs < settings.min_p * probs.max(), -math.inf)
    return int(torch.multinomial(logits.softmax(-1), 1, generator=state.generator))


def real_logits(
    model_dir: Path, count: int
) -> tuple[list[torch.Tensor], list[int], str, Tokenizer]:
    """``count`` rows of next-token logits, the token ids they follow, and their vocabulary."""
    from storytui.checkpoint import load_checkpoint

    if model_dir.exists() and STORY_SOURCE.exists():
        checkpoint = load_checkpoint(model_dir)
        ids = checkpoint.tokenizer.encode(read_prose(STORY_SOURCE)[60_000:80_000])
        source = f"{model_dir.name} model on Moby-Dick"
        model, tokenizer = checkpoint.model, checkpoint.tokenizer
    else:
        from storytui.model import PRESETS, StoryModel

        torch.manual_seed(0)
        model = StoryModel(PRESETS["tiny"].config(16384))
        ids = torch.randint(0, 16000, (count + 300,)).tolist()
        source = "random tiny model on random tokens (flat)"
        tokenizer = load_tokenizer()
    ids = ids[: model.config.block_size]
    with torch.inference_mode():
        logits = model.eval()(torch.tensor([ids]))[0][0].float()
    start = max(0, len(ids) - count)
    return [logits[i].clone() for i in range(start, len(ids))], ids, source, tokenizer


def utf8_masked(guard: Utf8Guard, states: list[int]):
    """``choose_token`` after the valid-UTF-8 mask, each row in the state its own text leaves
    (what a generation step adds: one add of a precomputed 0/-inf row, and the state)."""
    row_states = iter(states)

    def choose(logits: torch.Tensor, settings: SamplingSettings, state: SamplerState) -> int:
        guard.state = next(row_states)
        return choose_token(guard.mask(logits, settings.max_new_tokens), settings, state)

    return choose


def mask_only(guard: Utf8Guard, rows: list[torch.Tensor], states: list[int]) -> float:
    """Seconds per row for the mask alone."""
    started = time.perf_counter()
    for row, state in zip(rows, states, strict=True):
        guard.state = state
        guard.mask(row, 200)
    return (time.perf_counter() - started) / len(rows)


def run(choose, rows, ids, settings, seed) -> tuple[float, list[int]]:
    state = SamplerState(generator=torch.Generator().manual_seed(seed))
    picked = []
    started = time.perf_counter()
    for i, row in enumerate(rows):
        state.history = ids[: len(ids) - len(rows) + i]
        picked.append(choose(row, settings, state))
    return (time.perf_counter() - started) / len(rows), picked


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=BUNDLED)
    parser.add_argument("--tokens", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args(argv)
    print("\n".join(machine_report()))
    rows, ids, source, tokenizer = real_logits(args.model, args.tokens)
    print(f"logits: {len(rows)} positions of the {source}")
    print()
    print("| settings | storytui µs/token | textbook torch µs/token | ratio | same tokens |")
    print("|---|---:|---:|---:|---:|")
    for name in ("balanced", "focused", "creative"):
        settings = PRESET_SETTINGS[name].with_changes(dry_multiplier=0.0)
        ours, theirs, same = [], [], 0
        for round_ in range(args.rounds):
            seconds, ours_picked = run(choose_token, rows, ids, settings, round_)
            ours.append(seconds)
            seconds, their_picked = run(textbook_choose, rows, ids, settings, round_)
            theirs.append(seconds)
            same += sum(a == b for a, b in zip(ours_picked, their_picked, strict=True))
        a, b = statistics.median(ours) * 1e6, statistics.median(theirs) * 1e6
        print(
            f"| {name} | {a:.0f} | {b:.0f} | {b / a:.2f}× | {same / (len(rows) * args.rounds):.1%} |"
        )
    print()
    utf8_table(rows, ids, tokenizer, args.rounds)


def utf8_table(rows: list[torch.Tensor], ids: list[int], tokenizer: Tokenizer, rounds: int) -> None:
    """The chain with and without the valid-UTF-8 mask, alternated, and the mask alone."""
    first = len(ids) - len(rows)
    states = [tokenizer.utf8_state(ids[: first + i]) for i in range(len(rows))]
    guard = Utf8Guard(tokenizer.utf8_table(rows[0].numel()))
    print(
        "| settings | without mask µs/token | with mask µs/token | ratio | mask alone µs | same tokens |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    for name in ("balanced", "focused", "creative"):
        settings = PRESET_SETTINGS[name].with_changes(dry_multiplier=0.0)
        plain, masked, alone, same = [], [], [], 0
        for round_ in range(rounds):
            seconds, plain_picked = run(choose_token, rows, ids, settings, round_)
            plain.append(seconds)
            seconds, masked_picked = run(utf8_masked(guard, states), rows, ids, settings, round_)
            masked.append(seconds)
            alone.append(mask_only(guard, rows, states))
            same += sum(a == b for a, b in zip(plain_picked, masked_picked, strict=True))
        a, b = statistics.median(plain) * 1e6, statistics.median(masked) * 1e6
        c = statistics.median(alone) * 1e6
        share = same / (len(rows) * rounds)
        print(f"| {name} | {a:.0f} | {b:.0f} | {b / a:.3f}× | {c:.1f} | {share:.1%} |")


if __name__ == "__main__":
    main()
