"""Retry, alternatives, token alternatives and undo of whole continuations.

Driven through Textual's pilot with a tiny random model.
"""

from __future__ import annotations

from storytui.tui.dialogs import TokenAlternatives
from tests.tui_pilot import (
    OPENING,
    SIZE,
    continue_story,
    expected_continuation,
    new_app,
    open_and_continue,
    run,
    screen_lines,
    script_model,
    type_and_continue,
    use_sampling,
    wait_for,
    wait_ready,
)


def test_retry_keeps_alternatives_and_cycles_through_them(tiny_checkpoint):
    use_sampling(max_new_tokens=10)  # seed None: every retry draws a new seed

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await open_and_continue(app, pilot)
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
            await open_and_continue(app, pilot)
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
            marks = app.editor.marks
            await pilot.press("x")
            assert not app.continuations.live and app.editor.marks == []
            await pilot.press("ctrl+z")  # its text back: marked again, retry works on it
            await pilot.pause()
            assert app.continuations.live == [continuation] and app.editor.marks == marks
            assert app.editor.text[continuation.start :] == continuation.text

    run(scenario())


def test_token_alternatives_replace_the_text_and_continue(tiny_checkpoint):
    settings = use_sampling(seed=13, max_new_tokens=10)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await open_and_continue(app, pilot)
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


def test_part_of_a_character_is_never_offered_as_an_alternative(tiny_checkpoint):
    """A byte of an emoji decodes to U+FFFD on its own: picking it would write that into the
    story, so F9 offers only alternatives that are text by themselves."""
    import dataclasses

    from storytui.generation import Alternative

    use_sampling(seed=13, max_new_tokens=10)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await open_and_continue(app, pilot)
            continuation = app.continuations.live[-1]
            tokens = continuation.variant.tokens
            index, token = next((i, t) for i, t in enumerate(tokens) if i >= 2 and t.text)
            byte = app.generator.tokenizer.encoding.encode_single_token(b"\xf0")
            clean = token.alternatives[1]
            offered = (Alternative(byte, "\ufffd", 0.5), clean)
            tokens[index] = dataclasses.replace(token, alternatives=offered)
            app.editor.move_cursor(app.editor.location_of(continuation.start + token.start))
            await pilot.press("f9")
            await wait_for(pilot, lambda: isinstance(app.screen, TokenAlternatives))
            options = app.screen.query_one("#alternatives")
            assert options.option_count == 1 and "\ufffd" not in str(
                options.get_option_at_index(0).prompt
            )
            await pilot.press("enter")
            await wait_for(pilot, lambda: app.job is None and len(continuation.variants) == 2)
            assert continuation.variant.tokens[index].text == clean.text
            assert "\ufffd" not in app.editor.text

    run(scenario())


def test_undoing_a_paste_that_brought_the_scrollbar_keeps_working(storytui_home, tmp_path):
    story = tmp_path / "short.txt"
    story.write_text("line\n" * 5)

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=(40, 14)) as pilot:
            app.copy_to_clipboard("\n".join(["x"] * 30))
            await pilot.press("ctrl+v")
            assert app.editor.text.count("\n") == 34
            await pilot.press("ctrl+z")
            await pilot.pause()
            assert app.editor.text == "line\n" * 5 and app.is_running

    run(scenario())


def test_redo_brings_a_continuation_back_with_its_alternatives_past_other_steps(
    tiny_checkpoint, tmp_path
):
    use_sampling(max_new_tokens=8)  # seed None: the retry writes a different alternative
    story = tmp_path / "story.txt"
    story.write_text(OPENING)

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*" away")
            await continue_story(app, pilot)
            first = app.editor.text
            await continue_story(app, pilot, key="ctrl+r")
            second = app.editor.text
            continuation = app.continuations.live[-1]
            assert second != first and "alt 2/2" in app.status_text()

            async def step(key: str, text: str) -> None:
                await pilot.press(key)
                await pilot.pause()
                assert app.editor.text == text

            def restored() -> None:
                assert app.continuations.live == [continuation]
                assert continuation.start == len(OPENING + " away")
                assert [(m.start, m.end) for m in app.editor.marks] == [
                    (continuation.start, len(second))
                ]
                assert "alt 2/2" in app.status_text()

            await step("ctrl+z", OPENING + " away")
            await step("ctrl+z", OPENING)
            await step("ctrl+y", OPENING + " away")
            await step("ctrl+y", second)
            restored()
            # undo 2, redo 1, undo 1, redo 2
            await step("ctrl+z", OPENING + " away")
            await step("ctrl+z", OPENING)
            await step("ctrl+y", OPENING + " away")
            await step("ctrl+z", OPENING)
            await step("ctrl+y", OPENING + " away")
            await step("ctrl+y", second)
            restored()
            await step("f3", first)  # the alternatives work again
            await step("f4", second)
            # typing after an undo drops what could be redone
            await step("ctrl+z", OPENING + " away")
            await step("ctrl+z", OPENING)
            await step("!", OPENING + "!")
            await step("ctrl+y", OPENING + "!")
            assert not app.continuations.live and not app.continuations.undone

    run(scenario())


