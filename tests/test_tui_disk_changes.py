"""The open file changed by another program: reloaded when nothing unsaved is lost, else shown.

Driven through Textual's pilot; most tests call the watch tick themselves (``check_disk``) so
that they wait for nothing but the read it starts.
"""

from __future__ import annotations

from storytui import paths
from storytui.tui.app import StoryApp
from storytui.tui.dialogs import AskChoice
from storytui.tui.file_actions import UNKNOWN, cursor_after_reload
from storytui.tui.story_files import Story, write_story
from tests.tui_pilot import (
    SIZE,
    continue_story,
    new_app,
    open_and_continue,
    run,
    use_sampling,
    wait_for,
)


async def check_disk(app: StoryApp, pilot) -> None:
    """What the watch timer does every second, then wait for the read it may start."""
    app._watch_tick()
    await wait_for(pilot, lambda: not app._disk_reading, timeout=10, what="the disk check")
    await pilot.pause()


def notices_with(app: StoryApp, words: str) -> list[str]:
    return [notice for notice in app.notices if words in notice]


def test_a_clean_story_reloads_by_itself_when_its_file_changes(storytui_home, tmp_path):
    story = tmp_path / "story.txt"
    write_story(story, Story("One.\nTwo.\nThree.", prompt="Old premise"))

    async def scenario():
        app = StoryApp(story, watch_seconds=0.05, cursor_blink=False)  # the real timer, fast
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("backspace")  # an edit in the undo history, then undone by hand
            await pilot.press(".")
            app.editor.move_cursor((1, 2))  # in "Two."
            await wait_for(pilot, lambda: app._disk_stamp != UNKNOWN, what="the first check")
            write_story(story, Story("Zero.\nOne.\nTwo.\nThree.", prompt="New premise"))
            await wait_for(pilot, lambda: app.editor.text.startswith("Zero."), what="reload")
            assert app.prompt == "New premise" and app.panel.prompt == "New premise"
            assert app.editor.cursor_location == (2, 2)  # still in "Two."
            assert not app.modified and "story.txt · saved" in app.status_text()
            assert app.notices[-1] == "reloaded story.txt: it changed on disk"
            await pilot.press("ctrl+z")  # the history starts afresh: the old text stays gone
            assert app.editor.text == "Zero.\nOne.\nTwo.\nThree."

            story.write_text("Zero.")  # shorter than where the cursor was
            await wait_for(pilot, lambda: app.editor.text == "Zero.", what="second reload")
            assert app.editor.cursor_index <= len("Zero.") and not app.modified

    run(scenario())


def test_unsaved_edits_are_kept_when_the_file_changes_and_saving_asks_first(
    storytui_home, tmp_path
):
    story = tmp_path / "story.txt"
    story.write_text("Base.")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await check_disk(app, pilot)
            await pilot.press(*" mine")
            story.write_text("Base. theirs")
            await check_disk(app, pilot)
            assert app.editor.text == "Base. mine"
            assert "story.txt · modified · changed on disk" in app.status_text()
            [said] = notices_with(app, "changed on disk:")
            assert "saving asks before overwriting" in said
            story.write_text("Base. theirs, again")
            await check_disk(app, pilot)
            assert len(notices_with(app, "changed on disk:")) == 1  # said once
            assert not notices_with(app, "reloaded")

            app._autosave_tick()  # the edits stay safe in the recovery copy
            [copy] = paths.recovery_dir().glob("*.txt")
            assert copy.read_text() == "Base. mine"

            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            assert "story.txt changed on disk since you opened it" in app.screen.question
            await pilot.press("o")
            await wait_for(pilot, lambda: not app.modified)
            assert story.read_text() == "Base. mine"
            assert app.status_text().startswith("story.txt · saved │")

    run(scenario())


