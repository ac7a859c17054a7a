"""The co-writing app driven through Textual's pilot with a tiny random model."""

from __future__ import annotations

import json
import threading

import pytest

from storytui import paths
from storytui.checkpoint import NO_MODEL_HINT
from storytui.errors import StoryError
from storytui.sampling import SamplingSettings
from storytui.tui.app import LOADING, NO_MODEL, READY
from storytui.tui.commands import COMMANDS
from storytui.tui.dialogs import AskChoice, TokenAlternatives
from storytui.tui.help import HelpScreen
from storytui.tui.model_picker import ModelPicker
from tests.conftest import make_tiny_checkpoint
from tests.tui_pilot import (
    SIZE,
    continue_story,
    expected_continuation,
    new_app,
    run,
    use_sampling,
    wait_for,
    wait_ready,
)

OPENING = "The lighthouse keeper"


def test_continue_streams_exactly_what_the_generator_writes(tiny_checkpoint):
    settings = use_sampling(seed=7, max_new_tokens=12)
    expected = expected_continuation(OPENING, settings)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING)
            await continue_story(app, pilot)
            assert app.editor.text == OPENING + expected
            continuation = app.continuations.live[-1]
            assert continuation.start == len(OPENING) and continuation.text == expected
            assert [m.kind for m in app.editor.marks] == ["generated"]
            assert app.editor.cursor_index == len(app.editor.text)
            assert "tok/s" in app.status_text() and "tiny-test" in app.status_text()
            assert app.last_stats.new_tokens == 12

    run(scenario())


def test_continue_from_the_middle_uses_only_the_text_before_the_cursor(tiny_checkpoint):
    settings = use_sampling(seed=3, max_new_tokens=6)
    expected = expected_continuation("Once", settings)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*"Once there", *["left"] * 6)
            await continue_story(app, pilot, key="ctrl+g")
            assert app.editor.text == "Once" + expected + " there"

    run(scenario())


def test_prompt_and_memory_reach_the_model(tiny_checkpoint):
    settings = use_sampling(seed=5, max_new_tokens=8)
    expected = expected_continuation(OPENING, settings, prompt="A ship", memory="Rain")

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING, "f2")
            assert app.focused.id == "prompt"
            await pilot.press(*"A ship", "tab", *"Rain", "f2")
            assert (app.prompt, app.memory) == ("A ship", "Rain")
            app.editor.move_cursor(app.editor.document.end)
            await continue_story(app, pilot)
            assert app.editor.text == OPENING + expected

    run(scenario())


def test_the_editor_works_while_the_model_loads(tiny_checkpoint, monkeypatch):
    import storytui.checkpoint

    release = threading.Event()
    real_load = storytui.checkpoint.load_checkpoint

    def slow_load(*args, **kwargs):
        release.wait(30)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(storytui.checkpoint, "load_checkpoint", slow_load)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"typing already")
            assert app.editor.text == "typing already"
            assert app.model_state == LOADING and app.status_text().startswith(LOADING)
            await pilot.press("f5")  # refused politely while loading
            assert app.job is None and app.editor.text == "typing already"
            release.set()
            await wait_ready(app, pilot)
            assert app.model_state == READY

    run(scenario())


def test_stop_keeps_every_token_once_and_in_order(tiny_checkpoint):
    settings = use_sampling(seed=11, max_new_tokens=5000)

    async def scenario():
        app = new_app()
        made_before_stop = []
        real_stop = app.action_stop

        def stop_and_count():
            job = app.job
            made_before_stop.append(len(job.variant.tokens) + len(job.pending))
            real_stop()

        app.action_stop = stop_and_count
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING, "f5")
            await wait_for(pilot, lambda: len(app.job.variant.tokens) >= 8, what="tokens")
            # the UI stays usable while the model writes
            await pilot.press("f2")
            assert app.panel.has_class("-visible") and app.job is not None
            await pilot.press("escape")  # reaches the app while the panel has focus
            await wait_for(pilot, lambda: app.job is None, what="stop")
            assert app.last_stats.stopped_by == "cancelled"
            variant = app.continuations.live[-1].variant
            generated = [t for t in variant.tokens if t.token != -1]
            assert len(generated) <= made_before_stop[0] + 1  # halts within one token
            assert "".join(t.text for t in variant.tokens) == variant.text
            assert app.editor.text == OPENING + variant.text
            same_length = settings.with_changes(max_new_tokens=len(generated))
            assert variant.text == expected_continuation(OPENING, same_length)
            assert app.editor.read_only is False

    run(scenario())


