"""The app's record of continuations and its story files, without a screen."""

from __future__ import annotations

import json

import pytest

from storytui import paths
from storytui.errors import StoryError
from storytui.tui.continuations import (
    REDO,
    UNDO,
    ContinuationLog,
    GeneratedToken,
    HistoryStep,
    NewlineNormalizer,
    Variant,
    needs_separator,
    normalize_newlines,
    probability_kind,
    trim_lead,
)
from storytui.tui.settings_store import AppSettings, load_settings, save_settings
from storytui.tui.story_files import (
    Story,
    autosave,
    open_initial,
    open_named,
    recovery_path,
    sidecar_path,
    write_story,
)


def logged(story: str, start: int, text: str) -> tuple[ContinuationLog, str]:
    """A log with one continuation of ``text`` inserted at ``start`` of ``story``."""
    log = ContinuationLog()
    continuation = log.begin(start)
    continuation.variant.add(text, 0.5)
    return log, story[:start] + text + story[start:]


def test_typing_before_a_continuation_moves_it_and_after_it_leaves_it():
    log, text = logged("Hello world", 5, " there")
    continuation = log.live[0]
    log.writer_edit(text, ">" + text)
    assert continuation.start == 6 and log.live
    moved = ">" + text
    log.writer_edit(moved, moved[: continuation.end] + "!" + moved[continuation.end :])
    assert log.live and continuation.start == 6


def test_editing_inside_a_continuation_unmarks_it():
    log, text = logged("Hello world", 5, " there")
    log.writer_edit(text, text[:8] + "X" + text[8:])
    assert log.live == []
    assert log.marks(by_probability=False) == []


def test_undoing_an_edit_inside_a_continuation_marks_it_again():
    """Typing into generated text unmarks it; ctrl+z that gives its text back marks it again,
    with its alternatives, where it has moved to since; redo unmarks it once more."""
    log, text = logged("Hello world", 5, " there")
    continuation = log.live[0]
    continuation.variants.append(Variant())  # an alternative, which must come back too
    edited = text[:8] + "X" + text[8:]
    log.writer_edit(text, edited)
    moved = ">> " + edited  # typed before it afterwards: it moves while unmarked
    log.writer_edit(edited, moved)
    assert log.live == [] and continuation.start == 8
    undo = HistoryStep(UNDO, (object(),), 11)
    log.writer_edit(moved, ">> " + text, undo)
    assert log.live == [continuation] and len(continuation.variants) == 2
    assert log.marks(by_probability=False)[0].start == 8
    log.writer_edit(">> " + text, moved, HistoryStep(REDO, undo.entries, 11))
    assert log.live == []


def test_an_undo_that_does_not_give_the_text_back_leaves_it_unmarked():
    log, text = logged("Hello world", 5, " there")
    log.writer_edit(text, text[:8] + "XY" + text[8:])
    log.writer_edit(
        text[:8] + "XY" + text[8:], text[:8] + "X" + text[8:], HistoryStep(UNDO, (object(),), 9)
    )
    assert log.live == []
    log.writer_edit(text[:8] + "X" + text[8:], text[:3] + "Z" + text[3:])  # an edit before it
    log.writer_edit(text[:3] + "Z" + text[3:], text, HistoryStep(UNDO, (object(),), 3))
    assert log.live == []  # its place was lost to an edit that began before it


def test_undoing_a_continuations_entry_files_it_and_redoing_it_brings_it_back():
    log, text = logged("abab", 2, "ab")  # a repeat the plain diff would place wrongly
    continuation = log.live[0]
    log.recorded(continuation, entry := object(), None)
    log.writer_edit(text, "abab", HistoryStep(UNDO, (entry,), 2))
    assert log.live == [] and log.undone == [continuation]
    log.writer_edit("abab", text, HistoryStep(REDO, (entry,), 2))
    assert log.live == [continuation] and continuation.start == 2


def test_a_redone_continuation_lands_where_its_entry_puts_it_after_other_steps():
    log, text = logged("Hi", 2, " there")
    continuation = log.live[0]
    log.recorded(continuation, entry := object(), None)
    typing = object()
    log.writer_edit(text, "Hi", HistoryStep(UNDO, (entry,), 2))
    log.writer_edit("Hi", "", HistoryStep(UNDO, (typing,), 0))
    log.writer_edit("", "Hi", HistoryStep(REDO, (typing,), 0))
    assert log.undone == [continuation]
    log.writer_edit("Hi", text, HistoryStep(REDO, (entry,), 2))
    assert log.live == [continuation] and continuation.start == 2
    assert log.marks(by_probability=False)[0].end == len(text)