def test_retry_and_alternatives_act_only_on_the_continuation_at_the_cursor(tiny_checkpoint):
    use_sampling(max_new_tokens=10)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await open_and_continue(app, pilot)
            await continue_story(app, pilot, key="ctrl+r")
            text = app.editor.text
            app.editor.move_cursor((0, 0))  # far from the continuation
            for key in ("ctrl+r", "f3", "f4"):
                await pilot.press(key)
                await pilot.pause()
                assert app.job is None and app.editor.text == text
                assert app.editor.cursor_location == (0, 0)
            messages = [n.message for n in app._notifications]
            assert any("put the cursor in a continuation first" in m for m in messages)
            assert "alt " not in app.status_text()  # the status speaks of the cursor's spot
            app.editor.move_cursor(app.editor.document.end)
            await pilot.pause()
            assert "alt 2/2" in app.status_text()

    run(scenario())


def test_alternatives_of_a_retry_made_after_an_edit_elsewhere_swap_in_place(
    tiny_checkpoint, monkeypatch
):
    """After an edit elsewhere the retry's undo step replaces the old variant instead of
    inserting; cycling takes that step back to the old variant, not to nothing."""

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await type_and_continue(app, pilot, monkeypatch)
            await pilot.press("home", "x")  # the continuation's undo step is no longer on top
            app.editor.move_cursor(app.editor.location_of(15))
            script_model(app, monkeypatch, [" She", " woke."])
            await continue_story(app, pilot, key="ctrl+r")
            assert app.editor.text == "xAnna ran. She woke."
            await pilot.press("f3")
            assert app.editor.text == "xAnna ran. She slept."
            await pilot.press("f4")
            assert app.editor.text == "xAnna ran. She woke."
            await pilot.press("ctrl+z")  # the retry, then the typing
            assert app.editor.text == "xAnna ran. She slept."
            assert app.continuations.live[-1].current == 0 and "alt 1/2" in app.status_text()
            await pilot.press("ctrl+z")
            assert app.editor.text == "Anna ran. She slept."

    run(scenario())


def test_redo_after_cycling_back_past_a_retry_made_after_an_edit_elsewhere(
    tiny_checkpoint, monkeypatch
):
    """F3 back to the alternative that such a retry replaced takes the retry's step out of
    the history; ctrl+y puts it back: the retry's alternative shows, still marked."""

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await type_and_continue(app, pilot, monkeypatch)
            await pilot.press("home", "x", "end")
            script_model(app, monkeypatch, [" She", " woke."])
            await continue_story(app, pilot, key="ctrl+r")
            continuation = app.continuations.live[-1]
            await pilot.press("f3")
            assert app.editor.text == "xAnna ran. She slept."
            await pilot.press("ctrl+y")
            assert app.editor.text == "xAnna ran. She woke."
            assert app.continuations.live == [continuation] and continuation.current == 1
            assert [(m.start, m.end) for m in app.editor.marks] == [(10, 20)]
            await pilot.press("f3")
            assert app.editor.text == "xAnna ran. She slept."
            await pilot.press("ctrl+z")  # the typing; the first continuation is in the story
            assert app.editor.text == "Anna ran. She slept." and continuation.current == 0
            await pilot.press("ctrl+z")
            assert app.editor.text == "Anna ran." and not app.continuations.live

    run(scenario())


def test_undoing_a_pick_made_after_an_edit_elsewhere_keeps_the_alternatives(
    tiny_checkpoint, monkeypatch
):
    """F3/F4 after an edit elsewhere swap one alternative for another in one undo step; ctrl+z
    takes back just that step (the other alternative shows again, still marked, F3/F4 still
    cycle) and ctrl+y puts it back, past the typing and the whole continuation."""

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await type_and_continue(app, pilot, monkeypatch)
            script_model(app, monkeypatch, [" She", " woke."])
            await continue_story(app, pilot, key="ctrl+r")
            continuation = app.continuations.live[-1]

            async def step(*keys: str, text: str, shown: int | None) -> None:
                await pilot.press(*keys)
                await pilot.pause()
                assert app.editor.text == text
                if shown is None:
                    assert not app.continuations.live and app.editor.marks == []
                    return
                assert app.continuations.live == [continuation]
                assert continuation.current == shown and len(continuation.variants) == 2
                start = text.index(" She")
                assert [(m.start, m.end) for m in app.editor.marks] == [(start, len(text))]

            slept, woke = "xAnna ran. She slept.", "xAnna ran. She woke."
            await step("f3", "ctrl+home", "x", text=slept, shown=0)  # a pick, then an edit
            await step("ctrl+z", text=slept[1:], shown=0)  # just the edit
            await step("ctrl+y", text=slept, shown=0)
            await step("ctrl+end", "f4", text=woke, shown=1)  # a pick after the edit
            await step("ctrl+z", text=slept, shown=0)
            assert "alt 1/2" in app.status_text()
            await step("f4", text=woke, shown=1)  # the alternatives still cycle
            await step("ctrl+z", text=slept, shown=0)
            await step("ctrl+y", text=woke, shown=1)
            await step("ctrl+z", "ctrl+z", text=slept[1:], shown=0)
            await step("ctrl+z", text="Anna ran.", shown=None)
            await step("ctrl+y", "ctrl+y", text=slept, shown=0)
            await step("ctrl+y", text=woke, shown=1)
            await step("ctrl+end", "f3", text=slept, shown=0)

    run(scenario())


