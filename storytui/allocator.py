"""Keep freed memory in the process, so that large temporary tensors reuse warm pages.

glibc's malloc serves blocks above its mmap threshold with fresh pages from the kernel and
returns them on free, and it trims the heap's top as soon as enough is free. Every page it gives
back is faulted in (and zeroed by the kernel) the next time it is used:

- encoding a 1,000-token story with the ``colab`` model took 63,449 page faults and 116 ms
  of kernel time, on every cold prefill;
- a CPU training step of the ``small`` preset (8 × 512 tokens) took 196,614.

PyTorch's CPU tuning guide preloads jemalloc or tcmalloc for the same reason; setting glibc's
own thresholds needs no extra library. ``bench/bench_allocator.py`` measures both workloads.
"""

from __future__ import annotations

import ctypes
import functools
import platform
import threading

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
M_MMAP_MAX = -4
GENERATION_MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit
GENERATION_TRIM_THRESHOLD = 1024 * 1024 * 1024
NEVER_TRIM = -1

NOTHING, GENERATION, TRAINING = 0, 1, 2
_level = NOTHING
_lock = threading.Lock()  # a trainer may build a Generator (for samples) in another thread


def keep_freed_memory() -> bool:
    """For generation: blocks up to 32 MiB (every activation of a prefill) come from the heap,
    which keeps up to 1 GiB free at its top; larger blocks still go back to the system. True
    where glibc took the settings."""
    return _raise_to(GENERATION)


def keep_all_freed_memory() -> bool:
    """For CPU training: every block comes from the heap and the heap is never trimmed. The
    process keeps its peak footprint, which each step needs again anyway."""
    return _raise_to(TRAINING)


def release_freed_memory() -> None:
    """Give the heap's free pages back once, after a one-off peak (converting a model's weights
    leaves about 300 MB free for the ``colab`` preset); the next prefill takes its pages again.
    A training process keeps its heap: its next step would fault it all in again."""
    if _level < TRAINING and _is_glibc():
        ctypes.CDLL(None).malloc_trim(0)


def _raise_to(level: int) -> bool:
    """Apply ``level`` unless a stronger one is in place (a weaker one would trim again)."""
    with _lock:
        return _raise_locked(level)


def _raise_locked(level: int) -> bool:
    global _level
    if _level >= level:
        return True
    if not _is_glibc():
        return False
    mallopt = ctypes.CDLL(None).mallopt
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    if level == TRAINING:
        settings = ((M_MMAP_MAX, 0), (M_TRIM_THRESHOLD, NEVER_TRIM))
    else:
        settings = (
            (M_MMAP_THRESHOLD, GENERATION_MMAP_THRESHOLD),
            (M_TRIM_THRESHOLD, GENERATION_TRIM_THRESHOLD),
        )
    if not all(mallopt(parameter, value) == 1 for parameter, value in settings):
        return False
    _level = level
    return True


@functools.cache
def _is_glibc() -> bool:
    """Other C libraries (macOS, Windows, musl) keep their own behaviour."""
    return platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
