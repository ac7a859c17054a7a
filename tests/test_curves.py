"""`storytui train curves`: readable axes, also for a run that logged a single point."""

from __future__ import annotations

import json
import re

import pytest
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


def _metrics(name: str, data: bytes) -> None:
    path = metrics_path(name)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


GOOD = b'{"step": 10, "tokens": 100, "loss": 5.0}\n{"step": 20, "tokens": 200, "loss": 4.0}\n'


@pytest.mark.parametrize(
    ("bad", "n_bad"),
    [
        (
            b'{"step": 1, "tokens": 10, "loss": NaN}\n{"step": 2, "tokens": 20, "loss": Infinity}\n',
            2,
        ),
        (b"\xff\xfe garbage\n", 1),
        (b"[1, 2]\n", 1),
        (b'"text"\n3\nnull\n', 3),
        (b'{"step": "a", "tokens": null, "loss": "x"}\n', 1),
        (b'{"step": 3, "tokens": 30, "loss": null}\n', 1),
        (b'{"step": 3, "tokens": true, "loss": 1.0}\n', 1),
        (b'{"step": 3, "tokens": 30, "val_loss": -Infinity}\n', 1),
    ],
)
def test_unreadable_rows_are_left_out_with_one_warning(bad, n_bad, capsys):
    _metrics("odd", bad + GOOD)
    console = Console(width=90, record=True, force_terminal=False)
    print_curves("odd", console=console)
    text = console.export_text()
    assert "last train loss 4.0000 at 200 tokens" in text
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(warnings) == 1 and "warning" in warnings[0] and f"left out {n_bad} " in warnings[0]


def test_only_unreadable_rows_is_no_logged_steps_not_a_crash(capsys):
    _metrics("junk", b'{"step": 1, "tokens": 10, "loss": NaN}\n\xff\n[1]\n')
    console = Console(width=90, record=True, force_terminal=False)
    print_curves("junk", console=console)
    assert "has no logged steps yet" in console.export_text()
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_a_torn_last_line_is_skipped_without_a_warning(capsys):
    _metrics("torn", GOOD + b'{"step": 30, "tok')
    console = Console(width=90, record=True, force_terminal=False)
    print_curves("torn", console=console)
    assert "last train loss 4.0000" in console.export_text()
    assert capsys.readouterr().err == ""


def test_models_info_shows_a_curve_with_odd_rows(storytui_home, capsys):
    from storytui.cli import main
    from tests.conftest import make_tiny_checkpoint

    make_tiny_checkpoint(storytui_home / "models" / "odd")
    _metrics("odd", b'{"step": 1, "tokens": 10, "loss": NaN}\n[1]\n\xff\n' + GOOD)
    main(["models", "info", "odd"])
    out, err = capsys.readouterr()
    assert "last train loss 4.0000" in out
    assert len(err.strip().splitlines()) == 1 and "left out 3 unreadable rows" in err


def test_resume_truncation_drops_rows_whose_step_is_not_a_number():
    from trainer.run_state import MetricsLog, read_metrics

    _metrics("cut", b'{"step": "a"}\n[1]\n' + GOOD + b'{"step": 30, "tokens": 300, "loss": 3.0}\n')
    MetricsLog("cut").truncate_after(20)
    assert [row["step"] for row in read_metrics(metrics_path("cut"))] == [10, 20]