def test_the_status_names_the_model_that_writes_while_another_loads(tiny_checkpoint):
    from storytui.tui.app import LOADING

    use_sampling(seed=3, max_new_tokens=5000)

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING, "f5")
            await wait_for(pilot, lambda: app.job is not None, what="job")
            app.model_state = LOADING  # as while a model picked with ctrl+l loads
            status = app.status_text()
            assert "tiny-test · writing…" in status and f"next: {LOADING}" in status
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.job is None, what="stop")

    run(scenario())


def test_retry_alternatives_keep_and_tokens_say_why_with_no_continuation(tiny_checkpoint):
    """With no continuation marked the footer leaves these keys out, but each still answers,
    from its key and from the palette: why it cannot act, and what to do instead."""
    from textual.command import CommandPalette

    use_sampling(seed=3, max_new_tokens=5000)
    hint = "press F5 to continue the story"
    answers = {
        "ctrl+r": f"nothing to retry: {hint}",
        "f3": f"no alternatives to show: {hint}",
        "f4": f"no alternatives to show: {hint}",
        "alt+left": f"no alternatives to show: {hint}",
        "ctrl+t": f"nothing to keep: {hint}",
        "f9": f"no generated text: {hint}",
    }

    async def scenario():
        app = new_app()
        async with app.run_test(size=(160, 30)) as pilot:
            await wait_ready(app, pilot)
            await pilot.press(*OPENING)
            footer = screen_lines(app)[-1]
            assert "F5 Continue" in footer
            assert not any(k in footer for k in ("Retry", "Prev alt", "Next alt", "Keep", "Tokens"))

            async def answer(*keys: str) -> str:
                app.clear_notifications()
                await pilot.press(*keys)
                await wait_for(pilot, lambda: app._notifications, what=f"{keys}'s answer")
                assert app.editor.text == OPENING and app.job is None
                (notification,) = app._notifications
                assert notification.severity == "warning"
                return notification.message

            for key, expected in answers.items():
                assert await answer(key) == expected, key
            await pilot.press("ctrl+p")
            await wait_for(pilot, lambda: isinstance(app.screen, CommandPalette), what="palette")
            assert await answer(*"Retry", "enter") == answers["ctrl+r"]
            await pilot.press("f5")  # while the model writes, they say so instead
            await wait_for(pilot, lambda: app.job is not None, what="job")
            for key in ("ctrl+r", "f3", "ctrl+t", "f9"):
                app.clear_notifications()
                await pilot.press(key)
                await wait_for(pilot, lambda: app._notifications, what=f"{key}'s answer")
                assert [n.message for n in app._notifications] == ["stop the model first (Esc)"]
            await pilot.press("escape")
            await wait_for(pilot, lambda: app.job is None, what="stop")

    run(scenario())


def test_with_no_model_the_keys_that_need_a_continuation_do_not_point_to_f5():
    """F5 cannot work without a model, so retry and the others name what is missing."""

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            assert app.generator is None
            for key, nothing in (("ctrl+r", "nothing to retry"), ("f3", "no alternatives to show")):
                app.clear_notifications()
                await pilot.press(key)
                await wait_for(pilot, lambda: app._notifications, what=f"{key}'s answer")
                (notification,) = app._notifications
                assert notification.message.startswith(f"{nothing}, and no model yet: train one")
                assert "F5" not in notification.message

    run(scenario())


def test_a_retry_that_writes_nothing_adds_no_empty_alternative(tiny_checkpoint, monkeypatch):
    """Stopped before its first token (or a model that ends at once), a retry leaves the
    continuation as it was: no `alt 2/2` that shows nothing, and one undo still removes it."""

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await type_and_continue(app, pilot, monkeypatch)
            shown, marks = app.editor.text, app.editor.marks
            continuation = app.continuations.live[-1]
            script_model(app, monkeypatch, [])
            await continue_story(app, pilot, key="ctrl+r")
            assert app.editor.text == shown and app.editor.marks == marks
            assert len(continuation.variants) == 1 and continuation.current == 0
            assert "alt " not in app.status_text()
            await pilot.press("ctrl+z")
            assert app.editor.text == "Anna ran." and not app.continuations.live
            await pilot.press("ctrl+y")
            assert app.editor.text == shown and app.continuations.live == [continuation]

    run(scenario())