def test_undoing_a_swap_of_alternatives_shows_the_one_before_and_redoing_it_swaps_again():
    log, text = logged("Hi!", 2, " there")
    continuation = log.live[0]
    log.recorded(continuation, inserted := object(), None)
    continuation.variants.append(Variant())
    continuation.variants[1].add(" you", 0.5)
    continuation.current = 1
    log.recorded(continuation, swapped := object(), 0)  # " there" replaced by " you"
    after = "Hi you!"
    log.writer_edit(after, text, HistoryStep(UNDO, (swapped,), 2))
    assert log.live == [continuation] and continuation.current == 0
    assert log.marks(by_probability=False)[0].end == len("Hi there")
    assert continuation.history_entry is inserted
    log.writer_edit(text, after, HistoryStep(REDO, (swapped,), 2))
    assert log.live == [continuation] and continuation.current == 1
    assert log.marks(by_probability=False)[0].end == len("Hi you")
    log.writer_edit(after, text, HistoryStep(UNDO, (swapped,), 2))
    log.writer_edit(text, text + "?")  # typing: the swap can no longer be redone
    log.writer_edit(text + "?", after + "?", HistoryStep(REDO, (swapped,), 2))
    assert log.live == []


def test_typing_after_an_undo_forgets_what_could_be_redone():
    log, text = logged("Hi", 2, " there")
    continuation = log.live[0]
    log.recorded(continuation, entry := object(), None)
    log.writer_edit(text, "Hi", HistoryStep(UNDO, (entry,), 2))
    log.writer_edit("Hi", "Hi!")
    assert log.undone == []
    log.writer_edit("Hi!", "Hi!" + " there", HistoryStep(REDO, (entry,), 3))
    assert log.live == []


def test_deleting_exactly_a_continuations_text_is_an_edit_not_an_undo():
    log, text = logged("Hi", 2, " there")
    log.recorded(log.live[0], object(), None)
    log.writer_edit(text, "Hi")
    assert log.live == [] and log.undone == []


def test_other_continuations_move_when_one_grows():
    log = ContinuationLog()
    first = log.begin(0)
    first.variant.add("aaa", 0.9)
    second = log.begin(3)
    second.variant.add("bbb", 0.9)
    log.replaced(0, 3, 5, owner=first)
    assert second.start == 5


def test_target_is_the_continuation_around_the_cursor_only():
    log = ContinuationLog()
    first = log.begin(0)
    first.variant.add("aaa", 0.9)
    second = log.begin(10)
    second.variant.add("bbb", 0.9)
    assert log.target(1) is first
    assert log.target(12) is second
    assert log.target(7) is None  # elsewhere: none, so nothing far away is rewritten


def test_tokens_are_found_by_offset_and_branch_keeps_the_prefix():
    variant = Variant()
    for piece in ("The", "", " cat", " sat"):
        variant.add(piece, 0.5, token=len(variant.tokens))
    assert variant.token_index_at(0) == 0
    assert variant.token_index_at(3) == 2  # the empty token has no text to point at
    assert variant.token_index_at(len(variant.text)) == 3
    branched = variant.branch(2, GeneratedToken(0, " dog", 0.1, token=99))
    assert branched.text == "The dog" and [t.token for t in branched.tokens] == [0, 1, 99]


@pytest.mark.parametrize(
    ("last", "following", "spaced"),
    [
        ("y", "a", True),  # "hallway" + "and"
        (".", "T", True),  # a sentence, then the next one
        ("y", "(", True),
        ("y", "\u201c", True),  # an opening quote
        ("y", ".", False),  # punctuation stays on the word before it
        ("y", ",", False),
        ("y", "'", False),  # "door" + "'s"
        ("y", "\u2014", False),  # an em dash
        ("y", ")", False),
        ("(", "a", False),  # an opening bracket stays on the word after it
        (" ", "a", False),
        ("y", " ", False),
        ("y", "\n", False),
        ("y", "", False),  # the story's end
        ("", "a", False),  # nothing written
    ],
)
def test_a_space_goes_between_a_continuation_and_the_next_word_only(last, following, spaced):
    assert needs_separator(last, following) is spaced


def test_a_continuation_does_not_double_the_space_or_indent_a_line():
    assert trim_lead(" into", " ") == "into"
    assert trim_lead("   Grace", "\n") == "Grace"
    assert trim_lead(" The", "") == "The"  # the story's start
    assert trim_lead("\n\nThe", "\n") == "\n\nThe"  # a new paragraph is the model's choice
    assert trim_lead(" into", "r") == " into"


