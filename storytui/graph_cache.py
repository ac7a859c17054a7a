"""Built int4 decode graphs kept on disk, keyed by the weights they were rounded from.

Building the graph means importing the ``onnx`` package (about 0.9 s on its own), rounding every
matrix to four bits and serializing the result: over a second for the colab preset, paid again
by every ``storytui continue``. Hashing the weights costs about 0.2 s for the same model, so the
second start of any checkpoint reads the graph back instead. The key is the content (sha256 of
every tensor, the config and the graph format), never a path, so a retrained checkpoint saved
over an old one can never meet a stale graph. The ``KEEP`` most recently used graphs stay; a
cache that cannot be written, or a file that cannot be read back, only costs the build.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import torch
from torch import nn

from storytui import paths
from storytui.atomic import atomic_write_bytes, temp_files
from storytui.errors import StoryError

GRAPH_FORMAT = 1  # bump when this module's files change meaning
KEEP = 4  # graphs kept (about 42 MB each at the colab preset)
SUFFIX = ".onnx"
STALE_TEMP_SECONDS = 3600  # a temp file this old is a write that was killed, not one under way
Loaded = TypeVar("Loaded")


def graph_dir() -> Path:
    return paths.graph_cache_dir()


def _builder_source() -> str:
    """sha256 of the code that writes the graph: an upgrade that changes it (even without
    bumping ``GRAPH_FORMAT``) can never be served a graph the old code wrote."""
    from storytui import onnx_decoder

    try:
        return hashlib.sha256(Path(onnx_decoder.__file__).read_bytes()).hexdigest()
    except OSError:  # no source beside the bytecode: fall back on the package version
        from storytui import __version__

        return __version__


def weights_key(model: nn.Module, group_sizes: tuple[int, ...]) -> str:
    """sha256 over the graph format, the builder's code, the model config, the group sizes
    and every tensor."""
    digest = hashlib.sha256()
    header = {
        "format": GRAPH_FORMAT,
        "builder": _builder_source(),
        "config": model.config.to_json(),
        "groups": group_sizes,
    }
    digest.update(json.dumps(header, sort_keys=True).encode())
    seen: set[tuple] = set()
    for name, tensor in sorted(model.state_dict().items()):
        identity = (tensor.data_ptr(), tuple(tensor.shape), tensor.stride(), tensor.dtype)
        if identity in seen:  # a tied weight is hashed once (its name still is)
            digest.update(name.encode())
            continue
        seen.add(identity)
        tensor = tensor.detach().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(memoryview(tensor.view(torch.uint8).flatten().numpy()))
    return digest.hexdigest()


def load_or_build(key: str, build: Callable[[], bytes], loads: Callable[[bytes], Loaded]) -> Loaded:
    """``loads(graph)`` for the cached graph under ``key``, else for a fresh ``build()``, kept.

    A cached file that ``loads`` refuses (damaged on disk) is rebuilt and replaced.
    """
    path = graph_dir() / f"{key}{SUFFIX}"
    try:
        loaded = loads(path.read_bytes())
    except Exception:  # none cached, unreadable, or refused (damaged on disk): build it
        pass
    else:
        with contextlib.suppress(OSError):
            path.touch()  # most recently used: the last to be evicted
        return loaded
    graph = build()
    loaded = loads(graph)
    with contextlib.suppress(StoryError, OSError):  # a cache is an optimisation, never an error
        atomic_write_bytes(path, graph)
        evict(keep=KEEP)
    return loaded


def evict(keep: int = KEEP) -> None:
    """Delete all but the ``keep`` most recently used graphs, and what killed writes left."""
    graphs = sorted(graph_dir().glob(f"*{SUFFIX}"), key=lambda p: p.stat().st_mtime_ns)
    stale = [
        temp
        for temp in temp_files(graph_dir(), f"*{SUFFIX}")
        if time.time() - temp.stat().st_mtime > STALE_TEMP_SECONDS
    ]
    for old in graphs[: max(len(graphs) - keep, 0)] + stale:
        with contextlib.suppress(OSError):
            old.unlink()
