"""Story files in the app: save, save as, reopen, quitting, autosave, recovery, corrupt files.

Driven through Textual's pilot with a tiny random model.
"""

from __future__ import annotations

import json

import pytest

from storytui import paths
from storytui.errors import StoryError
from storytui.tui.dialogs import AskChoice, AskPath
from storytui.tui.story_files import (
    Story,
    autosave,
    discard_copies,
    load_draft,
    open_named,
    recovery_path,
    sidecar_path,
    write_story,
)
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
            notice = again.query_one("#notice")
            assert "restored unsaved changes" in str(notice.render())
            await pilot.press("ctrl+s")  # saved: the notice is old news and goes
            await wait_for(pilot, lambda: not again.modified)
            assert "restored" not in str(notice.render())
        assert story.read_text() == "Before and after"

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


# ---------------------------------------------------------------------------- QA pass 2 fixes


def recovery_copies() -> list:
    """The active recovery copies (not the ones kept aside)."""
    return sorted(p for p in paths.recovery_dir().glob("*.txt") if ".kept-" not in p.name)


def kept_copies() -> list:
    return sorted(paths.recovery_dir().glob("*.kept-*.txt"))


@pytest.fixture
def other_storytui():
    """A running process standing in for a second storytui (its pid is what copies record)."""
    import subprocess
    import sys

    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    yield process.pid
    process.kill()
    process.wait()


def copy_written_by(copy, pid: int | None, **fields) -> None:
    """Make an existing copy look as if process ``pid`` wrote it (None: an older storytui)."""
    sidecar = sidecar_path(copy)
    data = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    for key in ("pid", "pid_started", "based_on"):
        data.pop(key, None)
    if pid is not None:
        data["pid"] = pid
    data.update(fields)
    sidecar.write_text(json.dumps(data))


def test_a_recovery_copy_is_found_through_a_linked_folder(tmp_path):
    folder = tmp_path / "stories"
    folder.mkdir()
    link = tmp_path / "link"
    link.symlink_to(folder)
    story = folder / "p1.txt"
    story.write_text("Path test story.")
    opened = open_named(story)
    autosave(opened.path, Story("Path test story. UNSAVED-EDIT"), opened.saved)  # then a crash

    again = open_named(link / "p1.txt")
    assert again.story.text == "Path test story. UNSAVED-EDIT"
    assert any("restored unsaved changes" in n for n in again.notices)
    assert len(recovery_copies()) == 1


def test_a_stale_recovery_copy_never_replaces_a_newer_file(tmp_path):
    """QA #1: unsaved edits from a killed session, then the file is saved by someone else."""
    story = tmp_path / "p1.txt"
    story.write_text("Path test story.")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*" UNSAVED-EDIT")
            app._autosave_tick()
            app._final_autosave = False  # a kill: no goodbye
        story.write_text("Path test story. NEWER-SAVED")  # another editor, another storytui

        again = new_app(story)
        async with again.run_test(size=SIZE) as pilot:
            assert again.editor.text == "Path test story. NEWER-SAVED" and not again.modified
            notice = str(again.query_one("#notice").render())
            [kept] = kept_copies()
            assert "changed on disk" in notice and str(kept) in notice
            assert kept.read_text() == "Path test story. UNSAVED-EDIT"
            assert not recovery_copies()
            await pilot.press("ctrl+s")  # saving can no longer bring the old text back
            await pilot.pause()
        assert story.read_text() == "Path test story. NEWER-SAVED"
        assert kept.read_text() == "Path test story. UNSAVED-EDIT"

    run(scenario())


def test_a_recovery_copy_is_restored_only_while_the_file_is_what_it_was_based_on(tmp_path):
    story = tmp_path / "tale.txt"
    story.write_text("One.")
    opened = open_named(story)
    autosave(opened.path, Story("One. Two."), opened.saved)
    assert open_named(story).story.text == "One. Two."  # the file as it was: restored

    new = tmp_path / "new.txt"  # a story not saved yet, and then created by someone else
    opened = open_named(new)
    autosave(opened.path, Story("Mine."), opened.saved)
    new.write_text("Theirs.")
    reopened = open_named(new)
    assert reopened.story.text == "Theirs." and reopened.saved == Story("Theirs.")
    assert [k.read_text() for k in kept_copies()] == ["Mine."]


