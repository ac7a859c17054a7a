"""Whether a checkpoint's weights hold only finite numbers, remembered per weights file.

``storytui models`` marks the checkpoint a command without ``--model`` would load; one whose
weights hold NaN is skipped by that command, so the listing must know too. Finding NaN means
reading every tensor (150 MB at the colab preset), so each answer is kept in the data dir's
cache under the file's identity (device, inode, size, modification and change times): a
checkpoint saved again, or a file rewritten in place even with its times put back, is read
again, and a listing of known checkpoints reads no weights.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path

from storytui import paths
from storytui.atomic import atomic_write_text
from storytui.errors import StoryError


def weights_problem(weights: Path, reason_of: Callable[[Path], str | None]) -> str | None:
    """``reason_of(weights)``: why the file's values would not load, or None; from the cache
    when this very file was asked about before. The reason names no checkpoint (a file may be
    reached under several names). A read that fails (``OSError``, out of memory) is reported but
    not remembered; a cache that cannot be read or written only costs the check."""
    weights = Path(os.path.realpath(weights))
    try:
        stat = weights.stat()
    except OSError as exc:
        return f"{weights.name} cannot be read ({exc.strerror})"
    stamp = [stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns]
    known = _read_cache()
    entry = known.get(str(weights))
    if isinstance(entry, dict) and entry.get("stamp") == stamp:
        problem = entry.get("problem")
        if problem is None or isinstance(problem, str):
            return problem  # anything else is a damaged entry: ask again
    try:
        problem = reason_of(weights)
    except (OSError, MemoryError, RuntimeError) as exc:
        return f"{weights.name} cannot be read ({exc})"
    # forget files that are gone (os.path.exists: False, not an error, for one out of reach)
    known = {path: e for path, e in known.items() if os.path.exists(path)}
    known[str(weights)] = {"stamp": stamp, "problem": problem}
    with contextlib.suppress(StoryError, OSError):
        atomic_write_text(paths.weight_checks_path(), json.dumps(known, indent=1))
    return problem


def _read_cache() -> dict:
    try:
        data = json.loads(paths.weight_checks_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
