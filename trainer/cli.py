"""`storytui train ...` and `storytui data ...`: thin typer layers over the trainer modules.

Only typer is imported here; each command imports torch and friends when it runs.
"""

from __future__ import annotations

from trainer.data_cli import data_app
from trainer.train_cli import train_app

__all__ = ["data_app", "train_app"]