def test_an_old_recovery_copy_without_a_fingerprint_is_restored_as_before(tmp_path):
    """Copies from before fingerprints: restored whatever the file holds, found by the path as
    typed too."""
    import hashlib

    story = tmp_path / "tale.txt"
    story.write_text("Changed since.")
    write_story(recovery_path(story), Story("Old copy."), extra={"file": str(story)})
    assert open_named_text(story) == "Old copy."

    folder = tmp_path / "real"
    folder.mkdir()
    (tmp_path / "alias").symlink_to(folder)
    typed = tmp_path / "alias" / "linked.txt"
    (folder / "linked.txt").write_text("File.")
    digest = hashlib.sha256(str(typed).encode()).hexdigest()[:12]
    legacy = paths.recovery_dir() / f"linked-{digest}.txt"
    write_story(legacy, Story("Legacy copy."), extra={"file": str(typed)})
    assert open_named_text(typed) == "Legacy copy."  # found where it was kept, and moved
    assert not legacy.exists() and recovery_path(typed).read_text() == "Legacy copy."
    assert open_named_text(folder / "linked.txt") == "Legacy copy."  # now by its real path


def open_named_text(path) -> str:
    return open_named(path).story.text


def test_saving_over_a_file_that_changed_on_disk_asks_first(tmp_path):
    """QA #2: another instance (or editor) saved the file since this one opened it."""
    story = tmp_path / "s5.txt"
    story.write_text("Shared file base.")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*" from A")
            story.write_text("Shared file base. from B")  # same size, same second: not mtime
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            assert "s5.txt changed on disk since you opened it" in app.screen.question
            assert app.screen.focused.id == "cancel"
            await pilot.press("enter")
            await wait_for(pilot, lambda: not isinstance(app.screen, AskChoice))
            assert story.read_text() == "Shared file base. from B" and app.modified

            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            await pilot.press("s")  # Save as…: keeps both
            await wait_for(pilot, lambda: isinstance(app.screen, AskPath))
            app.screen.query_one("#path").value = str(tmp_path / "a.txt")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.path == tmp_path / "a.txt")
            assert (tmp_path / "a.txt").read_text() == "Shared file base. from A"
            assert story.read_text() == "Shared file base. from B"

            await pilot.press(*" again", "ctrl+s")  # unchanged on disk: no question
            await wait_for(pilot, lambda: not app.modified)
            await pilot.press("!")  # unsaved, so a watch check meanwhile cannot reload it
            (tmp_path / "a.txt").write_text("Replaced elsewhere.")
            await pilot.press("ctrl+s")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            assert "changed on disk since you saved it" in app.screen.question
            await pilot.press("o")
            await wait_for(pilot, lambda: not app.modified)
        assert (tmp_path / "a.txt").read_text() == "Shared file base. from A again!"

    run(scenario())


def test_another_running_storytuis_recovery_copy_is_never_overwritten(tmp_path, other_storytui):
    """QA #2: two instances on one file each keep their own unsaved changes."""
    story = tmp_path / "s5.txt"
    story.write_text("Shared file base.")
    opened = open_named(story)
    autosave(opened.path, Story("Shared file base. A-unsaved"), opened.saved)
    theirs = recovery_path(story)
    copy_written_by(theirs, other_storytui)  # as if the other instance wrote it

    mine = open_named(story)
    assert mine.story.text == "Shared file base."  # its live work is not taken over
    assert any(f"another storytui (process {other_storytui})" in n for n in mine.notices)
    notice = autosave(mine.path, Story("Shared file base. B-unsaved"), mine.saved)
    assert notice and str(other_storytui) in notice
    assert theirs.read_text() == "Shared file base. A-unsaved"
    [alternate] = [p for p in recovery_copies() if p != theirs]
    assert alternate.read_text() == "Shared file base. B-unsaved" and str(alternate) in notice
    autosave(mine.path, Story("Shared file base."), mine.saved)  # back to the file: none needed
    discard_copies(mine.path)
    assert not alternate.exists() and theirs.read_text() == "Shared file base. A-unsaved"


def test_the_draft_of_another_running_storytui_is_never_overwritten(other_storytui):
    autosave(None, Story("their draft"), None)
    copy_written_by(paths.autosave_path(), other_storytui)
    opened = load_draft()
    assert opened.story.text == "their draft" and "also open" in opened.notices[0]
    assert autosave(None, Story("their draft, and mine"), None)
    assert paths.autosave_path().read_text() == "their draft"
    [alternate] = paths.stories_dir().glob("autosave.pid-*.txt")
    assert alternate.read_text() == "their draft, and mine"


