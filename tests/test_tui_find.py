"""Find and replace in the story (ctrl+f): incremental find, smart case, next and previous,
replace and replace all as the writer's edits, with the continuation record kept exact.

Driven through Textual's pilot; the scenarios with a continuation use a scripted model.
"""

from __future__ import annotations

import threading
import time

from storytui.tui.commands import FIND_BAR_COMMANDS
from storytui.tui.find import find_starts, moved_offset, replaced_region
from storytui.tui.help import keys_table
from tests.tui_pilot import (
    SIZE,
    burst,
    continue_story,
    new_app,
    run,
    script_model,
    type_and_continue,
    wait_for,
    wait_ready,
)

STORY = "The keeper slept. Then the KEEPER woke.\nKeeper of the light, keeper of the book."


def story_file(tmp_path, text: str = STORY):
    path = tmp_path / "story.txt"
    path.write_text(text)
    return path


def selected(app) -> tuple[int, int]:
    start, end = sorted(app.editor.selection)
    return app.editor.index_of(start), app.editor.index_of(end)


def at(app, offset: int) -> None:
    app.editor.move_cursor(app.editor.location_of(offset))


def last_notice(app) -> str:
    return list(app._notifications)[-1].message


def hold_model(app, monkeypatch) -> threading.Event:
    """Make the model write one word, then keep it running, silent, until it is stopped or
    ``release``d."""
    from storytui.generation import TokenEvent

    release = threading.Event()

    def stream_events(text, settings, cancel, **_kwargs):
        yield TokenEvent(token=0, text=" and", prob=0.5)
        deadline = time.monotonic() + 30  # a failed test does not leave the thread behind
        while not (cancel.is_set() or release.wait(0.01)) and time.monotonic() < deadline:
            pass

    monkeypatch.setattr(app.generator, "stream_events", stream_events)
    return release


def test_smart_case_and_offsets_where_lowering_changes_the_length():
    text = "İstanbul: the keeper, the KEEPER, the Keeper."  # "İ".lower() is two characters
    assert len(text.lower()) == len(text) + 1
    assert find_starts(text, "keeper") == [14, 26, 38]
    assert find_starts(text, "Keeper") == [38]
    assert find_starts(text, "") == []
    spans = [(14, 20), (26, 32)]
    assert replaced_region(text, spans, "guard") == "guard, the guard"
    assert [moved_offset(o, spans, 5) for o in (0, 14, 17, 20, 30, 40)] == [0, 14, 19, 19, 30, 38]


