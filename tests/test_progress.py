"""The ETA a training run shows: smoothed over log windows, evaluations counted, counting down."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from trainer.progress import TimeLeft, TrainProgress, evals_after


def test_evaluations_left_are_every_eval_every_steps_and_at_the_last_step():
    time_left = TimeLeft(1.0, 10.0, eval_every=100)
    assert time_left.evals_left(0, 1000) == 10
    assert time_left.evals_left(0, 1050) == 11  # 100, ..., 1000 and the last step
    assert time_left.evals_left(999, 1000) == 1
    assert time_left.evals_left(1000, 1000) == 0
    assert time_left.evals_left(1040, 1050) == 1
    assert time_left.seconds(0, 1050) == pytest.approx(1050 * 1.0 + 11 * 10.0)


def test_one_slow_window_nudges_the_estimate_instead_of_making_it_jump():
    time_left = TimeLeft(1.0, 0.0, eval_every=10_000)
    for _ in range(5):
        time_left.add_window(10, 10.0)  # steady: one second a step
    steady = time_left.seconds(100, 1100)
    time_left.add_window(10, 40.0)  # one window four times slower
    assert steady == pytest.approx(1000.0)
    assert time_left.seconds(110, 1100) == pytest.approx(990 * 1.6)  # not 990 * 4
    for _ in range(30):
        time_left.add_window(10, 40.0)  # the machine really did slow down: it follows
    assert time_left.seconds_per_step == pytest.approx(4.0, rel=0.01)


def test_the_first_measured_evaluation_replaces_the_plans_guess():
    time_left = TimeLeft(1.0, 2.0, eval_every=10)
    time_left.add_eval(30.0)
    assert time_left.seconds_per_eval == 30.0
    time_left.add_eval(80.0)
    assert time_left.seconds_per_eval == pytest.approx(40.0)
    time_left.add_window(0, 5.0)  # an empty window (an eval reset it) changes nothing
    assert time_left.seconds_per_step == 1.0


def test_the_live_bar_counts_the_given_eta_down_between_log_steps(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("trainer.progress.time.monotonic", lambda: now[0])
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with TrainProgress(console, total=100, start=0) as progress:
        bar = progress._progress
        assert "ETA -:--:--" in _render(bar)
        progress.update(10, 2.5, 1e-3, 1000.0, None, eta_s=3600.0)
        assert "ETA 1:00:00" in _render(bar)
        now[0] += 90
        assert "ETA 0:58:30" in _render(bar)
        now[0] += 10_000
        assert "ETA 0:00:00" in _render(bar)


def _render(bar, width: int = 160) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, width=width)
    console.print(bar.get_renderable())
    return re.sub(r"\x1b\[[0-9;]*m", "", console.file.getvalue())


def test_the_countdown_never_runs_below_what_the_steps_left_need(monkeypatch):
    now = [1000.0]
    monkeypatch.setattr("trainer.progress.time.monotonic", lambda: now[0])
    console = Console(file=io.StringIO(), force_terminal=True, width=120)
    with TrainProgress(console, total=150, start=0) as progress:
        bar = progress._progress
        progress.update(10, 2.5, 1e-3, 1000.0, None, eta_s=14.0, seconds_per_step=0.1)
        now[0] += 60  # a slow stretch: a minute, no log step
        progress.tick(15)
        assert "ETA 0:00:14" in _render(bar)  # 135 steps at 0.1 s, not 0:00:00


@pytest.mark.parametrize("width", [60, 80, 100, 160])
def test_the_live_bar_fits_the_terminal_and_keeps_its_eta(width):
    console = Console(file=io.StringIO(), force_terminal=True, width=width)
    with TrainProgress(console, total=16_000, start=0) as progress:
        progress.update(4000, 4.1234, 3.02e-4, 1723.0, 0.123, 3600.0, 0.25)
        line = _render(progress._progress, width).rstrip("\n")
    assert "\n" not in line and len(line) <= width, line
    assert "step  4000/16000" in line and "ETA 1:00:00" in line and "loss 4.1234" in line
    assert ("0:00:00" in line.split("ETA 1:00:00")[1]) == (width >= TrainProgress.WIDE)


def test_the_plan_counts_the_evaluations_that_will_run():
    assert evals_after(0, 20, 5) == 4  # at 5, 10, 15, 20
    assert evals_after(0, 22, 5) == 5  # and at the last step
    assert evals_after(7, 20, 5) == 3