def test_copies_of_sessions_that_ended_are_restored_or_kept_never_lost(tmp_path):
    """Two killed instances left a copy each: the newest is restored, the other kept aside."""
    import os
    import time

    story = tmp_path / "tale.txt"
    story.write_text("Base.")
    base = open_named(story).saved.base
    key = recovery_path(story)
    write_story(key, Story("Base. first"), extra={"pid": 2**31 - 2, "based_on": base})
    beside = key.with_name(f"{key.stem}.pid-{2**31 - 3}.txt")
    write_story(beside, Story("Base. second"), extra={"pid": 2**31 - 3, "based_on": base})
    later = time.time() + 5
    os.utime(beside, (later, later))

    opened = open_named(story)
    assert opened.story.text == "Base. second"
    assert [k.read_text() for k in kept_copies()] == ["Base. first"]
    assert [c.read_text() for c in recovery_copies()] == ["Base. second"]
    assert recovery_copies() == [key]  # taken over: in the usual place, in this process's name


def test_the_same_story_saved_elsewhere_leaves_no_stale_copy_to_restore(tmp_path):
    """A copy whose text the file now holds is simply removed."""
    story = tmp_path / "tale.txt"
    story.write_text("A.")
    opened = open_named(story)
    autosave(opened.path, Story("A. B."), opened.saved)
    story.write_text("A. B.")
    assert open_named(story).story.text == "A. B."
    assert not recovery_copies() and not kept_copies()


def test_a_signal_writes_the_recovery_copy_at_once_and_exits_with_its_status(tmp_path):
    """QA #3: SIGTERM / SIGHUP run the quit's final autosave (no question) and exit 128+N."""
    import os
    import signal

    story = tmp_path / "s4.txt"
    story.write_text("Saved.")

    async def scenario():
        draft_app = new_app()
        async with draft_app.run_test(size=SIZE) as pilot:
            await pilot.press(*"draft HUP2")
            draft_app._final_autosave = False  # only the signal's own autosave may save it
            draft_app._exit_on_signal(signal.SIGHUP)
            await wait_for(pilot, lambda: not draft_app.is_running, timeout=10)
        assert draft_app.return_code == 128 + signal.SIGHUP
        assert paths.autosave_path().read_text() == "draft HUP2"

        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            assert set(app._signals_installed) == {signal.SIGTERM, signal.SIGHUP}
            await pilot.press(*" TERM4")
            app._final_autosave = False
            os.kill(os.getpid(), signal.SIGTERM)  # handled in the app's loop
            await wait_for(pilot, lambda: not app.is_running, timeout=10)
        assert app.return_code == 128 + signal.SIGTERM
        assert [c.read_text() for c in recovery_copies()] == ["Saved. TERM4"]
        assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL

    run(scenario())


@pytest.mark.skipif(__import__("shutil").which("tmux") is None, reason="tmux is not installed")
@pytest.mark.parametrize("how", ["SIGTERM", "terminal closed"])
def test_a_signal_in_a_real_terminal_saves_the_last_keys(storytui_home, tmp_path, how):
    """The real app in tmux: typing, then at once ``kill -TERM`` or the terminal window goes."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    from tests.test_tui_tmux import Pane

    story = tmp_path / "s4.txt"
    story.write_text("RECOVERME one two three")
    status = tmp_path / "status"
    env = {
        "STORYTUI_HOME": str(storytui_home),
        "STORYTUI_BUNDLED_MODEL": os.environ["STORYTUI_BUNDLED_MODEL"],
        "TERM": "xterm-256color",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    app = f"{sys.executable} -m storytui.cli {story}"
    script = f"{app}; echo $? > {status}; echo EXITED; sleep 60"
    pane = Pane(["sh", "-c", script], env)
    try:
        pane.wait_for("s4.txt · saved")
        pane.keys(" HUP2", literal=True)
        pane.wait_for("HUP2")
        shell = pane.tmux("list-panes", "-F", "#{pane_pid}").split()[0]
        pgrep = subprocess.run(["pgrep", "-P", shell], capture_output=True, text=True)
        [app_pid] = [int(pid) for pid in pgrep.stdout.split()]
        if how == "SIGTERM":
            os.kill(app_pid, signal.SIGTERM)
            pane.wait_for("EXITED", timeout=30)
            assert status.read_text().strip() == str(128 + signal.SIGTERM)
            assert "s4.txt" not in pane.text()  # the terminal is back to the shell's screen
        else:
            pane.close()  # the kernel hangs up the terminal: SIGHUP
            deadline = time.monotonic() + 30
            while running(app_pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not running(app_pid), "the app did not exit on SIGHUP"
    finally:
        pane.close()
    assert [c.read_text() for c in recovery_copies()] == ["RECOVERME one two three HUP2"]


def running(pid: int) -> bool:
    """Whether a process is alive (a zombie nobody reaped has ended)."""
    from pathlib import Path

    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_enter_in_a_confirmation_picks_cancel(tmp_path):
    """QA #4: the focused answer is the safe one; Discard / Overwrite need their own key."""
    existing = tmp_path / "existing.txt"
    existing.write_text("Keep me.")

    async def scenario():
        app = fast_autosave_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"Important draft text.")
            await wait_for(pilot, lambda: paths.autosave_path().exists())
            await pilot.press("ctrl+n")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            assert "Discard it for a new story?" in app.screen.question
            assert app.screen.focused.id == "cancel"
            await pilot.press("enter")
            await wait_for(pilot, lambda: not isinstance(app.screen, AskChoice))
            assert app.editor.text == "Important draft text."
            assert paths.autosave_path().read_text() == "Important draft text."

            await pilot.press("f12")  # save as over an existing file: Enter, Enter
            await wait_for(pilot, lambda: isinstance(app.screen, AskPath))
            app.screen.query_one("#path").value = str(existing)
            await pilot.press("enter")
            await wait_for(pilot, lambda: isinstance(app.screen, AskChoice))
            assert app.screen.focused.id == "cancel"
            await pilot.press("enter")
            await wait_for(pilot, lambda: not isinstance(app.screen, AskChoice))
            assert existing.read_text() == "Keep me." and app.path is None

        story = tmp_path / "story.txt"
        story.write_text("Saved.")
        quitting = new_app(story)
        async with quitting.run_test(size=SIZE) as pilot:
            await pilot.press(*" unsaved", "ctrl+q")
            await wait_for(pilot, lambda: isinstance(quitting.screen, AskChoice))
            assert quitting.screen.focused.id == "cancel"
            await pilot.press("enter")
            await pilot.pause()
            assert quitting.is_running and quitting.editor.text == "Saved. unsaved"

    run(scenario())


