"""Continuing a story: streaming, stopping, prompt and memory, token colours.

Driven through Textual's pilot with a tiny random model.
"""

from __future__ import annotations

import json
import threading

from storytui import paths
from storytui.tui.app import LOADING, READY
from storytui.tui.continuations import SEPARATOR_TOKEN
from tests.tui_pilot import (
    OPENING,
    SIZE,
    continue_story,
    expected_continuation,
    new_app,
    open_and_continue,
    run,
    script_model,
    use_sampling,
    wait_for,
    wait_ready,
)


def test_continue_streams_exactly_what_the_generator_writes(tiny_checkpoint):
    settings = use_sampling(seed=7, max_new_tokens=12)
    expected = expected_continuation(OPENING, settings)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await open_and_continue(app, pilot)
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
            assert app.model_state == LOADING and f"│ {LOADING} │" in app.status_text()
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


def test_probability_colours_follow_the_tokens(tiny_checkpoint):
    use_sampling(seed=1, max_new_tokens=6)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await open_and_continue(app, pilot)
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


def test_a_pause_in_typing_encodes_the_story_so_f5_starts_from_the_cache(tiny_checkpoint):
    """While the writer pauses, the context at the cursor is encoded in the background: the
    continuation then reuses every context token and writes exactly what a cold start would."""
    settings = use_sampling(seed=11, max_new_tokens=8)
    story = "The lighthouse keeper climbed the stairs"
    expected = expected_continuation(story + " again", settings)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            app.encode_ahead.idle_seconds = 0.05
            await pilot.press(*story)
            ahead = app.encode_ahead
            await wait_for(pilot, lambda: ahead.encoded_text == story, what="an encode")
            await pilot.press(*" again")  # typing on: the next pause encodes the new words
            await wait_for(pilot, lambda: ahead.encoded_text == story + " again", what="again")
            await app.workers.wait_for_complete()
            # the cache holds the whole context: encoding it again encodes nothing
            assert app.generator.prefill(story + " again", settings) == 0
            await continue_story(app, pilot)
            stats = app.last_stats
            assert stats.reused_tokens == stats.context_tokens > 0
            assert app.editor.text == story + " again" + expected
            assert "tok/s · first " in app.status_text()

    run(scenario())


def test_status_counts_the_tokens_the_model_will_see_and_those_cut(tiny_checkpoint, tmp_path):
    """A story longer than the block: the status bar shows the window a continuation would
    read (the block minus room for new tokens) and how much of the story's start is cut."""
    settings = use_sampling(seed=1, max_new_tokens=20)
    story = tmp_path / "long.txt"
    story.write_text(" ".join(f"word{i}" for i in range(200)))

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            generator = app.generator
            head, before = generator.context_ids(story.read_text())
            window = generator.fit_context(head, before, settings.max_new_tokens)
            seen = len(window.head) + len(window.tail)
            assert seen <= generator.block_size - settings.max_new_tokens < len(before)
            status = app.status_text()
            assert f"ctx {seen}/{generator.block_size}, {len(before) - seen} cut" in status

    run(scenario())


def test_the_status_counts_the_context_the_model_sees_and_the_whole_story(
    tiny_checkpoint, tmp_path
):
    """A story ending in a blank line: the model sees it without the "\\n\\n" (healed), the
    story's own count keeps it wherever the cursor is."""
    story = tmp_path / "blank.txt"
    story.write_text("The lighthouse keeper.\n\n")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=(140, 30)) as pilot:
            await wait_ready(app, pilot)
            tokenizer = app.generator.tokenizer
            total = len(tokenizer.encode(story.read_text()))
            for where in (app.editor.document.end, (0, 3)):
                app.editor.move_cursor(where)
                await pilot.pause()
                assert f"· {total} tokens" in app.status_text()
            app.editor.move_cursor(app.editor.document.end)
            await pilot.pause()
            assert f"ctx {total - 1}/" in app.status_text()  # "\n\n" is one token, taken back

    run(scenario())


