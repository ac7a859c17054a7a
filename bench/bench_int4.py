"""How int4 is set up: where its kernel beats int8's, and which group size to use.

    .venv/bin/python bench/bench_int4.py                                  # about 2 minutes
    .venv/bin/python bench/bench_int4.py --loss-gap CHECKPOINT_DIR [...]  # plus the loss gaps

1. The 37 matrices of the ``colab`` preset (random weights), multiplied by 1–128 input rows with
   the int4 kernel and with the int8 one: the crossover sets ``INT4_MAX_ROWS``.
2. Greedy decode tokens/s of the ``colab`` model after an 824-token context with groups of 32,
   64 and 128 weights, alternated round by round; with ``--loss-gap``, each group size's loss
   gap against fp32 on real text (the int4 kernel at every position). Together they set
   ``INT4_GROUP_SIZES``.
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_report
from bench_generate import (
    STORY_SOURCE,
    int4_kernel_everywhere,
    scoring_windows,
    storytui_decode_tps,
)

from storytui.allocator import keep_freed_memory
from storytui.model import PRESETS, StoryModel
from storytui.precision import Int4Linear, Int8Linear, prepare_model, quantize_int4

GROUP_SIZES = (32, 64, 128)
ROWS = (1, 2, 3, 4, 8, 16, 128)


def colab_linears(model: StoryModel) -> list[nn.Linear]:
    return [m for m in model.modules() if isinstance(m, nn.Linear)]


def kernel_crossover(model: StoryModel, repeats: int = 7) -> None:
    linears = colab_linears(model)
    int4 = [Int4Linear(linear) for linear in linears]
    int8 = [Int8Linear(linear) for linear in linears]
    for layer in int4:
        layer.max_int4_rows = sys.maxsize  # the int4 kernel at every row count

    def best_ms(layers, inputs) -> float:
        timings = []
        for _ in range(repeats):
            start = time.perf_counter()
            for layer, x in zip(layers, inputs, strict=True):
                layer(x)
            timings.append(time.perf_counter() - start)
        return min(timings) * 1e3

    print(f"\nall {len(linears)} matrices of the colab preset, best of {repeats} (ms):\n")
    print("| input rows | int4 kernel | int8 kernel | int4 ÷ int8 |")
    print("|---:|---:|---:|---:|")
    with torch.inference_mode():
        for rows in ROWS:
            inputs = [torch.randn(1, rows, linear.in_features) for linear in linears]
            best_ms(int4, inputs), best_ms(int8, inputs)  # warm-up
            a, b = best_ms(int4, inputs), best_ms(int8, inputs)
            print(f"| {rows} | {a:.2f} | {b:.2f} | {a / b:.2f} |", flush=True)


def group_size_speed(model: StoryModel, rounds: int, new_tokens: int) -> None:
    block = model.config.block_size
    prompt = torch.randint(0, model.config.vocab_size, (1, block - new_tokens))
    models = {g: quantize_int4(model, (g,)) for g in GROUP_SIZES}
    rates: dict[int, list[float]] = {g: [] for g in GROUP_SIZES}
    with torch.inference_mode():
        for m in models.values():
            storytui_decode_tps(m, prompt, 8, torch.float32)  # warm-up
        for _ in range(rounds):
            for g, m in models.items():
                rates[g].append(storytui_decode_tps(m, prompt, new_tokens, torch.float32))
    print(f"\ndecode tok/s after {prompt.size(1)} tokens, {rounds} alternated rounds:\n")
    print("| group size | bytes per weight | tok/s per round | median |")
    print("|---:|---:|---|---:|")
    for g in GROUP_SIZES:
        per_weight = 0.5 + 4 / g
        rounds_text = ", ".join(f"{r:.1f}" for r in rates[g])
        print(f"| {g} | {per_weight:.3f} | {rounds_text} | {statistics.median(rates[g]):.1f} |")


def group_size_loss_gap(checkpoint_dir: Path, text_file: Path, max_tokens: int) -> None:
    from storytui.checkpoint import load_checkpoint

    checkpoint = load_checkpoint(checkpoint_dir)
    block = checkpoint.model.config.block_size
    _, windows = scoring_windows(checkpoint.tokenizer, text_file, max_tokens, block)
    n_targets = sum(len(w) - 1 for w in windows)

    def mean_loss(model) -> float:
        total = 0.0
        with torch.inference_mode():
            for window in windows:
                _, loss = model(torch.tensor([window[:-1]]), torch.tensor([window[1:]]))
                total += loss.item() * (len(window) - 1)
        return total / n_targets

    reference = mean_loss(prepare_model(copy.deepcopy(checkpoint.model), "fp32"))
    print(
        f"\n{checkpoint_dir.name} on {text_file.name}, {n_targets:,} tokens: fp32 {reference:.4f}"
    )
    print("| group size | loss (nats/token) | gap vs fp32 |")
    print("|---:|---:|---:|")
    for g in GROUP_SIZES:
        model = quantize_int4(checkpoint.model.float().eval(), (g,))
        int4_kernel_everywhere(model)
        loss = mean_loss(model)
        print(f"| {g} | {loss:.4f} | {loss - reference:+.4f} |", flush=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--new-tokens", type=int, default=200)
    parser.add_argument("--loss-gap", type=Path, nargs="*", default=[], metavar="CHECKPOINT_DIR")
    parser.add_argument("--text", type=Path, default=STORY_SOURCE)
    parser.add_argument("--loss-tokens", type=int, default=20_000)
    args = parser.parse_args(argv)
    for line in machine_report():
        print(line)
    keep_freed_memory()
    torch.manual_seed(0)
    model = StoryModel(PRESETS["colab"].config(16384)).eval()
    kernel_crossover(model)
    group_size_speed(model, args.rounds, args.new_tokens)
    for checkpoint_dir in args.loss_gap:
        group_size_loss_gap(checkpoint_dir, args.text, args.loss_tokens)


if __name__ == "__main__":
    main()
