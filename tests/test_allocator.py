"""Freed memory stays in the process: big temporary tensors stop costing page faults."""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

from storytui.allocator import keep_freed_memory

# Runs four prefill-sized MLP layers (1,000 tokens, colab widths) six times and prints the page
# faults of the last five, after the first has grown the heap to its working size.
FAULTS = """
import resource, sys, torch
import torch.nn.functional as F
if sys.argv[1] == "keep":
    from storytui.allocator import keep_freed_memory
    assert keep_freed_memory()
torch.manual_seed(0)
x0, w1, w2 = torch.randn(1000, 768), torch.randn(4864, 768), torch.randn(768, 2432)
def layers():
    x = x0
    for _ in range(4):
        gate, up = F.linear(x, w1).chunk(2, dim=-1)
        x = x + F.linear(F.silu(gate) * up, w2)
layers()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    layers()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(mode: str) -> int:
    result = subprocess.run(
        [sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True
    )
    return int(result.stdout)


glibc_only = pytest.mark.skipif(
    platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
    reason="the thresholds are glibc's",
)


@glibc_only
def test_prefill_sized_activations_reuse_their_pages() -> None:
    default, kept = _faults("default"), _faults("keep")
    # glibc's defaults give the pages back and fault them in again: about 40,000 faults here
    assert default > 10_000
    assert kept < default / 3, (kept, default)


@glibc_only
def test_applied_once_and_reported() -> None:
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True
