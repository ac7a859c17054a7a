"""What keeping freed memory in the process saves: a cold prefill and a CPU training step.

    .venv/bin/python bench/bench_allocator.py        # about 3 minutes

glibc's thresholds hold for a whole process, so each side runs in its own child process: one
with glibc's defaults, one after ``storytui.allocator`` has set them (what every ``Generator``
does, and what the trainer does on the CPU). The children alternate, round by round, because
this machine's speed drifts over minutes. Each child times its workload after one warm-up, with
the page faults and kernel CPU time each repetition took:

- prefill: the ``colab`` preset (random weights) at the default precision encodes 1,000 tokens;
- train: one step of the ``small`` preset's training loop (8 × 512 tokens, the precision the
  loop would pick here).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine_report, scratch_home

WORKLOADS = ("prefill", "train")


def prefill_workload() -> tuple[str, Callable[[], None]]:
    import torch

    from storytui.model import PRESETS, StoryModel
    from storytui.precision import DEFAULT_PRECISION, prepare_model

    torch.manual_seed(0)
    model = prepare_model(StoryModel(PRESETS["colab"].config(16384)), DEFAULT_PRECISION)
    ids = torch.randint(0, 16384, (1, 1000))

    def run() -> None:
        with torch.inference_mode():
            model(ids, cache=model.new_cache(1, dtype=torch.float32), last_only=True)

    return f"`colab` preset, {DEFAULT_PRECISION}, cold prefill of 1,000 tokens", run


def train_workload() -> tuple[str, Callable[[], None]]:
    import torch
    from bench_train import auto_precision, project_step

    from storytui.model import PRESETS

    config = PRESETS["small"].config(16384)
    cpu = torch.device("cpu")
    precision = auto_precision(config, 8, 512, cpu)
    step = project_step(config, "small", 8, 512, cpu, precision, fused=None)
    return f"`small` preset, {precision.name}, one training step of 8 × 512 tokens", step


def child(workload: str, kept: bool, repeats: int) -> None:
    """Time ``repeats`` runs of ``workload`` and print one JSON line of medians."""
    from storytui.allocator import keep_all_freed_memory, keep_freed_memory

    if kept and not (keep_freed_memory if workload == "prefill" else keep_all_freed_memory)():
        raise SystemExit("this C library takes no thresholds: nothing to compare")
    title, run = prefill_workload() if workload == "prefill" else train_workload()
    samples = []
    for i in range(repeats + 1):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        run()
        elapsed = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        if i:  # the first one grows the heap either way
            faults = after.ru_minflt - before.ru_minflt
            kernel = after.ru_stime - before.ru_stime
            samples.append((elapsed * 1e3, faults, kernel * 1e3))
    medians = [statistics.median(s[k] for s in samples) for k in range(3)]
    print(
        json.dumps(
            {"title": title, "ms": medians[0], "faults": medians[1], "kernel_ms": medians[2]}
        )
    )


def run_child(workload: str, kept: bool, repeats: int) -> dict:
    command = [sys.executable, __file__, "--child", workload, "--repeats", str(repeats)]
    if kept:
        command.append("--kept")
    result = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def compare(workload: str, rounds: int, repeats: int) -> None:
    results: dict[bool, list[dict]] = {False: [], True: []}
    for round_ in range(rounds):
        for kept in (False, True):
            r = run_child(workload, kept, repeats)
            results[kept].append(r)
            print(
                f"  {workload} round {round_ + 1} {'kept' if kept else 'default'}: "
                f"{r['ms']:.0f} ms, {r['faults']:,.0f} page faults, "
                f"{r['kernel_ms']:.0f} ms kernel CPU",
                flush=True,
            )
    print(f"\n{results[True][0]['title']} (medians):\n")
    print("| freed memory | ms | page faults | kernel CPU ms |")
    print("|---|---:|---:|---:|")
    for kept, label in ((False, "glibc defaults"), (True, "kept (`storytui.allocator`)")):
        rows = results[kept]
        cells = [statistics.median(r[key] for r in rows) for key in ("ms", "faults", "kernel_ms")]
        print(f"| {label} | {cells[0]:.0f} | {cells[1]:,.0f} | {cells[2]:.0f} |")
    ratios = sorted(d["ms"] / k["ms"] for d, k in zip(results[False], results[True], strict=True))
    print(
        "\ntime, defaults ÷ kept, per round: "
        + ", ".join(f"{r:.2f}×" for r in ratios)
        + f" (median {statistics.median(ratios):.2f}×)\n"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    parser.add_argument("--kept", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS, default=list(WORKLOADS))
    parser.add_argument("--repeats", type=int, default=4, help="timed runs per child")
    parser.add_argument("--rounds", type=int, default=3, help="child pairs, alternated")
    args = parser.parse_args(argv)
    if args.child:
        child(args.child, args.kept, args.repeats)
        return
    for line in machine_report():
        print(line)
    for workload in args.workloads:
        compare(workload, args.rounds, args.repeats)


if __name__ == "__main__":
    with scratch_home():  # its int4 graphs stay out of the writer's cache
        main()
