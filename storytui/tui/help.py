"""The help screen: every key, built from the same table as the bindings."""

from __future__ import annotations

from typing import ClassVar

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

from storytui.tui.commands import COMMANDS, EDITOR_KEYS, FIND_BAR_COMMANDS, display_key

ABOUT = (
    "Write in the editor; F5 lets the model continue from the cursor. Generated text stays "
    "highlighted until you edit it or keep it (ctrl+t). Retry, or cycle through alternatives "
    "with F3/F4. ctrl+f finds in the story (ctrl+f again: replace). Prompt and memory (F2) "
    "are shown to the model before the story and saved in FILE.storytui.json next to the story."
)


def keys_table() -> Table:
    """Every key with what it does; the text column wraps instead of being cut."""
    table = Table(box=None, expand=True, show_edge=False, pad_edge=False)
    table.add_column("Key", no_wrap=True, style="bold")
    table.add_column("Action", ratio=1)
    for command in COMMANDS + FIND_BAR_COMMANDS:
        table.add_row(display_key(command.keys), command.help)
    for keys, description in EDITOR_KEYS:
        table.add_row(keys, description)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q,question_mark", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Label("storytui keys", classes="dialog-title")
            yield Label(ABOUT, classes="dialog-hint")
            yield Static(keys_table(), id="keys")
            yield Label("Esc closes.", classes="dialog-hint")

    def action_close(self) -> None:
        self.dismiss(None)
