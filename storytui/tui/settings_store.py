"""The app's preferences in ``paths.settings_path()``: sampling, preset, model, view, last file.

Sampling settings are kept as ``SamplingSettings.to_json()`` and validated when the model stack
has been imported (``storytui.sampling`` pulls in torch, which must not slow the app's start).
Keys this version does not know are kept, so an older app never drops a newer one's settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from storytui import paths
from storytui.atomic import atomic_write_text
from storytui.tui.story_files import set_aside


@dataclass
class AppSettings:
    sampling: dict = field(default_factory=dict)  # SamplingSettings.to_json(); {} = defaults
    preset: str = "balanced"  # the preset the sampling came from, "custom" once edited
    model: str | None = None  # last model picked; None = the best available
    show_probabilities: bool = False
    last_file: str | None = None  # None: the draft
    other: dict = field(default_factory=dict)  # keys this version does not know

    KNOWN = ("sampling", "preset", "model", "show_probabilities", "last_file")

    def to_json(self) -> dict:
        data = dict(self.other)
        data.update({key: getattr(self, key) for key in self.KNOWN})
        return data

    @classmethod
    def from_json(cls, data: dict) -> AppSettings:
        sampling = data.get("sampling")
        model, last_file = data.get("model"), data.get("last_file")
        return cls(
            sampling=sampling if isinstance(sampling, dict) else {},
            preset=str(data.get("preset") or "balanced"),
            model=model if isinstance(model, str) else None,
            show_probabilities=bool(data.get("show_probabilities", False)),
            last_file=last_file if isinstance(last_file, str) else None,
            other={k: v for k, v in data.items() if k not in cls.KNOWN},
        )


def load_settings() -> tuple[AppSettings, str | None]:
    """The saved settings, or defaults plus a notice when the file had to be set aside."""
    path = paths.settings_path()
    if not path.exists():
        return AppSettings(), None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
    except (ValueError, UnicodeDecodeError, OSError) as exc:
        aside = set_aside(path)
        return AppSettings(), f"settings were unreadable ({exc}); kept them as {aside.name}"
    return AppSettings.from_json(data), None


def save_settings(settings: AppSettings) -> None:
    atomic_write_text(paths.settings_path(), json.dumps(settings.to_json(), indent=2) + "\n")