def test_retry_keeps_alternatives_and_cycles_through_them(tiny_checkpoint):
    use_sampling(max_new_tokens=10)  # seed None: every retry draws a new seed

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING)
            await continue_story(app, pilot)
            first = app.editor.text
            await continue_story(app, pilot, key="ctrl+r")
            second = app.editor.text
            continuation = app.continuations.live[-1]
            assert len(continuation.variants) == 2 and continuation.current == 1
            assert second != first and second.startswith(OPENING)
            assert continuation.variants[0].seed != continuation.variants[1].seed
            assert "alt 2/2" in app.status_text()
            await pilot.press("f3")
            assert app.editor.text == first
            await pilot.press("f4")
            assert app.editor.text == second
            await pilot.press("alt+left")
            assert app.editor.text == first
            # one undo step removes whichever alternative is shown
            await pilot.press("ctrl+z")
            assert app.editor.text == OPENING
            await pilot.press("ctrl+y")
            assert app.editor.text == first and app.continuations.live
            await pilot.press("ctrl+t")
            assert not app.continuations.live and app.editor.marks == []
            assert app.editor.text == first

    run(scenario())


def test_retry_with_a_fixed_seed_repeats_itself(tiny_checkpoint):
    use_sampling(seed=21, max_new_tokens=8)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING)
            await continue_story(app, pilot)
            first = app.editor.text
            await continue_story(app, pilot, key="ctrl+r")
            assert app.editor.text == first

    run(scenario())


def test_undo_removes_a_whole_continuation_and_typing_undo_still_works(tiny_checkpoint):
    use_sampling(seed=2, max_new_tokens=30)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*"Hello")
            await continue_story(app, pilot)
            continued = app.editor.text
            assert len(app.continuations.live[-1].variant.tokens) == 30
            await pilot.press("ctrl+z")
            assert app.editor.text == "Hello"
            assert not app.continuations.live and app.editor.marks == []
            await pilot.press("ctrl+y")
            assert app.editor.text == continued
            assert app.continuations.live and app.editor.marks
            # typing after a continuation is undone first, then the continuation
            await pilot.press(*" yes")
            await pilot.press("ctrl+z")
            assert app.editor.text == continued
            await pilot.press("ctrl+z")
            assert app.editor.text == "Hello"
            await pilot.press("ctrl+z")
            assert app.editor.text == ""

    run(scenario())


def test_editing_inside_a_continuation_unmarks_it(tiny_checkpoint):
    use_sampling(seed=4, max_new_tokens=10)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*"Hi ")
            await continue_story(app, pilot)
            await pilot.press("home")  # typing before it moves it along
            await pilot.press(*">> ")
            continuation = app.continuations.live[-1]
            assert continuation.start == len(">> Hi ")
            assert app.editor.text[continuation.start :] == continuation.text
            app.editor.move_cursor(app.editor.location_of(continuation.start + 2))
            await pilot.press("x")
            assert not app.continuations.live and app.editor.marks == []

    run(scenario())


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
            assert "invalid temperature" in error and field.has_class("-invalid")
            assert app.sampling.temperature == 0.8  # the refused value is not used
            await pilot.press("backspace", "backspace", "0")
            await pilot.pause()
            assert app.sampling.temperature == 0.0 and not field.has_class("-invalid")
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


def test_token_alternatives_replace_the_text_and_continue(tiny_checkpoint):
    settings = use_sampling(seed=13, max_new_tokens=10)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING)
            await continue_story(app, pilot)
            continuation = app.continuations.live[-1]
            original = continuation.variant
            token = next(t for t in original.tokens[2:] if t.text)
            index = original.tokens.index(token)
            app.editor.move_cursor(app.editor.location_of(continuation.start + token.start))
            await pilot.press("f9")
            await wait_for(pilot, lambda: isinstance(app.screen, TokenAlternatives))
            await pilot.press("down", "enter")
            await wait_for(pilot, lambda: app.job is None and len(continuation.variants) == 2)
            await pilot.pause()
            picked = token.alternatives[1]
            prefix = original.text[: token.start] + picked.text
            assert continuation.variant.text.startswith(prefix)
            assert continuation.variant.tokens[index].text == picked.text
            tail = expected_continuation(OPENING + prefix, settings)
            assert app.editor.text == OPENING + prefix + tail
            await pilot.press("f3")  # the original stays an alternative
            assert app.editor.text == OPENING + original.text

    run(scenario())


def test_probability_colours_follow_the_tokens(tiny_checkpoint):
    use_sampling(seed=1, max_new_tokens=6)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING)
            await continue_story(app, pilot)
            await pilot.press("f8")
            tokens = [t for t in app.continuations.live[-1].variant.tokens if t.text]
            assert len(app.editor.marks) == len(tokens)
            assert {m.kind for m in app.editor.marks} <= {
                "prob-high",
                "prob-mid",
                "prob-low",
                "prob-rare",
            }
            assert app.settings.show_probabilities
            assert json.loads(paths.settings_path().read_text())["show_probabilities"] is True

    run(scenario())


def test_save_and_reopen_keeps_text_prompt_and_memory(tiny_checkpoint, tmp_path):
    story = tmp_path / "story.txt"

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"Chapter one", "f2", *"A premise", "f2")
            assert app.modified and "story.txt · modified" in app.status_text()
            await pilot.press("ctrl+s")
            await pilot.pause()
            assert not app.modified and "story.txt · saved" in app.status_text()
        assert story.read_text() == "Chapter one"
        sidecar = json.loads((tmp_path / "story.txt.storytui.json").read_text())
        assert sidecar["prompt"] == "A premise" and sidecar["memory"] == ""

        again = new_app()  # plain `storytui`: the last story
        async with again.run_test(size=SIZE) as pilot:
            assert again.path == story.absolute()
            assert again.editor.text == "Chapter one" and again.prompt == "A premise"
            assert not again.modified

    run(scenario())


