"""What keeping freed memory in the process saves on a cold 1,000-token prefill.

    .venv/bin/python bench/bench_prefill_memory.py        # about 2 minutes

glibc's thresholds can only be set for a whole process, so each side runs in its own child
process: one with glibc's defaults, one after ``storytui.allocator.keep_freed_memory()`` (what
every ``Generator`` does). The children alternate, round by round, because this machine's
speed drifts over minutes. Each child builds the ``colab`` preset (random weights) at the
default precision and times prefills of a 1,000-token context after one warm-up, with the page
faults and kernel CPU time each took.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_report

SIDES = ("default", "kept")


def child(side: str, context: int, repeats: int) -> None:
    """Time ``repeats`` cold prefills and print one JSON line of medians."""
    if side == "kept":
        from storytui.allocator import keep_freed_memory

        if not keep_freed_memory():
            raise SystemExit("this C library takes no thresholds: nothing to compare")
    import torch

    from storytui.model import PRESETS, StoryModel
    from storytui.precision import DEFAULT_PRECISION, prepare_model

    torch.manual_seed(0)
    model = prepare_model(StoryModel(PRESETS["colab"].config(16384)), DEFAULT_PRECISION)
    ids = torch.randint(0, 16384, (1, context))
    samples = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            cache = model.new_cache(1, dtype=torch.float32)
            before = resource.getrusage(resource.RUSAGE_SELF)
            start = time.perf_counter()
            model(ids, cache=cache, last_only=True)
            elapsed = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_SELF)
            if i:  # the first one grows the heap either way
                faults = after.ru_minflt - before.ru_minflt
                kernel = after.ru_stime - before.ru_stime
                samples.append((elapsed * 1e3, faults, kernel * 1e3))
    print(
        json.dumps(
            {
                "precision": DEFAULT_PRECISION,
                "ms": statistics.median(s[0] for s in samples),
                "faults": statistics.median(s[1] for s in samples),
                "kernel_ms": statistics.median(s[2] for s in samples),
            }
        )
    )


def run_child(side: str, args) -> dict:
    command = [sys.executable, __file__, "--child", side, "--context", str(args.context)]
    command += ["--repeats", str(args.repeats)]
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=SIDES, help=argparse.SUPPRESS)
    parser.add_argument("--context", type=int, default=1000, help="tokens per prefill")
    parser.add_argument("--repeats", type=int, default=5, help="timed prefills per child")
    parser.add_argument("--rounds", type=int, default=3, help="child pairs, alternated")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.context, args.repeats)
        return
    for line in machine_report():
        print(line)
    results: dict[str, list[dict]] = {side: [] for side in SIDES}
    for round_ in range(args.rounds):
        for side in SIDES:
            results[side].append(run_child(side, args))
            r = results[side][-1]
            print(
                f"  round {round_ + 1} {side}: {r['ms']:.0f} ms, {r['faults']:,.0f} page faults, "
                f"{r['kernel_ms']:.0f} ms kernel CPU",
                flush=True,
            )
    precision = results["kept"][0]["precision"]
    print()
    print(f"`colab` preset, {precision}, cold prefill of {args.context:,} tokens (medians):")
    print()
    print("| freed memory | prefill ms | page faults per prefill | kernel CPU ms per prefill |")
    print("|---|---:|---:|---:|")
    medians = {}
    for side in SIDES:
        rows = results[side]
        medians[side] = statistics.median(r["ms"] for r in rows)
        faults = statistics.median(r["faults"] for r in rows)
        kernel = statistics.median(r["kernel_ms"] for r in rows)
        label = "glibc defaults" if side == "default" else "kept (`keep_freed_memory`)"
        print(f"| {label} | {medians[side]:.0f} | {faults:,.0f} | {kernel:.0f} |")
    ratios = sorted(
        d["ms"] / k["ms"] for d, k in zip(results["default"], results["kept"], strict=True)
    )
    print(
        "\nprefill time, defaults ÷ kept, per round: "
        + ", ".join(f"{r:.2f}×" for r in ratios)
        + f" (median {statistics.median(ratios):.2f}×)"
    )


if __name__ == "__main__":
    main()
