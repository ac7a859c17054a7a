"""Helpers for driving the app with Textual's pilot in tests."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from storytui.sampling import SamplingSettings
from storytui.session import load_generator
from storytui.tui.app import LOADING, StoryApp
from storytui.tui.continuations import normalize_newlines
from storytui.tui.settings_store import AppSettings, save_settings

SIZE = (100, 30)
OPENING = "The lighthouse keeper"  # what the scenarios type before asking for a continuation


def run(coroutine) -> None:
    asyncio.run(coroutine)


def use_sampling(**changes) -> SamplingSettings:
    """Save sampling settings for the next app, as a writer's earlier session would have."""
    settings = SamplingSettings(**changes).validate()
    save_settings(AppSettings(sampling=settings.to_json(), preset="custom"))
    return settings


def expected_continuation(context: str, settings: SamplingSettings, **kwargs) -> str:
    """What the tiny model writes for ``context``, as the editor stores it."""
    return normalize_newlines(load_generator("tiny-test").generate(context, settings, **kwargs))


async def wait_for(
    pilot, predicate: Callable[[], bool], timeout: float = 60, what: str = ""
) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what or predicate}")
        await pilot.pause(0.02)


async def wait_ready(app: StoryApp, pilot) -> None:
    await wait_for(
        pilot, lambda: app.model_state != LOADING and app.sampling is not None, what="model"
    )


async def continue_story(app: StoryApp, pilot, key: str = "f5") -> None:
    """Press ``key`` and wait until the continuation is finished and recorded."""
    before = app.last_stats
    await pilot.press(key)
    await wait_for(
        pilot, lambda: app.last_stats is not before and app.job is None, what="continuation"
    )
    await pilot.pause()


async def open_and_continue(app: StoryApp, pilot) -> None:
    """How most scenarios start: the model ready, ``OPENING`` typed, one continuation."""
    await wait_ready(app, pilot)
    await pilot.press(*OPENING)
    await continue_story(app, pilot)


def script_model(app: StoryApp, monkeypatch, pieces: list[str]) -> list[str]:
    """Make the loaded model write exactly ``pieces`` (one token each, no token healing), as a
    model without healing would; returns the list of contexts it was asked to continue."""
    from storytui.generation import TokenEvent

    contexts: list[str] = []

    def stream_events(text, settings, **_kwargs):
        contexts.append(text)
        for token, piece in enumerate(pieces):
            yield TokenEvent(token=token, text=piece, prob=0.5)

    monkeypatch.setattr(app.generator, "stream_events", stream_events)
    return contexts


async def type_and_continue(
    app: StoryApp, pilot, monkeypatch, typed: str = "Anna ran.", pieces=(" She", " slept.")
) -> None:
    """Type ``typed`` into the story and let the scripted model continue it with ``pieces``."""
    await pilot.press(*typed)
    script_model(app, monkeypatch, list(pieces))
    await continue_story(app, pilot)


def burst(app: StoryApp, keys: list[str]) -> None:
    """Deliver ``keys`` at once, as a terminal does when they come faster than the app handles
    them (``pilot.press`` waits for each key to be handled before sending the next)."""
    from textual import events

    for key in keys:
        event = events.Key(key, key if len(key) == 1 else None)
        event.set_sender(app)
        app._driver.send_message(event)


def new_app(file=None) -> StoryApp:
    return StoryApp(file, cursor_blink=False)


def screen_lines(app: StoryApp) -> list[str]:
    """The screen as the terminal would show it, one string per row."""
    return [strip.text for strip in app.screen._compositor.render_strips()]


def text_in(app: StoryApp, widget) -> str:
    """What the screen shows inside ``widget``'s region, rows joined by spaces."""
    region = widget.region
    rows = screen_lines(app)[region.y : region.bottom]
    return " ".join(row[region.x : region.right].strip() for row in rows)
