"""Training speed: tokens/s (and MFU on CUDA) per preset and device, and on this CPU the
project's training step against a plain fp32 PyTorch loop of the same model.

    .venv/bin/python bench/bench_train.py                       # ~3-5 minutes on a 2-core CPU
    .venv/bin/python bench/bench_train.py --presets tiny,small,colab --devices cpu,cuda

The comparison runs every candidate setting of the project's step (precision, fused AdamW,
micro-batch size, optionally torch.compile) and the plain loop in interleaved rounds on the same
model and data, so background load hits them alike; the median step time counts. Markdown tables
go to stdout, progress to stderr.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from storytui.model import PRESETS, build_model
from storytui.tokenizer import load_tokenizer
from trainer.loop import TrainStep, make_optimizer
from trainer.stages import default_hyperparameters
from trainer.throughput import (
    Precision,
    flops_per_token,
    peak_flops,
    resolve_device,
    resolve_precision,
    synchronize,
    time_micro_step,
)

TARGET_RATIO = 1.3


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@dataclass
class Candidate:
    """One way to run a training step; ``step()`` does one and returns its tokens."""

    label: str
    step: Callable[[], int]
    times: list[float]
    tokens: int = 0

    def run(self, device: torch.device) -> None:
        synchronize(device)
        started = time.perf_counter()
        self.tokens = self.step()
        synchronize(device)
        self.times.append(time.perf_counter() - started)

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / statistics.median(self.times)


def batch(config, batch_size: int, block: int, device: torch.device, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    shape = (batch_size, block)
    x = torch.randint(0, config.vocab_size, shape, generator=generator)
    y = torch.randint(0, config.vocab_size, shape, generator=generator)
    return x.to(device), y.to(device)


def plain_step(config, batch_size: int, block: int, device: torch.device) -> Callable[[], int]:
    """The baseline: what a plain PyTorch loop does (default AdamW, fp32, no autocast)."""
    torch.manual_seed(0)
    model = build_model(config).to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x, y = batch(config, batch_size, block, device)

    def step() -> int:
        _, loss = model(x, y)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return batch_size * block

    return step


def project_step(
    config,
    preset: str,
    batch_size: int,
    block: int,
    device: torch.device,
    precision: Precision,
    fused: bool | None,
    compile: bool = False,
) -> Callable[[], int]:
    """The loop's own ``TrainStep`` with the project's optimizer setup."""
    torch.manual_seed(0)
    raw = build_model(config).to(device).train()
    model = torch.compile(raw) if compile else raw
    hp = default_hyperparameters("pretrain", preset, "storytui")
    optimizer = make_optimizer(raw, hp, device, fused=fused)
    stepper = TrainStep(model, optimizer, precision, 1, hp.grad_clip)
    x, y = batch(config, batch_size, block, device)

    def step() -> int:
        stepper(lambda: (x, y), hp.lr)
        return batch_size * block

    return step


def compare_on_cpu(preset: str, batch_size: int, rounds: int, with_compile: bool) -> list[str]:
    """Plain fp32 loop vs every candidate project setting; returns markdown lines."""
    device = torch.device("cpu")
    config = PRESETS[preset].config(load_tokenizer(PRESETS[preset].tokenizer).n_vocab)
    block = config.block_size
    fp32, bf16 = Precision("fp32", "cpu"), Precision("bf16", "cpu")
    builders = {
        "plain PyTorch: fp32, AdamW": lambda: plain_step(config, batch_size, block, device),
        "project: fp32, fused AdamW": lambda: project_step(
            config, preset, batch_size, block, device, fp32, True
        ),
        "project: bf16 autocast, AdamW": lambda: project_step(
            config, preset, batch_size, block, device, bf16, False
        ),
        "project: bf16 autocast, fused AdamW": lambda: project_step(
            config, preset, batch_size, block, device, bf16, True
        ),
        f"project: bf16 autocast, fused AdamW, micro-batch {batch_size * 2}": lambda: project_step(
            config, preset, batch_size * 2, block, device, bf16, True
        ),
    }
    if with_compile:
        builders["project: bf16 autocast, fused AdamW, torch.compile"] = lambda: project_step(
            config, preset, batch_size, block, device, bf16, True, compile=True
        )
    candidates = []
    for label, build in builders.items():
        log(f"  warming up {label}")
        candidate = Candidate(label, build(), [])
        candidate.run(device)  # first step: allocation, compilation
        candidate.times.clear()
        candidates.append(candidate)
    for round_ in range(rounds):
        log(f"  round {round_ + 1}/{rounds}")
        for candidate in candidates:
            candidate.run(device)
    baseline = candidates[0]
    best = max(candidates[1:], key=lambda c: c.tokens_per_s)
    lines = [
        f"### {preset} on this CPU: project step vs plain PyTorch "
        f"({torch.get_num_threads()} threads, {batch_size}×{block} tokens per micro-batch, "
        f"median of {rounds} interleaved steps)",
        "",
        "| setting | tokens/s | vs plain |",
        "|---|---:|---:|",
    ]
    for candidate in candidates:
        ratio = candidate.tokens_per_s / baseline.tokens_per_s
        mark = " **(best)**" if candidate is best else ""
        lines.append(f"| {candidate.label}{mark} | {candidate.tokens_per_s:,.0f} | {ratio:.2f}× |")
    ratio = best.tokens_per_s / baseline.tokens_per_s
    verdict = "meets" if ratio >= TARGET_RATIO else "misses"
    lines += [
        "",
        f"Best project setting: {best.label}, **{ratio:.2f}×** the plain fp32 loop "
        f"({verdict} the {TARGET_RATIO}× target).",
        "",
    ]
    return lines


def auto_precision(config, batch_size: int, block: int, device: torch.device) -> Precision:
    """What the loop's ``--dtype auto`` would pick here (on the CPU: the faster, measured)."""
    torch.manual_seed(0)
    probe = build_model(config).to(device).train()

    def measure(precision: Precision) -> float:
        return time_micro_step(probe, config, batch_size, block, precision, device, repeats=1)

    return resolve_precision("auto", device, measure)


