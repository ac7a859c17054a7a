"""The status bar in a terminal too narrow for all of it: whole parts, and a long file name
that gives up its middle before the file's saved/modified state goes out of view."""

from __future__ import annotations

from rich.cells import cell_len

from storytui.tui.status_line import StatusPart, fit_parts, shorten_name
from tests.tui_pilot import new_app, run, wait_for, wait_ready

NAME = "a_really_quite_long_story_file_name_for_testing_the_status_bar.txt"


def test_parts_that_do_not_fit_are_left_out_whole_least_important_first():
    parts = [
        StatusPart("tale.txt · saved", 0),
        StatusPart("12.0 tok/s", 6),
        StatusPart("alt 1/2", 2),
    ]
    assert fit_parts(parts, 200) == "tale.txt · saved │ 12.0 tok/s │ alt 1/2"
    assert fit_parts(parts, 30) == "tale.txt · saved │ alt 1/2"
    assert fit_parts(parts, 20) == "tale.txt · saved"


def test_a_long_file_name_loses_its_middle_and_keeps_its_state():
    text = f"{NAME} · modified"
    for width in (40, 50, 60):
        short = shorten_name(text, width)
        assert cell_len(short) == width, (width, short)
        assert short.endswith(".txt · modified") and short.startswith("a_really")
        assert "…" in short
    assert shorten_name(text, 200) == text  # fits: untouched
    assert shorten_name(text, 15) == text  # no room for a useful name: the stylesheet cuts it
    assert shorten_name("loading model…" * 9, 40) == "loading model…" * 9  # no state to keep


def test_the_app_shows_a_long_name_s_state_in_a_narrow_terminal(tmp_path):
    story = tmp_path / NAME
    story.write_text("Once upon a time.\n", encoding="utf-8")

    async def scenario():
        app = new_app(story)
        async with app.run_test(size=(50, 20)) as pilot:
            await wait_ready(app, pilot)
            status = app.query_one("#status")
            await pilot.press("x")
            await wait_for(pilot, lambda: "modified" in str(status.render()), what="modified")
            shown = str(status.render())
            assert shown.endswith(".txt · modified") and "…" in shown, shown

    run(scenario())
