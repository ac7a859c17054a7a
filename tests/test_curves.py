"""`storytui train curves`: readable axes, also for a run that logged a single point."""

from __future__ import annotations

import json
import re

from rich.console import Console

from trainer.curves import print_curves, render_chart
from trainer.run_state import metrics_path


def x_tick_labels(chart: str) -> list[str]:
    """The labels under the x axis: the line after the frame's bottom edge."""
    lines = chart.splitlines()
    bottom = next(i for i, line in enumerate(lines) if line.lstrip().startswith("└"))
    return lines[bottom + 1].split()


def test_a_single_point_gets_one_integer_tick():
    chart = render_chart([(3071, 9.5)], [(3071, 9.6)], "one step", 80, 14, color=False)
    assert x_tick_labels(chart) == ["3,071"]


def test_points_all_at_the_same_token_count_get_one_integer_tick():
    chart = render_chart([(768, 9.5), (768, 9.4)], [], "equal x", 80, 14, color=False)
    assert x_tick_labels(chart) == ["768"]


def test_a_spread_of_points_keeps_plotexts_ticks():
    chart = render_chart([(1000, 9.5), (200_000, 9.4)], [], "spread", 80, 14, color=False)
    assert len(x_tick_labels(chart)) > 2


def test_curves_of_a_one_step_run_from_its_metrics_file():
    path = metrics_path("one")
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"step": 3, "tokens": 768, "loss": 9.5, "val_loss": 9.3}) + "\n")
    console = Console(width=90, record=True, force_terminal=False)
    print_curves("one", console=console)
    text = console.export_text()
    assert not re.search(r"\b76[78]\.\d", text)  # no fractional token counts
    assert x_tick_labels(text) == ["768"]
    assert "best val loss 9.3000 at 768 tokens" in text