def test_a_missing_folder_is_named_as_such(tmp_path, capsys):
    """One rule at start-up and in Save as: a missing folder is not created. Save as keeps
    its dialog open with the reason, and the typed path to put right."""
    from storytui.cli import main

    missing = tmp_path / "nope" / "y.txt"
    with pytest.raises(SystemExit) as exit_info:
        main([str(missing)])
    assert exit_info.value.code == 1
    err = capsys.readouterr().err.strip()
    assert f"the folder {missing.parent} does not exist" in err
    assert "not a directory" not in err and "\n" not in err

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press(*"words", "f12")
            await wait_for(pilot, lambda: isinstance(app.screen, AskPath))
            typo = tmp_path / "typo" / "dir" / "a.txt"
            app.screen.query_one("#path").value = str(typo)
            await pilot.press("enter")
            await pilot.pause()
            dialog = app.screen
            assert isinstance(dialog, AskPath) and app.path is None  # still open
            hint = str(dialog.query_one(".dialog-hint").render())
            assert f"the folder {typo.parent} does not exist" in hint
            assert dialog.query_one("#path").value == str(typo)  # kept, to be put right
            dialog.query_one("#path").value = str(tmp_path)
            await pilot.press("enter")
            await pilot.pause()
            assert f"{tmp_path} is a folder" in str(dialog.query_one(".dialog-hint").render())
            dialog.query_one("#path").value = str(tmp_path / "a.txt")  # put right: saved
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.path == tmp_path / "a.txt")
            assert "folder" not in str(app.query_one("#notice").render())
            await pilot.press("ctrl+o")  # Open says the same, and a new name says it is new
            await wait_for(pilot, lambda: isinstance(app.screen, AskPath))
            app.screen.query_one("#path").value = str(typo)
            await pilot.press("enter")
            await pilot.pause()
            assert "does not exist" in str(app.screen.query_one(".dialog-hint").render())
            app.screen.query_one("#path").value = str(tmp_path / "fresh.txt")
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.path == tmp_path / "fresh.txt")
            notice = str(app.query_one("#notice").render())
            assert notice == f"fresh.txt is a new story: saving creates {tmp_path / 'fresh.txt'}"
        assert not (tmp_path / "typo").exists()

    run(scenario())


def test_a_new_story_does_not_show_the_last_storys_speed(tiny_checkpoint, tmp_path):
    from tests.tui_pilot import open_and_continue, use_sampling

    use_sampling(seed=2, max_new_tokens=4)

    async def scenario():
        app = new_app(tmp_path / "tale.txt")
        async with app.run_test(size=SIZE) as pilot:
            await open_and_continue(app, pilot)
            assert "tok/s" in app.status_text()
            await pilot.press("ctrl+s")
            await pilot.pause()
            await pilot.press("ctrl+n")
            await pilot.pause()
            assert app.path is None and "tok/s" not in app.status_text()

    run(scenario())