def test_typing_finds_the_first_match_after_the_cursor_in_any_case(tmp_path):
    async def scenario():
        app = new_app(story_file(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            at(app, STORY.index("Then"))
            await pilot.press("ctrl+f")
            bar = app.find_bar
            assert bar.is_open and app.focused is bar.query_field
            await pilot.press(*"keeper")
            second = STORY.index("KEEPER")
            assert selected(app) == (second, second + 6)
            assert bar.count_text == "2 of 4"
            assert app.editor.find_marks[1] == [4, second, 40, STORY.rindex("keeper")]
            line = app.editor.get_line(0)
            style = app.editor.get_component_rich_style("story-editor--find-match")
            assert [(s.start, s.end) for s in line.spans if s.style == style] == [(4, 10), (27, 33)]
            await pilot.press("home", "delete", "K")
            assert bar.query_field.value == "Keeper"  # a capital: only that case
            assert selected(app) == (40, 46) and bar.count_text == "1 of 1"
            assert app.editor.text == STORY  # typing in the bar never edits the story

    run(scenario())


def test_next_and_previous_go_round_the_ends_with_a_note(tmp_path):
    async def scenario():
        app = new_app(story_file(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            at(app, 0)
            await pilot.press("ctrl+f", *"the")
            bar = app.find_bar
            starts = find_starts(STORY, "the")
            assert len(starts) == 5 and selected(app) == (0, 3)
            assert bar.count_text == "1 of 5"
            await pilot.press("enter")
            assert selected(app) == (starts[1], starts[1] + 3) and bar.count_text == "2 of 5"
            await pilot.press("down", "down", "down")
            assert bar.count_text == "5 of 5"
            await pilot.press("enter")
            assert selected(app) == (0, 3) and bar.count_text == "1 of 5 · wrapped to the start"
            await pilot.press("shift+enter")
            assert bar.count_text == "5 of 5 · wrapped to the end"
            await pilot.press("up")
            assert selected(app) == (starts[3], starts[3] + 3) and bar.count_text == "4 of 5"
            await pilot.press(*"zzz")
            assert bar.count_text == "no matches"
            assert app.editor.find_marks[1] == []
            assert app.editor.selection.start == app.editor.selection.end  # no stale match

    run(scenario())


def test_the_bar_starts_from_the_selection_or_the_last_search(tmp_path):
    async def scenario():
        app = new_app(story_file(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            at(app, 4)
            await pilot.press(*["shift+right"] * 6, "ctrl+f")  # "keeper" selected
            field = app.find_bar.query_field
            assert field.value == "keeper" and field.selection == (0, 6)
            assert app.find_bar.count_text == "1 of 4"
            await pilot.press("escape", "ctrl+end", "ctrl+f")
            assert field.value == "keeper"  # the last search
            assert app.editor.find_marks[1] == find_starts(STORY, "keeper")  # drawn again
            await pilot.press(*"light")  # the prefill is selected: typing replaces it
            assert (
                field.value == "light"
                and app.find_bar.count_text == "1 of 1 · wrapped to the start"
            )

    run(scenario())


def test_escape_closes_the_bar_and_the_match_stays_selected(tmp_path):
    async def scenario():
        app = new_app(story_file(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            at(app, 0)
            await pilot.press("ctrl+f", *"light")
            match = selected(app)
            await pilot.press("escape")
            assert not app.find_bar.is_open and app.focused is app.editor
            assert selected(app) == match and app.editor.text == STORY
            assert app.editor.find_marks[1] == ()  # no highlights left behind

    run(scenario())


def test_keys_right_behind_ctrl_f_and_escape_go_where_the_focus_went(tmp_path):
    """A burst, as a fast typist or a terminal sends it: "keeper" after ctrl+f is the query,
    not story text, and what follows Esc is typed into the story (over the match selected)."""

    async def scenario():
        app = new_app(story_file(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            at(app, 0)
            burst(app, ["ctrl+f", *"keeper", "ctrl+f", *"guard"])
            await wait_for(pilot, lambda: app.find_bar.replacement_field.value == "guard")
            assert app.find_bar.query_field.value == "keeper" and app.editor.text == STORY
            burst(app, ["escape", "!"])
            await wait_for(pilot, lambda: app.editor.text != STORY, what="typing")
            assert not app.find_bar.is_open  # "!" took the place of the selected match
            assert app.editor.text == "The !" + STORY[10:]

    run(scenario())


def test_escape_in_the_bar_does_not_stop_the_model_and_replace_waits_for_it(
    tiny_checkpoint, monkeypatch, tmp_path
):
    async def scenario():
        app = new_app(story_file(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            release = hold_model(app, monkeypatch)
            await pilot.press("f5")
            await wait_for(pilot, lambda: app.editor.text.endswith(" and"), what="a word")
            written = app.editor.text
            await pilot.press("ctrl+f", *"keeper", "enter", "ctrl+f", *"guard", "enter")
            assert app.editor.text == written and app.job is not None  # typing went nowhere
            assert app.editor.typed_ahead == ""
            await pilot.press("alt+a")
            assert app.editor.text == written
            assert last_notice(app).startswith("the model is writing")
            await pilot.press("escape")
            assert not app.find_bar.is_open and app.focused is app.editor
            assert app.job is not None and not app.job.cancel.is_set()
            release.set()
            await wait_for(pilot, lambda: app.job is None, what="the end")

    run(scenario())


def test_replace_one_replaces_the_selected_match_and_goes_to_the_next(tmp_path):
    async def scenario():
        app = new_app(story_file(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            at(app, 0)
            await pilot.press("ctrl+f", *"keeper", "ctrl+f")
            bar = app.find_bar
            assert bar.replacing and app.focused is bar.replacement_field
            await pilot.press(*"guard", "enter")
            text = STORY.replace("keeper", "guard", 1)
            assert app.editor.text == text
            second = text.index("KEEPER")
            assert selected(app) == (second, second + 6) and bar.count_text == "1 of 3"
            at(app, 0)  # the cursor moved away: Enter shows the match before replacing it
            await pilot.press("enter")
            assert app.editor.text == text and selected(app) == (second, second + 6)
            await pilot.press("ctrl+f")  # back to the find field
            assert app.focused is bar.query_field
            await pilot.press("escape", "ctrl+z")
            assert app.editor.text == STORY

    run(scenario())


def test_replace_all_is_one_undo_step_and_says_how_many(tmp_path):
    async def scenario():
        app = new_app(story_file(tmp_path))
        async with app.run_test(size=SIZE) as pilot:
            await pilot.press("!")  # typing first: its own undo step
            typed = STORY + "!"
            at(app, 0)
            await pilot.press("ctrl+f", *"keeper", "ctrl+f", *"guard", "alt+a")
            replaced = typed.replace("keeper", "guard").replace("KEEPER", "guard")
            replaced = replaced.replace("Keeper", "guard")
            assert app.editor.text == replaced
            assert last_notice(app) == 'replaced 4 matches of "keeper" with "guard"'
            assert app.find_bar.count_text == "no matches"
            await pilot.press("escape", "ctrl+z")
            assert app.editor.text == typed  # the whole replace, and only it
            await pilot.press("ctrl+y")
            assert app.editor.text == replaced
            await pilot.press("ctrl+z", "ctrl+z")
            assert app.editor.text == STORY

    run(scenario())


def test_replacing_keeps_the_continuations_exact(tiny_checkpoint, monkeypatch):
    """A continuation between two replaced names moves along, still marked, and retry and
    the alternatives then act on its real text; one holding a name counts as edited."""

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await type_and_continue(app, pilot, monkeypatch)
            await pilot.press(*" Anna sat.")
            script_model(app, monkeypatch, [" Anna", " wept."])
            await continue_story(app, pilot)
            assert app.editor.text == "Anna ran. She slept. Anna sat. Anna wept."
            between = app.continuations.live[0]
            assert len(app.continuations.live) == 2 and between.start == 9
            await pilot.press("ctrl+f", *"anna", "ctrl+f", *"Beatrice", "alt+a", "escape")
            assert app.editor.text == "Beatrice ran. She slept. Beatrice sat. Beatrice wept."
            assert app.continuations.live == [between] and between.start == 13
            assert [(m.start, m.end) for m in app.editor.marks] == [(13, 24)]
            await pilot.press("ctrl+z")
            assert app.editor.text == "Anna ran. She slept. Anna sat. Anna wept."
            assert app.continuations.live == [between] and between.start == 9
            await pilot.press("ctrl+y")
            assert app.continuations.live == [between] and between.start == 13
            at(app, 16)
            script_model(app, monkeypatch, [" She", " woke."])
            await continue_story(app, pilot, key="ctrl+r")
            assert app.editor.text == "Beatrice ran. She woke. Beatrice sat. Beatrice wept."
            await pilot.press("f3")
            assert app.editor.text == "Beatrice ran. She slept. Beatrice sat. Beatrice wept."
            # back to the text the replace left: the next undo is the replace's, and exact
            await pilot.press("ctrl+z")
            assert app.editor.text == "Anna ran. She slept. Anna sat. Anna wept."
            assert app.continuations.live == [between] and between.start == 9
            assert app.editor.text[9:20] == between.text == " She slept."
            at(app, 12)
            await pilot.press("f4")
            assert app.editor.text == "Anna ran. She woke. Anna sat. Anna wept."

    run(scenario())


def test_find_in_a_long_story_searches_once_per_query_change(tmp_path, monkeypatch):
    """200K characters in paragraphs: each letter typed searches the whole story once (and
    moving on through the matches or redrawing searches nothing), so finding stays quick."""
    paragraph = "The keeper lit the lamp and wrote the weather in a book. " * 8
    story = (paragraph + "\n\n") * 440
    assert len(story) > 200_000
    searches: list[str] = []

    def counted(text, query, lowered=None):
        searches.append(query)
        return find_starts(text, query, lowered)

    monkeypatch.setattr("storytui.tui.find_bar.find_starts", counted)

    async def scenario():
        app = new_app(story_file(tmp_path, story))
        async with app.run_test(size=SIZE) as pilot:
            at(app, 100_000)
            started = time.monotonic()
            await pilot.press("ctrl+f", *"weather", "enter", "enter", "up")
            elapsed = time.monotonic() - started
            assert searches == ["", *("weather"[:n] for n in range(1, 8))]
            total = story.count("weather")
            after = story.index("weather", 100_000)
            index = story.count("weather", 0, after) + 1  # the first after the cursor, then +1
            assert app.find_bar.count_text == f"{index + 1} of {total}"
            assert elapsed < 8.0, f"finding took {elapsed:.2f}s"

    run(scenario())


def test_find_and_replace_are_in_the_palette_and_on_the_help_screen():
    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE):
            titles = {command.title for command in app.get_system_commands(app.screen)}
            assert {command.label for command in FIND_BAR_COMMANDS} | {"Find"} <= titles
            keys = [str(cell) for cell in keys_table().columns[0]._cells]
            assert "ctrl+f" in keys and "alt+a" in keys and "shift+enter / up" in keys
            bar = app.find_bar._bindings.key_to_bindings
            bound = {binding.action for keyed in bar.values() for binding in keyed}
            assert bound == {command.action for command in FIND_BAR_COMMANDS} - {"replace_one"}
            assert "enter" not in bar  # the fields' own Enter: next, or replace then next

    run(scenario())


def test_find_matches_stay_apart_from_every_tint_in_256_colours():
    """A match inside F8's colours must not take one of their looks, in the light and the
    dark theme, on a terminal of 256 colours."""
    from rich.color import ColorSystem

    from storytui.tui.editor import MARK_STYLES

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            for theme in ("textual-dark", "textual-light"):
                app.theme = theme
                await pilot.pause()
                looks = {}
                for name in MARK_STYLES:
                    style = app.editor.get_component_rich_style(f"story-editor--{name}")
                    looks[name] = style.bgcolor.downgrade(ColorSystem.EIGHT_BIT).number
                find = looks.pop("find-match")
                assert find not in looks.values(), (theme, find, looks)
            assert app.editor.get_component_rich_style("story-editor--find-match").bold

    run(scenario())
