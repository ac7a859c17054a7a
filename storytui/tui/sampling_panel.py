"""The side panel: the prompt and memory the model sees, and the sampling settings.

Sampling fields are checked as they are typed (``SamplingSettings.violations``); a refused value
stays in its field, marked, with the reason under it, and the value in use before that field's
edit began keeps being used (typing 100001 leaves neither 10000 nor 100001 in use). The fields appear once the model stack has been imported, since
``storytui.sampling`` needs torch.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from textual import events, on
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.css.query import NoMatches
from textual.message import Message
from textual.widgets import Input, Label, Select, TextArea

from storytui.errors import StoryError


@dataclass(frozen=True)
class Field:
    attr: str  # SamplingSettings attribute
    label: str
    kind: type  # int or float
    hint: str


FIELDS: tuple[Field, ...] = (
    Field("temperature", "Temperature", float, "0 = greedy"),
    Field("top_k", "Top-k", int, "0 = off"),
    Field("top_p", "Top-p", float, "1 = off"),
    Field("min_p", "Min-p", float, "0 = off"),
    Field("repetition_penalty", "Repetition penalty", float, "1 = off"),
    Field("dry_multiplier", "DRY multiplier", float, "0 = off"),
    Field("max_new_tokens", "Max new tokens", int, "per go"),
)
CUSTOM = "custom"


class PresetSelect(Select):
    """A ``Select`` that survives its own mount race.

    ``Select`` shows its first value from its Mount handler, but the label inside it is
    composed by a child that may not have run yet on a busy machine; the query then fails and
    would take the app down. The update is retried after the next refresh instead.
    """

    def _watch_value(self, value) -> None:
        try:
            super()._watch_value(value)
        except NoMatches:
            self.call_after_refresh(self._show_if_current, value)

    def _show_if_current(self, value) -> None:
        if value == self.value:  # a newer value shows itself
            self._watch_value(value)


def format_value(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def parse_field(field: Field, raw: str) -> float | int:
    """The typed value as the field's type, or a StoryError saying what is wrong."""
    try:
        return field.kind(raw.strip())
    except ValueError:
        kind = "a whole number" if field.kind is int else "a number"
        raise StoryError(f"{field.label.lower()} must be {kind}, not {raw.strip()!r}") from None


def _field(attr: str) -> Field:
    return next(f for f in FIELDS if f.attr == attr)


def _label(attr: str) -> str:
    return "seed" if attr == "seed" else _field(attr).label.lower()


def _shown(value: float | int | None) -> str:
    return "a random seed" if value is None else format_value(value)


def parse_seed(raw: str) -> int | None:
    raw = raw.strip()
    if not raw or raw.lower() == "random":
        return None
    try:
        return int(raw)
    except ValueError:
        raise StoryError(f"seed must be a whole number or empty for random, not {raw!r}") from None


