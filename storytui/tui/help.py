"""The help screen: every key, built from the same table as the bindings."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from storytui.tui.commands import COMMANDS, EDITOR_KEYS, display_key

ABOUT = (
    "Write in the editor; F5 lets the model continue from the cursor. Generated text stays "
    "highlighted until you edit it or keep it (ctrl+t). Retry, or cycle through alternatives "
    "with F3/F4. Prompt and memory (F2) are shown to the model before the story and saved in "
    "FILE.storytui.json next to the story."
)


class HelpScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,f1,q,question_mark", "close", "Close"),
    ]

    def compose(self) -> ComposeResult:
        with VerticalScroll(classes="dialog help"):
            yield Label("storytui keys", classes="dialog-title")
            yield Label(ABOUT, classes="dialog-hint")
            yield DataTable(id="keys", cursor_type="none", zebra_stripes=True)

    def on_mount(self) -> None:
        table = self.query_one("#keys", DataTable)
        table.add_columns("Key", "Action")
        for command in COMMANDS:
            table.add_row(display_key(command.keys), command.help)
        for keys, description in EDITOR_KEYS:
            table.add_row(keys, description)

    def action_close(self) -> None:
        self.dismiss(None)
