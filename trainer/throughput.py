"""Devices, numeric precision and speed: what the loop and the benchmark both need to know.

Precision is picked by measurement where it is not obvious: a CUDA card with bf16 trains in bf16,
one without (a T4) in fp16 with loss scaling, and a CPU in bf16 autocast only when that measures
faster than fp32 on this machine (it is ~2-3x faster on CPUs with AVX512-BF16 or AMX, slower on
older ones).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from storytui.errors import StoryError
from storytui.model import ModelConfig

DTYPES = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda", "mps")
_TORCH_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}

# Dense half-precision peak of common cards, TFLOP/s (the figure MFU is measured against).
PEAK_TFLOPS = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "A10G": 70.0,
    "A10": 125.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
    "RTX 3090": 71.0,
    "V100": 125.0,
    "T4": 65.0,
}


def resolve_device(requested: str, local_rank: int = 0) -> torch.device:
    """``auto`` prefers CUDA, then Apple's MPS, then the CPU; an unavailable choice is an error."""
    if requested not in DEVICES:
        raise StoryError(f"unknown device {requested!r} (choose {', '.join(DEVICES)})")
    cuda = torch.cuda.is_available()
    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    if requested == "auto":
        requested = "cuda" if cuda else "mps" if mps else "cpu"
    if requested == "cuda":
        if not cuda:
            raise StoryError("--device cuda: no CUDA GPU is visible to PyTorch")
        return torch.device("cuda", local_rank)
    if requested == "mps" and not mps:
        raise StoryError("--device mps: Apple's Metal backend is not available here")
    return torch.device(requested)


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: fp32, or autocast to bf16/fp16 (fp16 needs loss scaling)."""

    name: str  # fp32 | bf16 | fp16
    device_type: str

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.name == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=_TORCH_DTYPES[self.name])

    @property
    def needs_scaler(self) -> bool:
        return self.name == "fp16"


def check_precision(name: str, device: torch.device) -> Precision:
    """Validate an explicit (non-auto) precision for ``device``."""
    if name not in DTYPES or name == "auto":
        raise StoryError(f"unknown dtype {name!r} (choose {', '.join(DTYPES)})")
    if name == "fp16" and device.type == "cpu":
        raise StoryError("--dtype fp16 needs a GPU; on the CPU use bf16 or fp32")
    if name == "bf16" and device.type == "cuda" and not cuda_has_bf16(device):
        raise StoryError(f"{torch.cuda.get_device_name(device)} has no bf16; use --dtype fp16")
    return Precision(name, device.type)


def cuda_has_bf16(device: torch.device) -> bool:
    """Whether the card multiplies bf16 natively (Ampere and later, or ROCm).

    ``torch.cuda.is_bf16_supported()`` also says yes where bf16 only runs emulated (a T4), at a
    fraction of fp16's speed, and asks the current device, which under torchrun is card 0
    until the rank's own is set: this asks ``device`` itself.
    """
    if torch.version.hip:
        return True
    return torch.cuda.get_device_properties(device).major >= 8


def resolve_precision(
    name: str, device: torch.device, measure: Callable[[Precision], float] | None = None
) -> Precision:
    """Turn ``auto`` into a concrete precision; on the CPU ``measure`` (seconds) decides."""
    if name != "auto":
        return check_precision(name, device)
    if device.type == "cuda":
        return Precision("bf16" if cuda_has_bf16(device) else "fp16", "cuda")
    if device.type != "cpu" or measure is None:
        return Precision("fp32", device.type)
    fp32, bf16 = Precision("fp32", "cpu"), Precision("bf16", "cpu")
    return bf16 if measure(bf16) < measure(fp32) else fp32


def time_micro_step(
    model: nn.Module,
    config: ModelConfig,
    batch_size: int,
    block_size: int,
    precision: Precision,
    device: torch.device,
    repeats: int = 2,
) -> float:
    """Seconds for one forward + backward of a micro-batch (after one warm-up pass).

    Random tokens from a private generator and a forked global RNG: measuring changes neither
    the weights nor any random stream the run depends on. Gradients are discarded.
    """
    generator = torch.Generator().manual_seed(0)
    shape = (batch_size, block_size)
    x = torch.randint(0, config.vocab_size, shape, generator=generator).to(device)
    y = torch.randint(0, config.vocab_size, shape, generator=generator).to(device)
    devices = [device.index or 0] if device.type == "cuda" else []
    timings = []
    with torch.random.fork_rng(devices=devices):
        for _ in range(repeats + 1):
            synchronize(device)
            started = time.perf_counter()
            with precision.autocast():
                _, loss = model(x, y)
            loss.backward()
            synchronize(device)
            timings.append(time.perf_counter() - started)
    model.zero_grad(set_to_none=True)
    return min(timings[1:])


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def flops_per_token(config: ModelConfig, n_params: int, block_size: int) -> float:
    """Training FLOPs per token: 6·N for the weights plus attention's 12·layers·width·context."""
    return 6.0 * n_params + 12.0 * config.n_layer * config.n_embd * block_size


def peak_flops(device: torch.device) -> float | None:
    """The card's dense half-precision peak in FLOP/s, or None when unknown (CPU, MPS, others)."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device).upper()
    for key in sorted(PEAK_TFLOPS, key=len, reverse=True):
        if key in name:
            return PEAK_TFLOPS[key] * 1e12
    return None
