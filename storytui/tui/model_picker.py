"""Choose a model: the checkpoints in the data dir and the bundled default."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Label, OptionList
from textual.widgets.option_list import Option


def describe_entry(entry, current: Path | None) -> str:
    """One line per checkpoint: name, preset, stage, validation bits per byte."""
    marker = "●" if current is not None and Path(entry.path) == current else " "
    name = entry.name + (" (bundled)" if entry.bundled else "")
    if entry.meta is None:
        return f"{marker} {name:<24} unusable: {entry.error}"
    meta = entry.meta
    bpb = f"{meta.val_bpb:.3f} bpb" if meta.val_bpb is not None else "bpb n/a"
    return f"{marker} {name:<24} {meta.preset:<7} {meta.stage:<9} {bpb}"


class ModelPicker(ModalScreen["Path | None"]):
    """Lists ``storytui.checkpoint.ModelEntry`` rows; dismisses with the chosen directory."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, entries: list, current: Path | None, hint: str) -> None:
        super().__init__()
        self.entries = entries
        self.current = current
        self.hint = hint

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog models"):
            yield Label("Models", classes="dialog-title")
            if self.entries:
                yield OptionList(
                    *(
                        Option(
                            describe_entry(entry, self.current),
                            id=str(index),
                            disabled=entry.meta is None,
                        )
                        for index, entry in enumerate(self.entries)
                    ),
                    id="models",
                )
                yield Label(
                    "Enter loads the model in the background; Esc cancels.", classes="dialog-hint"
                )
            else:
                yield Label(self.hint, classes="dialog-hint")

    def on_mount(self) -> None:
        """Start on the model in use, so Enter keeps it and arrows move from it."""
        for index, entry in enumerate(self.entries):
            if self.current is not None and Path(entry.path) == self.current:
                self.query_one("#models", OptionList).highlighted = index

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(Path(self.entries[int(event.option.id or 0)].path))

    def action_cancel(self) -> None:
        self.dismiss(None)
