"""Story files in the app: save, save as, reopen, quitting, autosave, recovery, corrupt files.

Driven through Textual's pilot with a tiny random model.
"""

from __future__ import annotations

import json

import pytest

from storytui import paths
from storytui.errors import StoryError
from storytui.tui.dialogs import AskChoice, AskPath
from tests.tui_pilot import (
    SIZE,
    new_app,
    run,
    wait_for,
)


def test_save_and_reopen_keeps_text_prompt_and_memory(tiny_checkpoint, tmp_path):
    story = tmp_path / "story.txt"

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"Chapter one", "f2", *"A premise", "f2")
            assert app.modified and "story.txt · new, not saved yet" in app.status_text()
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


def test_saving_keeps_the_files_byte_order_mark_and_line_breaks(tiny_checkpoint, tmp_path):
    """The editor works on plain \\n text; the file keeps its own convention, a link stays a
    link."""
    story = tmp_path / "story.txt"
    story.write_bytes(b"\xef\xbb\xbfLine one.\r\nLine two.")
    link = tmp_path / "link.txt"
    link.symlink_to(story.name)

    async def scenario():
        app = new_app(link)
        async with app.run_test(size=SIZE) as pilot:
            assert app.editor.text == "Line one.\nLine two."
            app.editor.move_cursor(app.editor.document.end)
            await pilot.press("enter", *"Three.", "ctrl+s")
            await pilot.pause()
            assert not app.modified

    run(scenario())
    assert link.is_symlink()
    assert story.read_bytes() == b"\xef\xbb\xbfLine one.\r\nLine two.\r\nThree."


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
        app = fast_autosave_app()
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


def fast_autosave_app():
    from storytui.tui.app import StoryApp

    return StoryApp(None, autosave_seconds=0.2, cursor_blink=False)


def test_a_corrupt_autosave_is_kept_aside_and_reported(tiny_checkpoint):
    draft = paths.autosave_path()
    draft.parent.mkdir(parents=True)
    corrupt = b"caf\xe9 au lait \xff"
    draft.write_bytes(corrupt)

    async def scenario():
        app = fast_autosave_app()
        async with app.run_test(size=SIZE) as pilot:
            notice = str(app.query_one("#notice").render())
            assert "could not be read" in notice and "not UTF-8" in notice
            kept = list(draft.parent.glob("autosave.txt.corrupt-*"))
            assert len(kept) == 1 and kept[0].read_bytes() == corrupt
            assert app.editor.text == ""
            await pilot.press(*"fresh")
            await wait_for(
                pilot, lambda: draft.exists() and draft.read_text() == "fresh", timeout=10
            )
            assert kept[0].read_bytes() == corrupt

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


def test_open_asks_about_changes_then_switches_and_an_empty_name_opens_the_draft(
    storytui_home, tmp_path
):
    first, second = tmp_path / "first.txt", tmp_path / "second.txt"
    first.write_text("First")
    second.write_text("Second")

    async def scenario():
        app = new_app(first)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*" edited", "ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, AskPath))
            app.screen.query_one("#path").value = str(second)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            await pilot.press("d")
            await wait_for(pilot, lambda: app.path == second)
            assert app.editor.text == "Second" and first.read_text() == "First"
            await pilot.press("ctrl+o")
            await wait_for(pilot, lambda: isinstance(app.screen, AskPath))
            await pilot.press("enter")  # empty: the draft
            await wait_for(pilot, lambda: app.path is None)
            assert app.editor.text == "" and app.settings.last_file is None

    run(scenario())


def test_new_story_asks_before_replacing_a_draft(storytui_home):
    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"an old draft", "ctrl+n")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            await pilot.press("escape")
            await pilot.pause()
            assert app.editor.text == "an old draft"
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            await pilot.press("d")
            await wait_for(pilot, lambda: app.editor.text == "")
            assert not paths.autosave_path().exists()

    run(scenario())