def throughput_table(presets: list[str], devices: list[str], steps: int) -> list[str]:
    """The project's step with each device's automatic precision, per preset."""
    lines = [
        "### Training throughput per preset and device (project step, automatic precision)",
        "",
        "| preset | parameters | device | precision | micro-batch | tokens/s | MFU |",
        "|---|---:|---|---|---|---:|---:|",
    ]
    for device_name in devices:
        try:
            device = resolve_device(device_name)
        except Exception as exc:  # a device this machine lacks: say so and go on
            log(f"skipping {device_name}: {exc}")
            continue
        for preset in presets:
            config = PRESETS[preset].config(load_tokenizer(PRESETS[preset].tokenizer).n_vocab)
            hp = default_hyperparameters("pretrain", preset, "storytui")
            block = config.block_size
            batch_size = hp.batch_size if device.type != "cpu" or preset != "colab" else 1
            log(f"{preset} on {device}: {batch_size}×{block}")
            precision = auto_precision(config, batch_size, block, device)
            candidate = Candidate(
                preset,
                project_step(config, preset, batch_size, block, device, precision, None),
                [],
            )
            candidate.run(device)
            candidate.times.clear()
            for _ in range(steps):
                candidate.run(device)
            n_params = sum(p.numel() for p in build_model(config).parameters())
            peak = peak_flops(device)
            mfu = (
                f"{candidate.tokens_per_s * flops_per_token(config, n_params, block) / peak:.1%}"
                if peak
                else "-"
            )
            name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
            lines.append(
                f"| {preset} | {n_params / 1e6:.1f}M | {name} | {precision.name} | "
                f"{batch_size}×{block} | {candidate.tokens_per_s:,.0f} | {mfu} |"
            )
    lines.append("")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="tiny,small", help="for the throughput table")
    parser.add_argument("--devices", default="cpu,cuda", help="for the throughput table")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per table row")
    parser.add_argument("--compare-preset", default="small")
    parser.add_argument("--compare-batch", type=int, default=8, help="sequences per micro-batch")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved timed rounds")
    parser.add_argument("--compile", action="store_true", help="also try torch.compile")
    parser.add_argument("--skip-compare", action="store_true")
    args = parser.parse_args()

    started = time.perf_counter()
    lines = [f"## Training benchmark (torch {torch.__version__})", ""]
    lines += throughput_table(args.presets.split(","), args.devices.split(","), args.steps)
    if not args.skip_compare:
        log(f"comparing on the CPU ({args.compare_preset})")
        lines += compare_on_cpu(args.compare_preset, args.compare_batch, args.rounds, args.compile)
    lines.append(f"_{time.perf_counter() - started:.0f} s in total._")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