def test_typing_while_the_model_writes_stops_it_and_goes_in(tiny_checkpoint):
    use_sampling(seed=11, max_new_tokens=5000)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING, "f5")
            await wait_for(pilot, lambda: len(app.job.variant.tokens) >= 8, what="tokens")
            await pilot.press("X", "y", "enter", "z")
            await wait_for(pilot, lambda: app.job is None, what="stop")
            assert app.last_stats.stopped_by == "cancelled"
            variant = app.continuations.live[-1].variant
            assert app.editor.text == OPENING + variant.text + "Xy\nz"  # none of it lost
            assert "Xy" not in variant.text and not app.editor.read_only
            for _ in range(3):  # the typing is the writer's own edit: undone first, as typing
                if app.editor.text == OPENING + variant.text:
                    break
                await pilot.press("ctrl+z")
            assert app.editor.text == OPENING + variant.text
            await pilot.press("ctrl+z")
            assert app.editor.text == OPENING

            await pilot.press("f5")
            await wait_for(pilot, lambda: len(app.job.variant.tokens) >= 8, what="tokens")
            await pilot.press("backspace")  # a key that edits text already there: stops only
            await wait_for(pilot, lambda: app.job is None, what="stop")
            assert app.editor.text == OPENING + app.continuations.live[-1].variant.text

    run(scenario())


