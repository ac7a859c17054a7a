"""What a keystroke in the story costs: no footer recompose and no new timer per key.

A paste the terminal does not bracket arrives as one key event per character, so whatever a key
costs, a long paste costs that many times over. Driven through Textual's pilot, no model.
"""

from __future__ import annotations

import time

import pytest
from textual import events
from textual.timer import Timer

from storytui.tui.encode_ahead import EncodeAhead
from storytui.tui.find_bar import RECOUNT_SECONDS, FindBar
from storytui.tui.footer import StoryFooter
from tests.tui_pilot import SIZE, new_app, run, wait_for, wait_ready

WORDS = "the keeper lit the lamp "


def typed(count: int) -> str:
    return (WORDS * (count // len(WORDS) + 1))[:count]


async def paste_as_keys(app, pilot, text: str) -> None:
    """Deliver ``text`` as one key event per character, all at once, as a terminal does with
    a paste it does not bracket; return once the editor holds it and the app is idle."""
    before = len(app.editor.text)
    for character in text:
        event = events.Key("space" if character == " " else character, character)
        event.set_sender(app)
        app._driver.send_message(event)
    await wait_for(pilot, lambda: len(app.editor.text) == before + len(text), what="the paste")
    await pilot.pause()


@pytest.fixture
def counts(monkeypatch) -> dict[str, int]:
    """Footer recomposes and timers made, counted from when the test resets them."""
    counted = {"recomposes": 0, "timers": 0}
    recompose, timer_init = StoryFooter.recompose, Timer.__init__

    async def counting_recompose(self) -> None:
        counted["recomposes"] += 1
        await recompose(self)

    def counting_init(self, *args, **kwargs) -> None:
        counted["timers"] += 1
        timer_init(self, *args, **kwargs)

    monkeypatch.setattr(StoryFooter, "recompose", counting_recompose)
    monkeypatch.setattr(Timer, "__init__", counting_init)
    return counted


def count_refreshes(app, monkeypatch) -> list[float]:
    calls: list[float] = []
    refresh = app.refresh_bindings

    def counting() -> None:
        calls.append(time.monotonic())
        refresh()

    monkeypatch.setattr(app, "refresh_bindings", counting)
    return calls


@pytest.mark.parametrize("count", [200, 2000])
def test_a_long_paste_as_keys_refreshes_no_bindings_and_makes_no_timer_per_key(
    count, counts, monkeypatch
):
    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.pause(0.1)
            refreshes = count_refreshes(app, monkeypatch)
            counts.update(recomposes=0, timers=0)
            await paste_as_keys(app, pilot, typed(count))
            assert app.editor.text == typed(count)
            assert len(refreshes) <= 1, f"{len(refreshes)} binding refreshes for {count} keys"
            assert counts["recomposes"] <= 2, f"{counts['recomposes']} footer recomposes"
            assert counts["timers"] <= 6, f"{counts['timers']} timers for {count} keys"

    run(scenario())


def test_typing_key_by_key_recomposes_the_footer_only_when_its_keys_change(counts, monkeypatch):
    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.pause(0.1)
            refreshes = count_refreshes(app, monkeypatch)
            counts.update(recomposes=0, timers=0)
            await pilot.press(*"Anna ran to the shore")
            assert len(refreshes) <= 1, f"{len(refreshes)} binding refreshes for 21 keys"
            assert counts["recomposes"] <= 2, f"{counts['recomposes']} footer recomposes"

    run(scenario())


def record_calls(monkeypatch, cls, name: str) -> list[float]:
    """When each call of ``cls.name`` began (the method still runs)."""
    calls: list[float] = []
    method = getattr(cls, name)

    def recording(self) -> None:
        calls.append(time.monotonic())
        method(self)

    monkeypatch.setattr(cls, name, recording)
    return calls


def test_the_find_bar_recounts_once_after_the_story_is_still(counts, monkeypatch):
    recounts = record_calls(monkeypatch, FindBar, "_recount")
    changes = record_calls(monkeypatch, FindBar, "story_changed")

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            await pilot.press("ctrl+f", *"lamp")
            bar = app.find_bar
            app.screen.set_focus(app.editor)  # the bar stays open
            await pilot.pause(RECOUNT_SECONDS + 0.1)
            counts.update(timers=0)
            recounts.clear()
            changes.clear()
            text = typed(1000)
            await paste_as_keys(app, pilot, text)
            assert bar.is_open and len(changes) == len(text)
            assert counts["timers"] <= 6, f"{counts['timers']} timers for {len(text)} keys"
            await wait_for(pilot, lambda: recounts, what="a recount")
            await pilot.pause(RECOUNT_SECONDS)
            assert len(recounts) == 1
            assert recounts[0] >= changes[-1] + RECOUNT_SECONDS - 0.01
            assert bar.count_text == f"{text.count('lamp')} matches"

    run(scenario())


def test_encode_ahead_starts_once_the_idle_time_after_the_last_key(monkeypatch):
    starts = record_calls(monkeypatch, EncodeAhead, "_start")
    scheduled = record_calls(monkeypatch, EncodeAhead, "schedule")

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            await wait_ready(app, pilot)
            idle = app.encode_ahead.idle_seconds = 0.3
            await pilot.pause(idle + 0.2)
            starts.clear()
            scheduled.clear()
            began = time.monotonic()
            for key in "Anna ran":  # each key well inside the idle time of the one before
                await pilot.press(key)
                await pilot.pause(0.05)
            assert time.monotonic() - began > idle  # longer than one idle time in all
            assert starts == []
            await wait_for(pilot, lambda: starts, what="an encode")
            await pilot.pause(idle)
            assert len(starts) == 1 and starts[0] >= scheduled[-1] + idle - 0.01

    run(scenario())


def test_debounce_moves_its_deadline_fires_once_and_cancels(monkeypatch):
    from storytui.tui.debounce import Debounce

    async def scenario():
        app = new_app()
        async with app.run_test(size=SIZE) as pilot:
            fired: list[float] = []
            made: list[float] = []
            set_timer = app.set_timer

            def counting_set_timer(delay, callback):
                made.append(delay)
                return set_timer(delay, callback)

            monkeypatch.setattr(app, "set_timer", counting_set_timer)
            debounce = Debounce(app, lambda: fired.append(time.monotonic()))
            first_poke = time.monotonic()
            while time.monotonic() - first_poke < 1.5:  # poked on, well before each deadline
                debounce.poke(0.5)
                last_poke = time.monotonic()
                await pilot.pause(0.05)
            assert fired == [] and debounce.pending
            await wait_for(pilot, lambda: fired, what="the callback")
            await pilot.pause(0.3)
            assert len(fired) == 1 and fired[0] >= last_poke + 0.5 - 0.01
            assert not debounce.pending
            assert len(made) <= 6  # one, re-armed about once a delay: not one per poke

            debounce.poke(0.1)
            debounce.cancel()
            assert not debounce.pending
            await pilot.pause(0.3)
            assert len(fired) == 1  # cancelled: no call

            debounce.poke(0.1)  # usable again after firing and cancelling
            await wait_for(pilot, lambda: len(fired) == 2, what="the callback again")

    run(scenario())
