"""Keep freed memory in the process, so that large temporary tensors reuse warm pages.

glibc's malloc serves blocks above its mmap threshold with fresh pages from the kernel and
returns them on free, and it trims the heap's top as soon as enough is free. Encoding a
1,000-token story with the ``colab`` model allocates and frees hundreds of megabytes of
activations that way: about 86,000 page faults, some 160 ms of kernel time zeroing pages, on
every cold prefill. Raising both thresholds keeps the pages for the next layer and the next
prefill (PyTorch's CPU tuning guide preloads jemalloc or tcmalloc for the same reason; this needs
no extra library). The cost is that the process keeps up to its peak working set instead of
giving it back between continuations.
"""

from __future__ import annotations

import ctypes
import platform

M_TRIM_THRESHOLD = -1  # mallopt parameters, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 * 1024 * 1024  # glibc's largest accepted value on 64-bit systems
TRIM_THRESHOLD = 1024 * 1024 * 1024

_applied: bool | None = None


def keep_freed_memory() -> bool:
    """Set glibc's thresholds once per process; True where glibc accepted them.

    Other C libraries (macOS, Windows, musl) keep their own behaviour: False.
    """
    global _applied
    if _applied is None:
        _applied = _set_glibc_thresholds()
    return _applied


def _set_glibc_thresholds() -> bool:
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
    mallopt.restype = ctypes.c_int
    # mallopt returns 1 on success; the mmap threshold first (setting it fixes the trim one too)
    return mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and (
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    )
