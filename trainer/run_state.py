"""What a run leaves on disk: the best model, the resumable latest state, the metrics log.

    models/NAME/            best weights by validation loss (an ordinary checkpoint)
    runs/NAME/latest/       the newest weights (an ordinary checkpoint) + state.pt: optimizer,
                            loss scaler, every RNG (global, CUDA, each rank's data sampler),
                            step, tokens seen, best loss, elapsed time
    runs/NAME/metrics.jsonl one JSON object per logged step and per evaluation

``latest`` is written as one directory rename, so weights and optimizer state always match.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from storytui import paths
from storytui.atomic import atomic_directory, atomic_write_text, restore_replaced
from storytui.checkpoint import CheckpointMeta, load_weights, save_checkpoint

LATEST = "latest"
STATE_FILE = "state.pt"
METRICS_FILE = "metrics.jsonl"
STATE_VERSION = 1


def latest_dir(name: str) -> Path:
    return paths.run_dir(name) / LATEST


def metrics_path(name: str) -> Path:
    return paths.run_dir(name) / METRICS_FILE


def save_model(name: str, model: nn.Module, meta: CheckpointMeta) -> Path:
    """The model users load: ``models/NAME``."""
    return save_checkpoint(paths.model_dir(name), model, meta)


def save_latest(name: str, model: nn.Module, meta: CheckpointMeta, state: dict[str, Any]) -> Path:
    """Weights + training state in one atomic directory (a loadable checkpoint besides)."""
    final = latest_dir(name)
    with atomic_directory(final) as tmp:
        staged = save_checkpoint(tmp / ".weights", model, meta)
        for item in staged.iterdir():
            os.replace(item, tmp / item.name)
        staged.rmdir()
        torch.save({"version": STATE_VERSION, **state}, tmp / STATE_FILE)
    return final


def load_latest(name: str, model: nn.Module) -> dict[str, Any]:
    """Copy the latest weights into ``model`` and return the training state saved with them."""
    from safetensors.torch import load_file

    from storytui.checkpoint import WEIGHTS_FILE

    directory = latest_dir(name)
    restore_replaced(directory.parent)
    load_weights(model, load_file(str(directory / WEIGHTS_FILE)), f"runs/{name}/{LATEST}")
    return torch.load(directory / STATE_FILE, map_location="cpu", weights_only=True)


class MetricsLog:
    """Append-only JSONL of a run; a resumed run first drops rows past its restart step."""

    def __init__(self, name: str, enabled: bool = True) -> None:
        self.path = metrics_path(name)
        self.enabled = enabled

    def truncate_after(self, step: int) -> None:
        if not self.enabled or not self.path.is_file():
            return
        rows = [row for row in read_metrics(self.path) if row.get("step", 0) <= step]
        atomic_write_text(self.path, "".join(json.dumps(row) + "\n" for row in rows))

    def reset(self) -> None:
        if self.enabled and self.path.exists():
            self.path.unlink()

    def write(self, row: dict[str, Any]) -> None:
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(row) + "\n")
            handle.flush()


def read_metrics(path: Path) -> list[dict[str, Any]]:
    """Rows of a metrics file; a torn last line (killed mid-write) is skipped."""
    rows = []
    with Path(path).open(encoding="utf-8") as handle:
        for line in handle:
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return rows