def test_the_separator_is_text_of_the_variant_but_no_token_of_the_model():
    log, _ = logged("", 0, "")
    variant = log.live[0].variant
    variant.add(" sure", 0.9, token=1)
    variant.add_separator()
    assert variant.text == " sure " and "".join(t.text for t in variant.tokens) == variant.text
    assert variant.token_index_at(5) == 1 and variant.token_index_at(6) == 1  # F9: " sure"
    assert [(m.start, m.end) for m in log.marks(by_probability=True)] == [(0, 5)]
    assert [(m.start, m.end) for m in log.marks(by_probability=False)] == [(0, 6)]


def test_trailing_spaces_come_off_the_text_and_its_tokens():
    variant = Variant()
    for piece in (" wide", " open ", "", "  "):
        variant.add(piece, 0.5)
    assert variant.drop_trailing_spaces() == 3
    assert variant.text == " wide open"
    assert [(t.start, t.text) for t in variant.tokens] == [
        (0, " wide"),
        (5, " open"),
        (10, ""),
        (10, ""),
    ]
    assert variant.drop_trailing_spaces() == 0


def test_probability_marks_cover_each_token():
    log, _ = logged("", 0, "")
    variant = log.live[0].variant
    variant.add(" sure", 0.9)
    variant.add(" maybe", 0.05)
    kinds = [(m.start, m.end, m.kind) for m in log.marks(by_probability=True)]
    assert kinds == [(0, 5, "prob-high"), (5, 11, "prob-rare")]
    assert probability_kind(0.61) == "prob-high" and probability_kind(0.0) == "prob-rare"


def test_line_breaks_are_normalised_like_the_editor_stores_them():
    assert normalize_newlines("a\r\nb\rc\u2028d\x0be") == "a\nb\nc\nd\ne"
    stream = NewlineNormalizer()
    assert stream.push("a\r") + stream.push("\nb") == "a\nb"


def test_a_story_round_trips_with_its_sidecar(tmp_path):
    path = tmp_path / "tale.txt"
    write_story(path, Story("Text\n", "A prompt", "Notes"))
    opened = open_named(path)
    assert opened.story == Story("Text\n", "A prompt", "Notes") and opened.saved == opened.story
    write_story(tmp_path / "plain.txt", Story("No fields"))
    assert not sidecar_path(tmp_path / "plain.txt").exists()


def test_a_corrupt_sidecar_is_kept_aside(tmp_path):
    path = tmp_path / "tale.txt"
    path.write_text("Text")
    sidecar_path(path).write_text("{not json")
    opened = open_named(path)
    assert opened.story == Story("Text") and "unreadable" in opened.notices[0]
    assert list(tmp_path.glob("tale.txt.storytui.json.corrupt-*"))


def test_recovery_copies_follow_the_saved_state(tmp_path):
    path = (tmp_path / "tale.txt").absolute()
    path.write_text("Saved")
    autosave(path, Story("Saved and more"), Story("Saved"))
    assert recovery_path(path).read_text() == "Saved and more"
    assert open_named(path).story.text == "Saved and more"
    autosave(path, Story("Saved"), Story("Saved"))
    assert not recovery_path(path).exists()


def test_opening_without_a_file_prefers_the_last_file_then_the_draft(tmp_path):
    assert open_initial(None, None).path is None
    gone = tmp_path / "gone.txt"
    opened = open_initial(None, str(gone))
    assert opened.path is None and "no longer exists" in opened.notices[0]
    autosave(None, Story("draft"), None)
    assert open_initial(None, None).story.text == "draft"


def test_missing_directory_and_binary_files_are_clear_errors(tmp_path):
    with pytest.raises(StoryError, match="does not exist"):
        open_named(tmp_path / "nope" / "tale.txt")
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x00\x00")
    with pytest.raises(StoryError, match="binary"):
        open_named(binary)


def test_settings_round_trip_and_keep_unknown_keys():
    save_settings(AppSettings(preset="focused", last_file="/tmp/x.txt", other={"future": 1}))
    settings, notice = load_settings()
    assert notice is None and settings.preset == "focused" and settings.other == {"future": 1}
    assert json.loads(paths.settings_path().read_text())["future"] == 1


def test_unreadable_settings_are_kept_aside():
    paths.settings_path().parent.mkdir(parents=True, exist_ok=True)
    paths.settings_path().write_bytes(b"\xff{")
    settings, notice = load_settings()
    assert settings == AppSettings() and "kept them as settings.json.corrupt-" in notice


def test_the_app_module_starts_without_torch():
    import subprocess
    import sys

    code = "import storytui.tui.app, sys; print('torch' in sys.modules, 'numpy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