def test_save_as_names_the_draft(tiny_checkpoint, tmp_path):
    target = tmp_path / "named.txt"

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            assert app.path is None
            await pilot.press(*"draft words", "ctrl+s")  # an untitled story asks for a name
            await pilot.pause()
            app.screen.query_one("#path").value = str(target)
            await pilot.press("enter")
            await pilot.pause()
            assert app.path == target and target.read_text() == "draft words"
            assert not paths.autosave_path().exists()

    run(scenario())


def test_quitting_asks_before_dropping_changes(tiny_checkpoint, tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("Saved text")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*" more")
            await pilot.press("ctrl+q")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            await pilot.press("c")  # cancel: still running, nothing lost
            await pilot.pause()
            assert app.is_running and app.editor.text == "Saved text more"
            await pilot.press("ctrl+q")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            await pilot.press("d")
            await wait_for(pilot, lambda: not app.is_running)
        assert story.read_text() == "Saved text"
        assert not any(paths.recovery_dir().glob("*.txt"))

        saving = new_app(story)
        async with saving.run_test(size=SIZE) as pilot:
            await pilot.press(*" kept", "ctrl+q")
            await wait_for(pilot, lambda: isinstance(saving.screen, AskChoice))
            await pilot.press("s")
            await wait_for(pilot, lambda: not saving.is_running)
        assert story.read_text() == "Saved text kept"

    run(scenario())


def test_a_killed_session_is_recovered(tiny_checkpoint, tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("Before")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*" and after")
            app._autosave_tick()  # what the timer does every few seconds
            copies = list(paths.recovery_dir().glob("*.txt"))
            assert [c.read_text() for c in copies] == ["Before and after"]
            app._final_autosave = False  # a kill: no goodbye
        assert story.read_text() == "Before"

        again = new_app(story)
        async with again.run_test(size=SIZE) as pilot:
            assert again.editor.text == "Before and after" and again.modified
            assert any("restored unsaved changes" in n for n in again.notices)

    run(scenario())


def test_the_draft_is_autosaved_and_reopened(tiny_checkpoint):
    async def scenario():
        app = StoryApp_with_fast_autosave()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"draft text")
            draft = paths.autosave_path()
            await wait_for(pilot, lambda: draft.exists() and draft.read_text() == "draft text")
            assert "draft · autosaved" in app.status_text()
            await pilot.press("ctrl+q")  # the draft needs no question
            await wait_for(pilot, lambda: not app.is_running)
        again = new_app()
        async with again.run_test(size=SIZE) as pilot:
            assert again.editor.text == "draft text" and again.path is None

    run(scenario())


def StoryApp_with_fast_autosave():
    from storytui.tui.app import StoryApp

    return StoryApp(None, autosave_seconds=0.2, cursor_blink=False)


def test_a_corrupt_autosave_is_kept_aside_and_reported(tiny_checkpoint):
    draft = paths.autosave_path()
    draft.parent.mkdir(parents=True)
    corrupt = b"caf\xe9 au lait \xff"
    draft.write_bytes(corrupt)

    async def scenario():
        app = StoryApp_with_fast_autosave()
        async with app.run_test(size=SIZE) as pilot:
            notice = str(app.query_one("#notice").render())
            assert "could not be read" in notice and "not UTF-8" in notice
            kept = list(draft.parent.glob("autosave.txt.corrupt-*"))
            assert len(kept) == 1 and kept[0].read_bytes() == corrupt
            assert app.editor.text == ""
            await pilot.press(*"fresh")
            await wait_for(pilot, lambda: draft.exists() and draft.read_text() == "fresh", timeout=10)
            assert kept[0].read_bytes() == corrupt

    run(scenario())


def test_without_a_model_the_app_opens_for_writing(storytui_home):
    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            assert app.model_state == NO_MODEL
            assert str(app.query_one("#notice").render()) == NO_MODEL_HINT
            assert app.status_text().startswith(NO_MODEL)
            await pilot.press(*"still writing", "f5")
            assert app.job is None and app.editor.text == "still writing"

    run(scenario())


def test_an_unreadable_file_is_one_clear_error(tmp_path, capsys):
    from storytui.cli import main

    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x00\x01\x02")
    with pytest.raises(StoryError, match="binary"):
        new_app(binary)
    with pytest.raises(SystemExit) as exit_info:
        main([str(binary)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("storytui: error:") and "binary" in err and "\n" not in err


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
            target = "other" if first == "tiny-test" else "tiny-test"
            app.screen.query_one("#models").highlighted = names.index(target)
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.generator.checkpoint_name == target, what="switch")
            assert app.model_state == READY and app.settings.model == target

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
            rows = app.screen.query_one("#keys").row_count
            assert rows >= len(COMMANDS)
            await pilot.press("escape")
            assert not isinstance(app.screen, HelpScreen)

    run(scenario())
