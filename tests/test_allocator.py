"""Freed memory stays in the process: big temporary tensors stop costing page faults."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path

import pytest

from storytui import allocator

# Runs four MLP layers (colab widths) over TOKENS tokens eight times after applying the policies
# named on the command line, and prints the page faults of the last five (the first few grow
# the heap to its working size, two or three times as freed blocks are reused in new shapes).
FAULTS = """
import resource, sys, torch
import torch.nn.functional as F
from storytui import allocator
for policy in sys.argv[2:]:
    assert getattr(allocator, policy)()
torch.manual_seed(0)
tokens = int(sys.argv[1])
x0, w1, w2 = torch.randn(tokens, 768), torch.randn(4864, 768), torch.randn(768, 2432)
def layers():
    x = x0
    for _ in range(4):
        gate, up = F.linear(x, w1).chunk(2, dim=-1)
        x = x + F.linear(F.silu(gate) * up, w2)
for _ in range(3):
    layers()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    layers()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""
PREFILL = 1000  # the largest block, 1,000 × 4,864 floats, is under the 32 MiB mmap threshold
TRAINING = 2000  # a 39 MB block: above it


def _faults(tokens: int, *policies: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", FAULTS, str(tokens), *policies], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return int(result.stdout)


def _huge_pages_always() -> bool:
    """With transparent huge pages for every mapping, faults come 2 MiB at a time."""
    try:
        return "[always]" in Path("/sys/kernel/mm/transparent_hugepage/enabled").read_text()
    except OSError:
        return False


glibc_4k_pages = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc" or _huge_pages_always(),
    reason="counts glibc's 4 KiB page faults",
)


@glibc_4k_pages
def test_prefill_sized_activations_reuse_their_pages() -> None:
    default, kept = _faults(PREFILL), _faults(PREFILL, "keep_freed_memory")
    # glibc's defaults give the pages back and fault them in again: about 50,000 faults here
    assert default > 10_000
    assert kept < default / 5, (kept, default)


@glibc_4k_pages
def test_training_keeps_blocks_above_the_mmap_threshold_too() -> None:
    default = _faults(TRAINING)
    assert default > 20_000
    kept = _faults(TRAINING, "keep_all_freed_memory")
    assert kept < default / 10, (kept, default)


class FakeLibc:
    """Records the mallopt and malloc_trim calls that would reach glibc."""

    def __init__(self) -> None:
        self.calls: list[tuple] = []

        def mallopt(parameter: int, value: int) -> int:
            self.calls.append(("mallopt", parameter, value))
            return 1

        self.mallopt = mallopt
        self.malloc_trim = lambda pad: self.calls.append(("malloc_trim", pad))


@pytest.fixture
def fake_glibc(monkeypatch) -> FakeLibc:
    libc = FakeLibc()
    monkeypatch.setattr(allocator, "_level", allocator.NOTHING)
    monkeypatch.setattr(allocator, "_is_glibc", lambda: True)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: libc)
    return libc


def test_generation_settings_then_training_settings(fake_glibc: FakeLibc) -> None:
    assert allocator.keep_freed_memory()
    assert fake_glibc.calls == [
        ("mallopt", allocator.M_MMAP_THRESHOLD, 32 * 1024 * 1024),
        ("mallopt", allocator.M_TRIM_THRESHOLD, 1024 * 1024 * 1024),
    ]
    assert allocator.keep_freed_memory()  # once per process
    assert len(fake_glibc.calls) == 2
    assert allocator.keep_all_freed_memory()
    assert fake_glibc.calls[2:] == [
        ("mallopt", allocator.M_MMAP_MAX, 0),
        ("mallopt", allocator.M_TRIM_THRESHOLD, -1),
    ]


def test_a_weaker_policy_never_undoes_training(fake_glibc: FakeLibc) -> None:
    assert allocator.keep_all_freed_memory()
    calls = len(fake_glibc.calls)
    assert allocator.keep_freed_memory()  # a Generator for samples during training
    allocator.release_freed_memory()  # training keeps its heap
    assert len(fake_glibc.calls) == calls
    assert allocator._level == allocator.TRAINING


def test_release_trims_for_generation(fake_glibc: FakeLibc) -> None:
    allocator.keep_freed_memory()
    allocator.release_freed_memory()
    assert fake_glibc.calls[-1] == ("malloc_trim", 0)


def test_other_c_libraries_are_left_alone(monkeypatch) -> None:
    monkeypatch.setattr(allocator, "_level", allocator.NOTHING)
    monkeypatch.setattr(allocator, "_is_glibc", lambda: False)
    monkeypatch.setattr(allocator.ctypes, "CDLL", lambda name: pytest.fail("libc was called"))
    assert allocator.keep_freed_memory() is False
    assert allocator.keep_all_freed_memory() is False
    allocator.release_freed_memory()
    assert allocator._level == allocator.NOTHING
