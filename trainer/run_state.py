"""What a run leaves on disk: the best model, the resumable latest state, the metrics log.

    models/NAME/            best weights by validation loss (an ordinary checkpoint)
    runs/NAME/latest/       the newest weights (an ordinary checkpoint) + state.pt: optimizer,
                            loss scaler, every RNG (global, CUDA, each rank's data sampler),
                            step, tokens seen, best loss, elapsed time
    runs/NAME/metrics.jsonl one JSON object per logged step and per evaluation

``latest`` is written as one directory rename, so weights and optimizer state always match.
A run that has saved ``models/NAME`` but no ``latest`` yet marks itself with
``runs/NAME/.no-latest``: should it stop there (a full disk, a kill), nothing can be resumed, and
a fresh run of the same name may replace what it left.
"""

from __future__ import annotations

import contextlib
import errno
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from torch import nn

from storytui import paths
from storytui.atomic import atomic_directory, atomic_write_text, restore_replaced
from storytui.checkpoint import CheckpointMeta, load_weights, save_checkpoint
from storytui.errors import StoryError
from storytui.tokenizer import Tokenizer

LATEST = "latest"
STATE_FILE = "state.pt"
METRICS_FILE = "metrics.jsonl"
NO_LATEST_MARK = ".no-latest"
STATE_VERSION = 1
_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


class SaveError(StoryError):
    """A checkpoint could not be written; ``disk_full`` when the disk (or quota) ran out."""

    def __init__(self, message: str, disk_full: bool) -> None:
        super().__init__(message)
        self.disk_full = disk_full


def latest_dir(name: str) -> Path:
    return paths.run_dir(name) / LATEST


def metrics_path(name: str) -> Path:
    return paths.run_dir(name) / METRICS_FILE


def save_model(name: str, model: nn.Module, meta: CheckpointMeta, tokenizer: Tokenizer) -> Path:
    """The model users load: ``models/NAME``."""
    final = paths.model_dir(name)
    with _saving(final):
        return save_checkpoint(final, model, meta, tokenizer=tokenizer)


def save_latest(
    name: str, model: nn.Module, meta: CheckpointMeta, tokenizer: Tokenizer, state: dict[str, Any]
) -> Path:
    """Weights + training state in one atomic directory (a loadable checkpoint besides)."""
    final = latest_dir(name)
    with _saving(final), atomic_directory(final) as tmp:
        staged = save_checkpoint(tmp / ".weights", model, meta, tokenizer=tokenizer)
        for item in staged.iterdir():
            os.replace(item, tmp / item.name)
        staged.rmdir()
        # through a Python file: a failed write then says why (torch's own file writer only
        # reports "unexpected pos")
        with open(tmp / STATE_FILE, "wb") as handle:
            torch.save({"version": STATE_VERSION, **state}, handle)
    return final


@contextlib.contextmanager
def _saving(target: Path, verb: str = "save") -> Iterator[None]:
    """Turn whatever a failed save raises (safetensors' and torch's own errors included) into
    one ``SaveError`` line; the directory being replaced is left as it was."""
    try:
        yield
    except SaveError:
        raise
    except (OSError, RuntimeError, SafetensorError, StoryError) as exc:
        if _disk_full(exc):
            doing = {"save": "saving", "write": "writing"}[verb]
            raise SaveError(f"disk full while {doing} {target}", disk_full=True) from exc
        if isinstance(exc, StoryError):  # already one line ("cannot write ...")
            raise SaveError(str(exc), disk_full=False) from exc
        reason = " ".join(str(exc).split()) or type(exc).__name__
        if isinstance(exc, OSError):
            reason = exc.strerror or reason
        raise SaveError(f"cannot {verb} {target}: {reason}", disk_full=False) from exc


def _disk_full(exc: BaseException | None) -> bool:
    """Whether an error, or any error it was raised from, is a full disk or quota."""
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        if isinstance(exc, OSError) and exc.errno in _DISK_FULL:
            return True
        text = str(exc)
        if "os error 28" in text or "No space left on device" in text:  # safetensors (Rust)
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def mark_no_latest(name: str) -> None:
    """Record that ``models/NAME`` is about to exist before any resumable state does."""
    mark = paths.run_dir(name) / NO_LATEST_MARK
    if not mark.exists():
        mark.parent.mkdir(parents=True, exist_ok=True)
        with _saving(mark):
            atomic_write_text(mark, "models/NAME was saved before runs/NAME/latest\n")


def clear_no_latest(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        (paths.run_dir(name) / NO_LATEST_MARK).unlink()


def stopped_before_latest(name: str) -> bool:
    """A run of this name saved a model but stopped before any resumable state."""
    return (paths.run_dir(name) / NO_LATEST_MARK).is_file() and not latest_dir(name).exists()


def load_latest(name: str, model: nn.Module) -> dict[str, Any]:
    """Copy the latest weights into ``model`` and return the training state saved with them."""
    from safetensors.torch import load_file

    from storytui.checkpoint import WEIGHTS_FILE

    directory = latest_dir(name)
    restore_replaced(directory.parent)
    label = f"runs/{name}/{LATEST}"
    try:
        weights = load_file(str(directory / WEIGHTS_FILE))
        load_weights(model, weights, label)
        return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)
    except (OSError, RuntimeError, ValueError, EOFError, SafetensorError) as exc:
        reason = " ".join(str(exc).split())[:160] or type(exc).__name__
        raise StoryError(
            f"{label} is damaged and cannot be resumed ({reason}); start the run again: "
            f"`storytui models rm {name}`, then `storytui train … --out {name}` without --resume"
        ) from exc


class MetricsLog:
    """Append-only JSONL of a run; a resumed run first drops rows past its restart step."""

    def __init__(self, name: str, enabled: bool = True) -> None:
        self.path = metrics_path(name)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        rows = [row for row in read_metrics(self.path) if _number(row.get("step", 0)) <= step]
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in rows))

    def reset(self) -> None:
        if self.enabled and self.path.exists():
            self.path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with _saving(self.path, "write"), self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics file; a torn last line (killed mid-write) is skipped."""
    return read_metrics_counted(path)[0]


def read_metrics_counted(path: Path) -> tuple[list[dict[str, Any]], int]:
    """The JSON-object rows of a metrics file, and how many other lines were skipped.

    Lines that are not UTF-8, not JSON, or not an object are skipped and counted; a torn last
    line (a writer killed mid-line, so no newline) is skipped without counting.
    """
    rows: list[dict[str, Any]] = []
    bad = 0
    with Path(path).open("rb") as handle:
        for line in handle:
            if not line.strip():
                continue
            try:
                row = json.loads(line.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                bad += line.endswith(b"\n")
                continue
            if isinstance(row, dict):
                rows.append(row)
            else:
                bad += 1
    return rows, bad


def _number(value: Any) -> float:
    """A row's step as a number; anything else sorts after every step (and is dropped)."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return math.inf