def test_a_long_story_is_counted_off_the_ui_thread(tiny_checkpoint, tmp_path):
    """Encoding a story of megabytes takes a second: the status bar must not do it on every
    keystroke in the UI thread; it shows the counts once a thread has them."""
    import threading

    from storytui.tui.app import COUNT_IN_THREAD_CHARS

    story = tmp_path / "long.txt"
    paragraph = "The keeper climbed the stairs and lit the lamp again.\n\n"
    story.write_text(paragraph * (COUNT_IN_THREAD_CHARS // len(paragraph) + 50))

    async def scenario():
        app = new_app(story)
        counted_in = []
        real_count = app._count

        def count(*inputs):
            counted_in.append(threading.current_thread() is threading.main_thread())
            return real_count(*inputs)

        app._count = count
        async with app.run_test(size=(140, 30)) as pilot:
            await wait_ready(app, pilot)
            total = len(app.generator.tokenizer.encode(story.read_text()))
            app.editor.move_cursor((10, 0))
            await wait_for(pilot, lambda: f"· {total} tokens" in app.status_text(), what="count")
            await pilot.press("X")
            await wait_for(pilot, lambda: f"· {total + 1} tokens" in app.status_text(), what="+1")
            assert counted_in and not any(counted_in)

    run(scenario())


MID_STORY = ("She opened the door ", "and stepped out.")  # the cursor goes between the two


async def type_around_cursor(pilot, before: str, after: str) -> None:
    """Type ``before + after`` and put the cursor between them."""
    await pilot.press(*before, *after, *["left"] * len(after))


def test_a_continuation_in_mid_paragraph_ends_with_a_space_before_the_next_word(tiny_checkpoint):
    """The model's last word must not run into the story's next one: the space between them
    is the continuation's own, so retry, the alternatives and undo take it along."""
    before, after = MID_STORY
    settings = use_sampling(seed=7, max_new_tokens=6)
    expected = expected_continuation(before, settings)
    assert not expected[-1].isspace() and not expected.startswith(" ")

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await type_around_cursor(pilot, before, after)
            await continue_story(app, pilot)
            continuation = app.continuations.live[-1]
            first = before + expected + " " + after
            assert app.editor.text == first
            assert continuation.text == expected + " "
            assert app.editor.cursor_index == continuation.end == len(before + expected + " ")
            assert [(m.start, m.end) for m in app.editor.marks] == [(len(before), continuation.end)]
            await pilot.press("ctrl+z")  # the space goes with the continuation
            assert app.editor.text == before + after and not app.continuations.live
            await pilot.press("ctrl+y")
            assert app.editor.text == first

            app.sampling = app.sampling.with_changes(seed=8)
            await continue_story(app, pilot, key="ctrl+r")
            second = continuation.text
            assert second != expected + " " and second[-1].isspace()
            assert app.editor.text == before + second + after
            await pilot.press("f3")
            assert app.editor.text == first
            await pilot.press("f4")
            assert app.editor.text == before + second + after
            await pilot.press("ctrl+z")
            assert app.editor.text == before + after

    run(scenario())


def test_stopping_in_mid_paragraph_leaves_a_space_before_the_next_word(tiny_checkpoint):
    before, after = MID_STORY
    use_sampling(seed=11, max_new_tokens=5000)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await type_around_cursor(pilot, before, after)
            await pilot.press("f5")
            await wait_for(pilot, lambda: len(app.job.variant.tokens) >= 8, what="tokens")
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.job is None, what="stop")
            continuation = app.continuations.live[-1]
            assert app.editor.text == before + continuation.text + after
            assert continuation.text[-1].isspace()
            assert "".join(t.text for t in continuation.variant.tokens) == continuation.text

    run(scenario())


def test_typing_ahead_in_mid_paragraph_follows_the_models_last_word(tiny_checkpoint):
    """What the writer typed while the model wrote continues its words: no space between."""
    before, after = MID_STORY
    use_sampling(seed=11, max_new_tokens=5000)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await type_around_cursor(pilot, before, after)
            await pilot.press("f5")
            await wait_for(pilot, lambda: len(app.job.variant.tokens) >= 8, what="tokens")
            await pilot.press(*"ly ")
            await wait_for(pilot, lambda: app.job is None, what="stop")
            continuation = app.continuations.live[-1]
            assert app.editor.text == before + continuation.text + "ly " + after
            assert continuation.variant.tokens[-1].token != SEPARATOR_TOKEN

    run(scenario())


def test_a_continuation_at_a_line_start_neither_indents_nor_runs_into_the_line(tiny_checkpoint):
    """The tiny model likes to indent after a line break: the spaces it starts with go."""
    before, after = "The keeper slept.\n", "Morning came."
    settings = use_sampling(seed=1, max_new_tokens=6)
    expected = expected_continuation(before, settings)
    assert expected.startswith("  ") and not expected[-1].isspace()

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*before[:-1], "enter", *after, "home")
            await continue_story(app, pilot)
            assert app.editor.text == before + expected.lstrip(" ") + " " + after
            tokens = app.continuations.live[-1].variant.tokens
            assert "".join(t.text for t in tokens) == expected.lstrip(" ") + " "

    run(scenario())


def test_spaces_are_never_doubled_and_punctuation_stays_on_its_word(tiny_checkpoint, monkeypatch):
    """A model without token healing starts with the space the story already has; a
    continuation that ends before punctuation or a space gets no space of its own."""
    use_sampling(seed=1, max_new_tokens=8)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            contexts = script_model(app, monkeypatch, [" into", " the", " hallway"])
            await type_around_cursor(pilot, "She opened the door ", "and left.")
            await continue_story(app, pilot)
            assert contexts == ["She opened the door "]
            assert app.editor.text == "She opened the door into the hallway and left."
            await pilot.press("ctrl+z", "end", "left")  # before the full stop
            await continue_story(app, pilot)
            assert app.editor.text == "She opened the door and left into the hallway."
            await pilot.press("ctrl+z", "ctrl+home")  # the story's start: no leading space
            await continue_story(app, pilot)
            assert app.editor.text == "into the hallway She opened the door and left."
            script_model(app, monkeypatch, [" wide", " open "])
            await pilot.press("ctrl+z", "ctrl+home", *["right"] * len("She opened the door"))
            await continue_story(app, pilot)
            assert app.editor.text == "She opened the door wide open and left."

    run(scenario())


MARK_KINDS = ("prob-high", "prob-mid", "prob-low", "prob-rare")