def test_a_deleted_file_shows_in_the_status_and_ctrl_s_writes_it_again(storytui_home, tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("Kept text.")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await check_disk(app, pilot)
            story.unlink()
            await check_disk(app, pilot)
            assert app.editor.text == "Kept text."
            assert "story.txt · modified · deleted on disk" in app.status_text()
            assert notices_with(app, "ctrl+s writes it again")
            assert app.modified  # nothing on disk holds it: quitting asks, autosave keeps it
            app._autosave_tick()
            assert [c.read_text() for c in paths.recovery_dir().glob("*.txt")] == ["Kept text."]

            await pilot.press("ctrl+s")  # no question: there is nothing to overwrite
            await wait_for(pilot, lambda: not app.modified)
            assert story.read_text() == "Kept text."
            assert app.status_text().startswith("story.txt · saved │")

            story.unlink()
            await check_disk(app, pilot)
            story.write_text("Back, but different.")  # it comes back: a change
            await check_disk(app, pilot)
            assert app.editor.text == "Kept text."  # the only copy of it is not dropped
            assert "story.txt · modified · changed on disk" in app.status_text()

    run(scenario())


def test_the_apps_own_saves_are_no_change_on_disk(storytui_home, tmp_path):
    story, other = tmp_path / "story.txt", tmp_path / "other.txt"
    story.write_text("Start.")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await check_disk(app, pilot)
            await pilot.press(*" More.", "ctrl+s")
            await wait_for(pilot, lambda: not app.modified)
            app._watch_tick()
            assert not app._disk_reading  # the stamp was taken on saving: nothing to read
            await pilot.press("f12")
            await wait_for(pilot, lambda: app.screen.query("#path"))
            app.screen.query_one("#path").value = str(other)
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.path == other)
            app._watch_tick()
            assert not app._disk_reading
            await check_disk(app, pilot)
            assert not notices_with(app, "on disk")
            assert app.status_text().startswith("other.txt · saved │")

    run(scenario())


def test_an_unreadable_file_is_not_reloaded_and_the_text_counts_as_unsaved(storytui_home, tmp_path):
    story = tmp_path / "story.txt"
    story.write_text("Words.")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await check_disk(app, pilot)
            story.write_bytes(b"\x00\x01\x02")
            await check_disk(app, pilot)
            story.write_bytes(b"\x00\x01\x02\x03")
            await check_disk(app, pilot)
            assert app.editor.text == "Words."
            # the text is now nowhere else: unsaved, so it is autosaved and quitting asks
            assert "story.txt · modified · unreadable on disk" in app.status_text()
            assert app.modified
            [said] = notices_with(app, "cannot be read")
            assert "binary" in said

            story.write_text("Words, readable again.")
            await check_disk(app, pilot)
            assert app.editor.text == "Words."  # still the only copy of it: kept
            assert "story.txt · modified · changed on disk" in app.status_text()

            story.write_text("Words.")  # the file holds the text again: in step
            await check_disk(app, pilot)
            assert not app.modified and "story.txt · saved" in app.status_text()

    run(scenario())


def test_retry_and_alternatives_after_a_reload_never_touch_the_old_spans(tiny_checkpoint, tmp_path):
    use_sampling(max_new_tokens=6)
    story = tmp_path / "story.txt"

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await open_and_continue(app, pilot)
            await continue_story(app, pilot, key="ctrl+r")
            assert len(app.continuations.live[-1].variants) == 2
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: not app.modified)

            story.write_text("Someone else rewrote the whole story here.")
            await check_disk(app, pilot)
            new = "Someone else rewrote the whole story here."
            assert app.editor.text == new
            assert not app.continuations.live and app.editor.marks == []
            app.editor.move_cursor((0, 25))  # where the continuation was
            for key in ("f3", "f4", "alt+left", "ctrl+r", "ctrl+t", "f9", "ctrl+z"):
                await pilot.press(key)
                await pilot.pause()
                assert app.job is None and app.editor.text == new, key
            assert not isinstance(app.screen, AskChoice) and not app.modified

    run(scenario())


def test_the_cursor_keeps_its_place_in_the_text_that_did_not_change():
    assert cursor_after_reload("abc def", "abc def ghi", 3) == 3  # changed after it
    assert cursor_after_reload("abc def", "xx abc def", 4) == 7  # changed before it
    assert cursor_after_reload("abc def", "zz", 5) == 2  # both: the same offset, in range