class SidePanel(VerticalScroll, can_focus=False):
    """Prompt, memory and sampling; posts ``StoryFieldsChanged`` and ``SamplingChanged``.

    Not focusable itself: tab goes from the story straight to the first field, and a focused
    field scrolls into view."""

    class StoryFieldsChanged(Message):
        def __init__(self, prompt: str, memory: str) -> None:
            super().__init__()
            self.prompt = prompt
            self.memory = memory

    class SamplingChanged(Message):
        def __init__(self, settings, preset: str) -> None:
            super().__init__()
            self.settings = settings
            self.preset = preset

    def __init__(self, prompt: str = "", memory: str = "", **kwargs) -> None:
        super().__init__(**kwargs)
        self._prompt = prompt
        self._memory = memory
        self.settings = None  # storytui.sampling.SamplingSettings once shown
        self.presets: dict = {}
        self._before_edit: dict[str, float | int | None] = {}  # field -> value when edit began

    def compose(self) -> ComposeResult:
        yield Label("Prompt", classes="panel-heading")
        yield Input(
            self._prompt,
            placeholder="a premise: The moon is late",
            id="prompt",
            compact=True,
            select_on_focus=False,  # shift+tab back into it must not put the premise at risk
        )
        yield Label("Memory / author's note", classes="panel-heading")
        yield TextArea(
            self._memory,
            id="memory",
            soft_wrap=True,
            tab_behavior="focus",
            highlight_cursor_line=False,
            compact=True,
        )
        yield Label("Sampling", classes="panel-heading")
        yield Label("loading…", id="sampling-loading", classes="field-hint")

    # ------------------------------------------------------------------ prompt and memory

    def set_story_fields(self, prompt: str, memory: str) -> None:
        with self.prevent(Input.Changed, TextArea.Changed):
            self.query_one("#prompt", Input).value = prompt
            self.query_one("#memory", TextArea).load_text(memory)

    @property
    def prompt(self) -> str:
        return self.query_one("#prompt", Input).value

    @property
    def memory(self) -> str:
        return self.query_one("#memory", TextArea).text

    @on(Input.Changed, "#prompt")
    @on(TextArea.Changed, "#memory")
    def _story_fields_changed(self, event: Message) -> None:
        event.stop()
        self.post_message(self.StoryFieldsChanged(self.prompt, self.memory))

    # ------------------------------------------------------------------ sampling

    def show_sampling(self, settings, preset: str, presets: dict) -> None:
        """Mount the sampling fields for ``settings`` (a validated SamplingSettings)."""
        self.settings = settings
        self.presets = presets
        self.query_one("#sampling-loading").remove()
        options = [(name, name) for name in presets] + [(CUSTOM, CUSTOM)]
        widgets = [
            Label("Preset", classes="field-label"),
            PresetSelect(
                options,
                value=preset if preset in presets else CUSTOM,
                allow_blank=False,
                id="preset",
                compact=True,
            ),
        ]
        for field in FIELDS:
            widgets += [
                Label(f"{field.label} ({field.hint})", classes="field-label"),
                Input(
                    format_value(getattr(settings, field.attr)),
                    id=f"field-{field.attr}",
                    compact=True,
                ),
                Label("", id=f"error-{field.attr}", classes="field-error -empty"),
            ]
        seed = "" if settings.seed is None else str(settings.seed)
        widgets += [
            Label("Seed (empty = random each time)", classes="field-label"),
            Input(seed, placeholder="random", id="field-seed", compact=True),
            Label("", id="error-seed", classes="field-error -empty"),
            Label("", id="last-seed", classes="field-hint"),
        ]
        self.mount_all(widgets)

    def show_last_seed(self, seed: int) -> None:
        if self.settings is not None:
            self.query_one("#last-seed", Label).update(f"last continuation used seed {seed}")

    @on(Select.Changed, "#preset")
    def _preset_chosen(self, event: Select.Changed) -> None:
        event.stop()
        name = str(event.value)
        if name not in self.presets or self.settings is None:
            return
        settings = self.presets[name].with_changes(seed=self.settings.seed)
        with self.prevent(Input.Changed):
            for field in FIELDS:
                self.query_one(f"#field-{field.attr}", Input).value = format_value(
                    getattr(settings, field.attr)
                )
                self._show_error(field.attr, "")
        self._before_edit.clear()
        self.settings = settings
        self.post_message(self.SamplingChanged(settings, name))

    @on(Input.Changed)
    def _field_changed(self, event: Input.Changed) -> None:
        input_id = event.input.id or ""
        if not input_id.startswith("field-") or self.settings is None:
            return
        event.stop()
        attr = input_id.removeprefix("field-")
        # the value in use when this edit began: what a refused value falls back to, so that
        # typing 100001 does not leave the 10000 typed on the way in use
        before = self._before_edit.setdefault(attr, getattr(self.settings, attr))
        try:
            if attr == "seed":
                value = parse_seed(event.value)
            else:
                value = parse_field(_field(attr), event.value)
            settings = replace(self.settings, **{attr: value})
            rules = [rule for broken, rule in settings.violations() if broken == attr]
            if rules:
                raise StoryError(f"{_label(attr)} must be {rules[0]}")
        except StoryError as exc:
            self._show_error(attr, f"{exc}; still using {_shown(before)}")
            self._use(replace(self.settings, **{attr: before}))
            return
        self._show_error(attr, "")
        self._use(settings.validate())

    def on_descendant_blur(self, event: events.DescendantBlur) -> None:
        """Leaving a field ends its edit: the next edit falls back to what is in use then."""
        widget_id = event.widget.id or ""
        if widget_id.startswith("field-"):
            self._before_edit.pop(widget_id.removeprefix("field-"), None)

    def _use(self, settings) -> None:
        if settings == self.settings:
            return
        self.settings = settings
        preset = self._matching_preset(settings)
        with self.prevent(Select.Changed):
            self.query_one("#preset", Select).value = preset
        self.post_message(self.SamplingChanged(settings, preset))

    def _matching_preset(self, settings) -> str:
        for name, preset in self.presets.items():
            if preset.with_changes(seed=settings.seed) == settings:
                return name
        return CUSTOM

    def _show_error(self, attr: str, message: str) -> None:
        error = self.query_one(f"#error-{attr}", Label)
        error.update(message)
        error.set_class(not message, "-empty")
        self.query_one(f"#field-{attr}", Input).set_class(bool(message), "-invalid")
        if message:  # under the last field it would be below the fold
            self.call_after_refresh(self.scroll_to_widget, error, animate=False)
