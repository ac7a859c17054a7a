"""The sampling panel, the model picker, the no-model state, keys, palette and help.

Driven through Textual's pilot with a tiny random model.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path

from storytui import paths
from storytui.checkpoint import NO_MODEL_HINT
from storytui.sampling import SamplingSettings
from storytui.tui.app import LOADING, NO_MODEL, READY
from storytui.tui.commands import COMMANDS, EDITOR_KEYS, FIND_BAR_COMMANDS
from storytui.tui.editor import StoryEditor
from storytui.tui.help import HelpScreen, keys_table
from storytui.tui.model_picker import ModelPicker
from tests.conftest import make_tiny_checkpoint
from tests.tui_pilot import (
    OPENING,
    SIZE,
    burst,
    continue_story,
    expected_continuation,
    new_app,
    run,
    screen_lines,
    text_in,
    use_sampling,
    wait_for,
    wait_ready,
)


def test_sampling_changes_apply_to_the_next_continuation_and_persist(tiny_checkpoint):
    use_sampling(seed=9, max_new_tokens=8)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING, "f2")
            field = app.query_one("#field-temperature")
            field.focus()
            field.value = ""
            await pilot.press("-", "1")
            await pilot.pause()
            error = str(app.query_one("#error-temperature").render())
            assert (
                error == "temperature must be 0 (greedy) or between 0.001 and 100; still using 0.8"
            )
            assert field.has_class("-invalid")
            assert app.query_one("#error-temperature").display
            assert app.sampling.temperature == 0.8  # the refused value is not used
            await pilot.press("backspace", "backspace", "0")
            await pilot.pause()
            assert app.sampling.temperature == 0.0 and not field.has_class("-invalid")
            assert not app.query_one("#error-temperature").display
            top_k = app.query_one("#field-top_k")
            top_k.focus()
            top_k.value = ""
            await pilot.press(*"abc")
            await pilot.pause()
            assert "whole number" in str(app.query_one("#error-top_k").render())
            app.editor.focus()
            await continue_story(app, pilot)
            greedy = SamplingSettings(seed=9, max_new_tokens=8, temperature=0.0)
            assert app.editor.text == OPENING + expected_continuation(OPENING, greedy)
        saved = json.loads(paths.settings_path().read_text())
        assert saved["sampling"]["temperature"] == 0.0 and saved["preset"] == "custom"

        again = new_app()
        async with again.run_test(size=SIZE) as pilot:
            await wait_ready(again, pilot)
            assert again.sampling.temperature == 0.0 and again.sampling.seed == 9
            await pilot.press("f2")
            assert again.query_one("#field-temperature").value == "0"

    run(scenario())


def test_a_refused_value_leaves_the_value_from_before_the_edit_in_use(tiny_checkpoint):
    use_sampling(max_new_tokens=256, top_k=40)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press("f2")
            field = app.query_one("#field-max_new_tokens")
            field.focus()
            field.value = ""
            await pilot.press(*"100001")  # 10000 on the way is allowed, 100001 is not
            await pilot.pause()
            assert app.sampling.max_new_tokens == 256
            assert "still using 256" in str(app.query_one("#error-max_new_tokens").render())
            top_k = app.query_one("#field-top_k")
            top_k.focus()
            top_k.value = ""
            await pilot.press(*"2.5")
            await pilot.pause()
            assert app.sampling.top_k == 40 and app.sampling.max_new_tokens == 256
            await pilot.press("backspace", "backspace")  # "2": allowed, used
            await pilot.pause()
            assert app.sampling.top_k == 2
        saved = json.loads(paths.settings_path().read_text())
        assert saved["sampling"]["max_new_tokens"] == 256 and saved["sampling"]["top_k"] == 2

    run(scenario())


async def retype_field(app, pilot, attr: str, *keys: str):
    """Open the panel, type ``keys`` into an emptied field, and return its error label."""
    await wait_ready(app, pilot)
    await pilot.press("f2")
    field = app.query_one(f"#field-{attr}")
    field.focus()
    field.value = ""
    await pilot.press(*keys)
    await pilot.pause()
    await pilot.pause()
    return app.query_one(f"#error-{attr}")


def test_a_long_validation_message_wraps_inside_the_panel(tiny_checkpoint):
    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            error = await retype_field(app, pilot, "top_k", "-", "3")
            message = str(error.render())
            assert message == "top-k must be >= 0; 0 turns it off; still using 0"
            assert len(message) > app.panel.content_region.width  # it has to wrap to fit
            assert text_in(app, error) == message

    run(scenario())


def test_every_panel_label_is_shown_whole_in_a_narrow_terminal(tiny_checkpoint):
    """At 50 columns the panel is 24 wide: labels wrap instead of losing their hints."""

    async def scenario():
        app = new_app()
        async with app.run_test(size=(50, 45)) as pilot:
            await wait_ready(app, pilot)
            await pilot.press("f2")
            await pilot.pause()
            labels = list(app.query("#panel .field-label")) + list(
                app.query("#panel .panel-heading")
            )
            assert len(labels) >= 9
            for label in labels:
                text = str(label.render())
                assert label.region.right <= app.panel.content_region.right, text
                assert " ".join(text_in(app, label).split()) == " ".join(text.split()), text

    run(scenario())


def test_an_error_under_the_last_field_is_scrolled_into_view(tiny_checkpoint):
    async def scenario():
        app = new_app()
        async with app.run_test(size=(100, 24)) as pilot:
            error = await retype_field(app, pilot, "seed", "-", "5", "enter")
            assert "seed" in str(error.render())
            visible = app.panel.content_region
            assert visible.y <= error.region.y and error.region.bottom <= visible.bottom
            assert text_in(app, error) == " ".join(str(error.render()).split())

    run(scenario())


def test_the_status_bar_and_the_footer_show_whole_hints_at_every_width(tiny_checkpoint, tmp_path):
    """Too narrow for every hint, the status bar and the footer leave out whole ones, the
    least important first (the speed, then the counts; the file and keys like Save, Model),
    instead of cutting one mid-word ("alt" for "alt 2/2"); the palette key ends the footer."""
    import dataclasses

    from textual.widgets import Footer

    from storytui.tui.footer import PALETTE_KEY

    use_sampling(seed=3, max_new_tokens=24)
    story = tmp_path / "the-lighthouse-keeper.txt"
    story.write_text("The lighthouse keeper had not seen a ship in eleven years.")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=(160, 30)) as pilot:
            await wait_ready(app, pilot)
            await continue_story(app, pilot)
            await continue_story(app, pilot, key="ctrl+r")
            app.last_stats = dataclasses.replace(
                app.last_stats, new_tokens=25, decode_seconds=1.0, first_token_seconds=0.004
            )
            app._refresh_status()
            full = app.status_text().split(" │ ")
            assert len(app.status_text()) + 2 > 120  # wider than a 120-column status bar
            for width in (160, 120, 100, 80, 120):
                await pilot.resize_terminal(width, 30)
                await pilot.pause()
                await pilot.pause()
                rows = screen_lines(app)
                status = rows[app.query_one("#status").region.y].strip().split(" │ ")
                assert status == [part for part in full if part in status], width  # whole
                assert status[:2] == full[:2] and status[-1] == "alt 2/2", width
                assert (status == full) == (width == 160), width
                keys, palette = rows[-1].split("▏")
                assert palette.strip() == "^p palette", width
                shown = [
                    key.render().plain.strip()
                    for key in app.query_one(Footer).query_children()
                    if key.display and not key.has_class(PALETTE_KEY)
                ]
                assert keys.split() == " ".join(shown).split(), width  # every hint whole
                for hint in ("F5 Continue", "^r Retry", "F3 Prev alt", "F4 Next alt", "^t Keep"):
                    assert hint in shown, (width, hint)
                assert ("^l Model" in shown) == (width == 160), width

    run(scenario())


def test_escape_takes_the_focus_from_the_panel_back_to_the_story(tiny_checkpoint):
    """Esc in any field of the F2 panel goes back to the story (the panel stays open, the
    next keys are typed into the story); an open preset list closes first, as its own Esc."""
    from textual.widgets._select import SelectOverlay

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING, "f2")
            assert app.focused.id == "prompt"
            for field in ("#prompt", "#memory", "#field-temperature", "#preset"):
                app.query_one(field).focus()
                await pilot.pause()
                await pilot.press("escape")
                assert app.focused is app.editor, field
                assert app.panel.has_class("-visible")
            await pilot.press("!")
            assert app.editor.text == OPENING + "!"
            app.query_one("#preset").focus()
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.focused, SelectOverlay), what="list")
            await pilot.press("escape")
            await pilot.pause()
            assert app.focused is app.query_one("#preset") and not app.query_one("#preset").expanded
            await pilot.press("escape")
            assert app.focused is app.editor
            assert not app._notifications  # Esc with nothing to stop says nothing

    run(scenario())


def test_presets_fill_the_fields(tiny_checkpoint):
    from storytui.sampling import PRESET_SETTINGS

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press("f2")
            app.query_one("#preset").value = "creative"
            await pilot.pause()
            assert app.sampling == PRESET_SETTINGS["creative"]
            assert app.query_one("#field-dry_multiplier").value == "0.8"
            assert app.settings.preset == "creative"

    run(scenario())


def test_without_a_model_the_app_opens_for_writing(storytui_home):
    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            assert app.model_state == NO_MODEL
            assert str(app.query_one("#notice").render()) == NO_MODEL_HINT
            assert f"│ {NO_MODEL} │" in app.status_text()
            await pilot.press(*"still writing", "f5")
            assert app.job is None and app.editor.text == "still writing"

    run(scenario())


def test_model_picker_switches_models_in_the_background(tiny_checkpoint, storytui_home):
    make_tiny_checkpoint(
        storytui_home / "models" / "other", seed=1, created="2000-01-01T00:00:00+00:00"
    )

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            first = app.generator.checkpoint_name
            await pilot.press("ctrl+l")
            await wait_for(pilot, lambda: isinstance(app.screen, ModelPicker))
            names = [entry.name for entry in app.screen.entries]
            assert names == ["other", "tiny-test"]
            await pilot.pause()
            assert app.screen.query_one("#models").highlighted == names.index(first)  # in use
            target = "other" if first == "tiny-test" else "tiny-test"
            app.screen.query_one("#models").highlighted = names.index(target)
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.generator.checkpoint_name == target, what="switch")
            assert app.model_state == READY and app.settings.model == target
            await pilot.press("ctrl+l")  # the one in use again: said, not silently nothing
            await wait_for(pilot, lambda: isinstance(app.screen, ModelPicker))
            await pilot.pause()
            await pilot.press("enter")
            await wait_for(pilot, lambda: not isinstance(app.screen, ModelPicker))
            shown = [n.message for n in app._notifications]
            assert f"{target} is the model in use already" in shown
            assert app.model_state == READY and app.generator.checkpoint_name == target

    run(scenario())


def _hold_loads_of(name: str, monkeypatch) -> threading.Event:
    """Loading checkpoint ``name`` waits until the returned event is set (a slow disk)."""
    from storytui import checkpoint

    release = threading.Event()
    real = checkpoint.load_checkpoint

    def held(directory, *args, **kwargs):
        if Path(directory).name == name:
            release.wait(timeout=60)
        return real(directory, *args, **kwargs)

    monkeypatch.setattr(checkpoint, "load_checkpoint", held)
    return release


async def _pick(app, pilot, name: str) -> None:
    await pilot.press("ctrl+l")
    await wait_for(pilot, lambda: isinstance(app.screen, ModelPicker))
    await pilot.pause()
    names = [entry.name for entry in app.screen.entries]
    app.screen.query_one("#models").highlighted = names.index(name)
    await pilot.press("enter")
    await wait_for(pilot, lambda: not isinstance(app.screen, ModelPicker))


def test_the_model_picked_last_wins_however_long_the_others_take(
    tiny_checkpoint, storytui_home, monkeypatch
):
    """Picking again while a model loads: the later choice is the one used, even when the
    earlier, slower load finishes after it; picking the model in use again keeps it."""
    models = storytui_home / "models"
    make_tiny_checkpoint(models / "slow", seed=1, created="2000-01-01T00:00:00+00:00")
    make_tiny_checkpoint(models / "quick", seed=2, created="2000-01-02T00:00:00+00:00")
    release = _hold_loads_of("slow", monkeypatch)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            assert app.generator.checkpoint_name == "tiny-test"
            await _pick(app, pilot, "slow")  # held until released
            assert app.model_state == LOADING
            await _pick(app, pilot, "quick")
            await wait_for(pilot, lambda: app.generator.checkpoint_name == "quick", what="quick")
            release.set()  # the slow load ends after the quick one: its model is not used
            await wait_for(pilot, lambda: not app.workers, what="the slow load")
            await pilot.pause()
            assert app.generator.checkpoint_name == "quick" and app.model_state == READY
            assert app.settings.model == "quick"

            release.clear()
            await _pick(app, pilot, "slow")
            assert app.model_state == LOADING
            await _pick(app, pilot, "quick")  # the one in use: keep it, drop the other load
            assert app.model_state == READY and app.settings.model == "quick"
            assert "keeping quick" in [n.message for n in app._notifications]
            release.set()
            await wait_for(pilot, lambda: not app.workers, what="the slow load")
            await pilot.pause()
            assert app.generator.checkpoint_name == "quick" and app.model_state == READY

    run(scenario())


def test_every_action_has_a_key_a_palette_entry_and_help(tiny_checkpoint):
    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            titles = {command.title for command in app.get_system_commands(app.screen)}
            assert {command.label for command in COMMANDS} <= titles
            bound = {b.action for keyed in app._bindings.key_to_bindings.values() for b in keyed}
            assert {command.action for command in COMMANDS} <= bound
            await pilot.press("f1")
            assert isinstance(app.screen, HelpScreen)
            table = keys_table()
            assert table.row_count == len(COMMANDS) + len(FIND_BAR_COMMANDS) + len(EDITOR_KEYS)
            keys = [str(cell) for cell in table.columns[0]._cells]
            assert "F5 / ctrl+g" in keys and "ctrl+z" in keys
            editor = app.query_one(StoryEditor)
            editor_bound = set(editor._bindings.key_to_bindings)
            for shown, _ in EDITOR_KEYS:  # each key the help lists really is bound
                for key in shown.lower().split(" / "):
                    if key not in ("shift+arrows", "tab", "shift+tab", "ctrl+p"):
                        assert key in editor_bound, key
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)
            await pilot.press(*"one", "enter", *"two", "ctrl+home")
            assert app.editor.cursor_location == (0, 0)
            await pilot.press("ctrl+end")
            assert app.editor.cursor_location == app.editor.document.end == (1, 3)

    run(scenario())


def test_preset_select_survives_its_label_not_being_composed_yet(monkeypatch):
    """Textual's Select sets its first value while mounting; on a busy machine the label it
    writes to may not exist yet. The app must not crash: the value shows once it does."""
    from textual.app import App
    from textual.css.query import NoMatches
    from textual.widgets import Select
    from textual.widgets._select import SelectCurrent

    from storytui.tui.sampling_panel import PresetSelect

    class OneSelect(App):
        def __init__(self) -> None:
            super().__init__()
            self.changes: list = []

        def compose(self):
            yield PresetSelect([("a", "a"), ("b", "b")], value="a", allow_blank=False)

        def on_select_changed(self, event: Select.Changed) -> None:
            self.changes.append(event.value)

    real_update = SelectCurrent.update
    failures = []

    def update_before_compose(self, label):
        if not failures:  # the first update finds no label, as in the race
            failures.append(label)
            raise NoMatches("No nodes match '#label'")
        real_update(self, label)

    async def scenario():
        app = OneSelect()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.pause()
            monkeypatch.setattr(SelectCurrent, "update", update_before_compose)
            app.query_one(PresetSelect).value = "b"
            await pilot.pause()
            await pilot.pause()
            assert failures == ["b"]
            assert app.query_one(SelectCurrent).label == "b"
            assert app.changes[-1] == "b"
            # a newer value set before the retry wins: the retry must not bring back the old one
            failures.clear()
            select = app.query_one(PresetSelect)
            select.value = "a"  # fails, retry pending
            select.value = "b"  # shows at once
            await pilot.pause()
            await pilot.pause()
            assert failures == ["a"]
            assert select.value == "b" and app.query_one(SelectCurrent).label == "b"
            assert app.changes[-1] == "b"

    run(scenario())


def test_tab_goes_from_the_story_to_the_first_field_and_back(tiny_checkpoint):
    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press("f2")
            app.editor.focus()
            await pilot.press("tab")
            assert app.focused is app.query_one("#prompt")
            await pilot.press("tab")
            assert app.focused is app.query_one("#memory")
            await pilot.press("shift+tab", "shift+tab")
            assert app.focused is app.editor

    run(scenario())


SAMPLING_FIELDS = ("temperature", "top_k", "top_p", "min_p", "repetition_penalty")


async def settle(pilot) -> None:
    for _ in range(10):
        await pilot.pause(0.02)


def field_values(app) -> dict[str, str]:
    return {attr: app.query_one(f"#field-{attr}").value for attr in SAMPLING_FIELDS}


def test_a_fields_own_keys_just_before_a_tab_stay_in_that_field(tiny_checkpoint):
    """Keys typed faster than the app handles them: ctrl+u and tab in one burst clear the
    field they were typed in and never reach the story (whose ctrl+u deletes a line)."""
    use_sampling(max_new_tokens=200)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            story_before = app.editor.text
            await pilot.press("f2")
            await settle(pilot)
            field = app.query_one("#field-max_new_tokens")
            field.focus()
            await settle(pilot)
            burst(app, [*"98"])
            await settle(pilot)
            burst(app, ["ctrl+u", "tab"])
            await settle(pilot)
            assert field.value == "" and app.focused is not field
            assert app.editor.text == story_before

    run(scenario())
