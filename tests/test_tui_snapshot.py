"""Pictures of the main screens (pytest-textual-snapshot); update with --snapshot-update.

Everything on screen is fixed: the terminal size, the story, the model (tiny, seeded, fp32), no
clock and no blinking cursor. The one measured number, tokens per second, is pinned before the shot.
"""

from __future__ import annotations

import dataclasses

from tests.tui_pilot import continue_story, new_app, use_sampling, wait_ready

SIZE = (100, 28)
STORY = (
    "The lighthouse keeper had not seen a ship in eleven years. Every night she lit the lamp "
    "anyway, polished the brass, and wrote the weather in a book nobody would read.\n\n"
    "On the twelfth winter, a light answered hers."
)


def story_file(tmp_path):
    path = tmp_path / "lighthouse.txt"
    path.write_text(STORY)
    return path


def test_main_screen(snap_compare, tiny_checkpoint, tmp_path):
    app = new_app(story_file(tmp_path))

    async def ready(pilot):
        await wait_ready(app, pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)


def test_panel_with_sampling_settings(snap_compare, tiny_checkpoint, tmp_path):
    app = new_app(story_file(tmp_path))

    async def open_panel(pilot):
        await wait_ready(app, pilot)
        await pilot.press("f2")

    assert snap_compare(app, terminal_size=SIZE, run_before=open_panel)


def test_after_a_continuation(snap_compare, tiny_checkpoint, tmp_path):
    use_sampling(seed=42, max_new_tokens=24)
    app = new_app(story_file(tmp_path))

    async def write(pilot):
        await wait_ready(app, pilot)
        await continue_story(app, pilot)
        app.last_stats = dataclasses.replace(
            app.last_stats, new_tokens=25, decode_seconds=1.0, first_token_seconds=0.004
        )  # timings vary from run to run; the snapshot shows fixed ones
        app._refresh_status()

    assert snap_compare(app, terminal_size=SIZE, run_before=write)


def test_no_model(snap_compare, tmp_path):
    app = new_app(story_file(tmp_path))

    async def ready(pilot):
        await wait_ready(app, pilot)

    assert snap_compare(app, terminal_size=SIZE, run_before=ready)
