"""Loss curves in the terminal: train and validation loss against tokens seen, from metrics.jsonl."""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from storytui.errors import StoryError
from trainer.run_state import metrics_path, read_metrics


def loss_series(name: str) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(tokens, train loss) and (tokens, val loss) points of run ``name``."""
    path = metrics_path(name)
    if not path.is_file():
        raise StoryError(f"no training metrics for {name!r} ({path} does not exist)")
    rows = read_metrics(path)
    train = [(int(r["tokens"]), float(r["loss"])) for r in rows if r.get("loss") is not None]
    val = [(int(r["tokens"]), float(r["val_loss"])) for r in rows if r.get("val_loss") is not None]
    return train, val


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
        train, val = loss_series(name)
    except StoryError:
        if quiet_if_missing:
            return
        raise
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