def _text_styles(app) -> dict[str, tuple]:
    """Each probability mark's text attributes (what survives NO_COLOR), by kind."""
    styles = {}
    for kind in MARK_KINDS:
        style = app.editor.get_component_rich_style(f"story-editor--{kind}")
        styles[kind] = (bool(style.bold), bool(style.underline), bool(style.reverse))
    return styles


def _shown_legend(app) -> str:
    return [n.message for n in app._notifications if n.message.startswith("token ")][-1]


def test_without_colour_the_probability_marks_are_text_styles_the_legend_names(
    tiny_checkpoint, monkeypatch
):
    """NO_COLOR turns Textual's colours into greys: the four odds are told apart by text
    styles instead, and the legend names those, not colours that are not on screen."""
    monkeypatch.setenv("NO_COLOR", "1")
    use_sampling(seed=1, max_new_tokens=6)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            assert app.no_color
            await open_and_continue(app, pilot)
            await pilot.press("f8")
            styles = _text_styles(app)
            assert styles == {
                "prob-high": (False, False, False),
                "prob-mid": (False, True, False),
                "prob-low": (True, True, False),
                "prob-rare": (False, False, True),
            }
            legend = _shown_legend(app)
            assert legend == (
                "token marks: plain ≥60%, underlined ≥30%, bold underlined ≥10%, "
                "reversed <10% likely"
            )
            assert not {"green", "yellow", "orange", "red"} & set(legend.replace(",", "").split())
            rare = next(m for m in app.editor.marks if m.kind == "prob-rare")  # a random model
            line = app.editor.get_line(0)
            assert any(span.style.reverse and span.start == rare.start for span in line.spans)

    run(scenario())


def test_in_colour_the_probability_marks_are_tints_the_legend_names(tiny_checkpoint):
    use_sampling(seed=1, max_new_tokens=6)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            assert not app.no_color
            await open_and_continue(app, pilot)
            await pilot.press("f8")
            assert set(_text_styles(app).values()) == {(False, False, False)}
            backgrounds = {
                app.editor.get_component_rich_style(f"story-editor--{kind}").bgcolor
                for kind in MARK_KINDS
            }
            assert len(backgrounds) == len(MARK_KINDS)
            assert _shown_legend(app) == (
                "token colours: green ≥60%, yellow ≥30%, orange ≥10%, red <10% likely"
            )

    run(scenario())


def test_a_continuation_stopped_before_its_first_token_shows_no_speed(tiny_checkpoint):
    """Typing right after F5 or ctrl+r stops the model before any token: there is no speed
    or first-token wait to show, only the words (not '0.0 tok/s · first 0 ms')."""
    from dataclasses import replace

    use_sampling(seed=1, max_new_tokens=3)

    async def scenario():
        app = new_app()
        async with app.run_test(size=(200, 30)) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*"Once")
            await continue_story(app, pilot)
            assert "tok/s · first " in app.status_text()
            app.last_stats = replace(app.last_stats, new_tokens=0, decode_seconds=0.0)
            assert "tok/s" not in app.status_text() and "words" in app.status_text()

    run(scenario())


def test_the_status_says_when_the_end_of_the_prompt_does_not_reach_the_model(tiny_checkpoint):
    """The CLI warns when --prompt is cut to fit; the app says it in the status bar."""

    async def scenario():
        app = new_app()
        async with app.run_test(size=(160, 30)) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*"Once")
            assert "end of prompt" not in app.status_text()
            await pilot.press("f2")
            prompt = app.query_one("#prompt")
            prompt.value = " ".join(f"premise{i}" for i in range(400))
            await wait_for(pilot, lambda: app.prompt == prompt.value)
            assert app.generator.conditioning_cut(app.prompt, "") == ["prompt"]
            await wait_for(pilot, lambda: "end of prompt cut" in app.status_text())
            prompt.value = "A short premise"
            await wait_for(pilot, lambda: "end of prompt" not in app.status_text())

    run(scenario())
