"""Loss curves in the terminal: train and validation loss against tokens seen, from metrics.jsonl."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.text import Text

from storytui.errors import StoryError
from trainer.run_state import metrics_path, read_metrics_counted

Points = list[tuple[int, float]]


def loss_series(name: str) -> tuple[Points, Points]:
    """(tokens, train loss) and (tokens, val loss) points of run ``name``."""
    train, val, _ = _checked_series(name)
    return train, val


def _checked_series(name: str) -> tuple[Points, Points, int]:
    """The points, and how many rows were left out because they are not readable numbers
    (not UTF-8, not a JSON object, NaN or infinite, null or text where a number belongs)."""
    path = metrics_path(name)
    if not path.is_file():
        raise StoryError(f"no training metrics for {name!r} ({path} does not exist)")
    try:
        rows, bad = read_metrics_counted(path)
    except OSError as exc:
        raise StoryError(f"cannot read {path}: {exc.strerror or exc}") from exc
    series: tuple[Points, Points] = ([], [])
    for row in rows:
        row_ok = True
        for points, key in zip(series, ("loss", "val_loss"), strict=True):
            if key not in row:
                continue
            tokens, loss = _finite(row.get("tokens")), _finite(row[key])
            if tokens is None or loss is None:
                row_ok = False
            else:
                points.append((int(tokens), loss))
        bad += not row_ok
    return series[0], series[1], bad


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def print_curves(
    name: str,
    console: Console | None = None,
    quiet_if_missing: bool = False,
    width: int | None = None,
    height: int = 18,
) -> None:
    """Draw run ``name``'s curves; ``quiet_if_missing`` prints nothing for a run without metrics."""
    console = console or Console()
    try:
        train, val, bad = _checked_series(name)
    except StoryError:
        if quiet_if_missing:
            return
        raise
    if bad:
        Console(stderr=True).print(
            f"[yellow]warning[/]: left out {bad:,} unreadable row{'s' if bad > 1 else ''} "
            f"of {metrics_path(name)}",
            highlight=False,
            soft_wrap=True,  # one line, however long the path
        )
    if not train and not val:
        if not quiet_if_missing:
            console.print(f"Run {name!r} has no logged steps yet.")
        return
    width = width or max(40, min(console.width, 110))
    chart = render_chart(train, val, f"{name}: loss vs tokens", width, height, console.is_terminal)
    console.print(Text.from_ansi(chart))
    summary = []
    if train:
        summary.append(f"last train loss {train[-1][1]:.4f} at {train[-1][0]:,} tokens")
    if val:
        best = min(val, key=lambda point: point[1])
        summary.append(f"best val loss {best[1]:.4f} at {best[0]:,} tokens")
    console.print("; ".join(summary), highlight=False)


def render_chart(
    train: list[tuple[int, float]],
    val: list[tuple[int, float]],
    title: str,
    width: int,
    height: int,
    color: bool,
) -> str:
    """The chart as text (ANSI colours when ``color``), with plotext 6's figure API or 5's."""
    import plotext as plt

    single_x = _single_x(train, val)
    if hasattr(plt, "plot"):  # plotext 5.x: module-level functions
        plt.clear_figure()
        plt.plotsize(width, height)
        plt.theme("pro" if color else "clear")
        if train:
            plt.plot([x for x, _ in train], [y for _, y in train], label="train")
        if val:
            plt.scatter([x for x, _ in val], [y for _, y in val], label="val", marker="x")
        if single_x is not None:
            plt.xlim(single_x - 1, single_x + 1)
            plt.xticks([single_x], [f"{single_x:,}"])
        plt.title(title)
        plt.xlabel("tokens")
        return plt.build()
    figure = plt.figure
    figure.clear.all()
    figure.plot_size(width, height)
    figure.theme("default" if color else "colorless")
    if train:
        xs, ys = [x for x, _ in train], [y for _, y in train]
        figure.draw(figure.signal(xs, ys).lines().label("train"))
    if val:
        xs, ys = [x for x, _ in val], [y for _, y in val]
        figure.draw(figure.signal(xs, ys, marker="x").lines().label("val"))
    if single_x is not None:
        figure.ruler("x").lim(single_x - 1, single_x + 1).ticks([single_x], [f"{single_x:,}"])
    figure.title(title)
    figure.label("tokens")
    return figure.build().string(colorless=not color)


def _single_x(train: list[tuple[int, float]], val: list[tuple[int, float]]) -> int | None:
    """The token count when every point sits at the same one (a run that logged once).

    Left alone, plotext spreads such an axis over ±1 token in fractional ticks (767.33,
    767.67, …); one tick at the only token count says what there is to say.
    """
    xs = {x for x, _ in train + val}
    return xs.pop() if len(xs) == 1 else None
