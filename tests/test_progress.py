"""The ETA a training run shows: smoothed over log windows, evaluations counted, counting down."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from trainer.progress import TimeLeft, TrainProgress


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


def _render(bar) -> str:
    console = Console(file=io.StringIO(), force_terminal=True, width=160)
    console.print(bar.get_renderable())
    return re.sub(r"\x1b\[[0-9;]*m", "", console.file.getvalue())
