"""Freed memory stays in the process: big temporary tensors stop costing page faults."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

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
        [sys.executable, "-c", FAULTS, str(tokens), *policies],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(result.stdout)


pytestmark = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the thresholds are glibc's",
)


def test_prefill_sized_activations_reuse_their_pages() -> None:
    default, kept = _faults(PREFILL), _faults(PREFILL, "keep_freed_memory")
    # glibc's defaults give the pages back and fault them in again: about 50,000 faults here
    assert default > 10_000
    assert kept < default / 5, (kept, default)


def test_training_keeps_blocks_above_the_mmap_threshold_too() -> None:
    default = _faults(TRAINING)
    assert default > 20_000
    assert _faults(TRAINING, "keep_all_freed_memory") < default / 10
    # the generation policy applied later must not bring trimming back
    later = _faults(TRAINING, "keep_all_freed_memory", "keep_freed_memory")
    assert later < default / 10, (later, default)
