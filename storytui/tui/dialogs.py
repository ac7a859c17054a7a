"""Small modal questions: save/discard/cancel, a file path, a token's alternatives."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.content import Content
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, OptionList
from textual.widgets.option_list import Option


class AskChoice(ModalScreen[str]):
    """A question with a few answers; dismisses with the chosen answer's id ("cancel" on Esc).

    The safe answer (``default``, Cancel unless told) has the focus, so Enter picks it: a
    destructive answer needs its own key or a click. Each answer's first letter is its key,
    e.g. ``s`` for Save and ``d`` for Discard.
    """

    DEFAULT_CSS = """
    AskChoice .dialog-detail {
        width: 100%;
        margin-bottom: 1;
    }
    """
    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "choose('cancel')", "Cancel")]

    def __init__(
        self,
        question: str,
        answers: tuple[tuple[str, str, str], ...],
        *,
        detail: str = "",
        default: str = "cancel",
    ) -> None:
        """``answers``: (id, label, button variant) triples; ``detail``: a line under the
        question."""
        super().__init__()
        self.question = question
        self.answers = answers
        self.detail = detail
        self.default = default
        self.AUTO_FOCUS = f"#{default}"  # the screen focuses it when it opens

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.question, classes="dialog-title")
            if self.detail:
                yield Label(self.detail, classes="dialog-detail")
            with Horizontal(classes="dialog-buttons"):
                for answer_id, label, variant in self.answers:
                    yield Button(label, id=answer_id, variant=variant)
            yield Label(self._keys_hint(), classes="dialog-hint")

    def _keys_hint(self) -> str:
        keys = [
            f"{label[0].lower()} {label.rstrip('…').lower()}"
            for answer_id, label, _variant in self.answers
            if answer_id != self.default
        ]
        default = next(label for answer_id, label, _ in self.answers if answer_id == self.default)
        return ", ".join(keys) + f"; Enter or Esc: {default.rstrip('…').lower()}"

    def on_key(self, event) -> None:
        for answer_id, label, _variant in self.answers:
            if event.key == label[0].lower():
                event.stop()
                self.dismiss(answer_id)
                return

    @on(Button.Pressed)
    def _pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id or "cancel")

    def action_choose(self, choice: str) -> None:
        self.dismiss(choice)


SAVE_DISCARD_CANCEL = (
    ("save", "Save", "primary"),
    ("discard", "Discard", "error"),
    ("cancel", "Cancel", "default"),
)
DISCARD_CANCEL = (("discard", "Discard", "error"), ("cancel", "Cancel", "default"))
OVERWRITE_CANCEL = (("overwrite", "Overwrite", "warning"), ("cancel", "Cancel", "default"))
OVERWRITE_SAVE_AS_CANCEL = (
    ("overwrite", "Overwrite", "warning"),
    ("save_as", "Save as…", "primary"),
    ("cancel", "Cancel", "default"),
)


class AskPath(ModalScreen["Path | None"]):
    """Ask for a file path; an empty answer means "the draft" where ``allow_empty``."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        title: str,
        value: str = "",
        hint: str = "",
        allow_empty: bool = False,
        check: Callable[[Path], str | None] | None = None,
    ) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.hint = hint
        self.allow_empty = allow_empty
        self.check = check  # why a path will not do (None: it will); the dialog stays open

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(self.title_text, classes="dialog-title")
            yield Input(self.value, placeholder="path/to/story.txt", id="path")
            yield Label(self.hint, classes="dialog-hint")

    @on(Input.Submitted)
    def _submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if not value and not self.allow_empty:
            self.query_one(".dialog-hint", Label).update("Type a file name, or Esc to cancel.")
            return
        path = Path(value).expanduser() if value else Path()
        if value and self.check is not None and (problem := self.check(path.absolute())):
            hint = self.query_one(".dialog-hint", Label)
            hint.update(Content(f"{problem}. Change the name, or Esc to cancel."))
            hint.add_class("-error")
            return  # the typed path stays, to be corrected
        self.dismiss(path)

    def action_cancel(self) -> None:
        self.dismiss(None)


class TokenAlternatives(ModalScreen["int | None"]):
    """The model's top choices at one position; dismisses with the chosen index."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, chosen_text: str, chosen_prob: float, alternatives: tuple) -> None:
        super().__init__()
        self.chosen_text = chosen_text
        self.chosen_prob = chosen_prob
        self.alternatives = alternatives

    def compose(self) -> ComposeResult:
        options = [
            Option(f"{_percent(alt.prob):>7}  {_visible(alt.text)}", id=str(index))
            for index, alt in enumerate(self.alternatives)
        ]
        with Vertical(classes="dialog"):
            yield Label(
                f"The model wrote {_visible(self.chosen_text)} ({_percent(self.chosen_prob)}). "
                "Pick another token to continue from it:",
                classes="dialog-title",
            )
            yield OptionList(*options, id="alternatives")
            yield Label("Enter picks, Esc cancels.", classes="dialog-hint")

    @on(OptionList.OptionSelected)
    def _selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(int(event.option.id or 0))

    def action_cancel(self) -> None:
        self.dismiss(None)


def whole_alternatives(alternatives: tuple) -> list[tuple[int, Any]]:
    """The alternatives (with their index) that are text on their own: a token that is part
    of a character (a byte of an emoji, say) would put U+FFFD into the story if picked."""
    return [(i, alt) for i, alt in enumerate(alternatives) if "\ufffd" not in alt.text]


def _percent(prob: float) -> str:
    """A probability as a percentage that stays readable when it is tiny."""
    return f"{prob:.1%}" if prob >= 0.001 else f"{prob * 100:.2g}%"


def _visible(text: str) -> str:
    """A token's text with its spaces and line breaks made visible, in quotes."""
    return "“" + text.replace("\n", "⏎").replace("\t", "⇥").replace("[", "\\[") + "”"
