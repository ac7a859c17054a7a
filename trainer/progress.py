"""What a training run shows: the plan before it starts, then live progress and eval lines.

In a terminal a rich progress bar carries loss, learning rate, tokens/s, MFU (CUDA) and ETA;
when the output is a file or a pipe, the same figures go out as one plain line per log step.
"""

from __future__ import annotations

import datetime as dt
import errno
import io
import sys
import time
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    Task,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text


@dataclass(frozen=True)
class Plan:
    """The arithmetic of a run, printed before the first step."""

    name: str
    stage: str
    preset: str
    recipe: str
    vocabulary: str  # "NAME (N tokens)"
    n_params: int
    device: str
    world_size: int
    precision: str
    precision_note: str
    compiled: bool
    batch_size: int
    block_size: int
    grad_accum: int  # micro-batches per step on each process
    tokens_per_step: int
    steps: int
    start_step: int
    warmup_steps: int
    lr: float
    min_lr: float
    step_seconds: float  # measured
    eval_seconds: float  # estimated, all evaluations of the remaining steps together
    seconds_per_eval: float  # estimated, one evaluation
    time_budget_s: float | None
    train_tokens: int | None  # size of the training split, when the data says

    @property
    def total_tokens(self) -> int:
        return self.steps * self.tokens_per_step

    @property
    def estimated_seconds(self) -> float:
        return (self.steps - self.start_step) * self.step_seconds + self.eval_seconds


class SurvivingOutput(io.TextIOBase):
    """A run's standard output that outlives its reader: when the pipe closes (``| head``) or
    the terminal goes away (EIO after a hang-up), writing stops quietly and ``lost`` is set,
    so that the loop saves and stops instead of dying mid-step with its last steps unsaved."""

    GONE = (errno.EPIPE, errno.EIO)

    def __init__(self, stream: TextIO) -> None:
        super().__init__()
        self.stream = stream
        self.lost = False

    def write(self, text: str) -> int:
        if not self.lost:
            try:
                self.stream.write(text)
            except OSError as exc:
                self._lose(exc)
        return len(text)

    def flush(self) -> None:
        if not self.lost:
            try:
                self.stream.flush()
            except OSError as exc:
                self._lose(exc)

    def _lose(self, exc: OSError) -> None:
        if exc.errno not in self.GONE:
            raise exc
        self.lost = True

    def isatty(self) -> bool:
        return self.stream.isatty()

    def fileno(self) -> int:
        return self.stream.fileno()

    @property
    def encoding(self) -> str:  # rich asks, to choose its box characters
        return getattr(self.stream, "encoding", "utf-8")


def run_console() -> Console:
    """The console a run reports on: stdout, surviving its reader (``SurvivingOutput``), long
    log lines kept whole in files."""
    return Console(file=SurvivingOutput(sys.stdout), soft_wrap=True)


def output_lost(console: Console) -> bool:
    return getattr(console.file, "lost", False)


def hms(seconds: float) -> str:
    return str(dt.timedelta(seconds=round(max(0.0, seconds))))


def count(n: float) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}"


def _head_lines(
    *,
    stage: str,
    name: str,
    preset: str,
    recipe: str,
    vocabulary: str,
    n_params: int,
    tokens_per_step: int,
    batch_size: int,
    block_size: int,
    grad_accum: int,
    world_size: int,
) -> list[str]:
    processes = f" × {world_size} processes" if world_size > 1 else ""
    return [
        f"[bold]{stage} {name}[/]: preset {preset}, recipe {recipe}, {n_params:,} parameters, "
        f"vocabulary {vocabulary}",
        f"  per step    {tokens_per_step:,} tokens = {batch_size} sequences × "
        f"{block_size} tokens × {grad_accum} micro-batches{processes}",
    ]


def print_plan_head(console: Console, **what) -> None:
    """The plan's first lines, known before a micro-step is measured (see ``_head_lines``)."""
    for line in _head_lines(**what):
        console.print(line, highlight=False)


def print_plan(console: Console, plan: Plan, head: bool = True) -> None:
    """The whole plan; ``head=False`` leaves out the lines ``print_plan_head`` printed."""
    processes = f" × {plan.world_size} processes" if plan.world_size > 1 else ""
    lines = _head_lines(
        stage=plan.stage,
        name=plan.name,
        preset=plan.preset,
        recipe=plan.recipe,
        vocabulary=plan.vocabulary,
        n_params=plan.n_params,
        tokens_per_step=plan.tokens_per_step,
        batch_size=plan.batch_size,
        block_size=plan.block_size,
        grad_accum=plan.grad_accum,
        world_size=plan.world_size,
    )
    if not head:
        lines = []
    lines += [
        f"  device      {plan.device}{processes}, {plan.precision} ({plan.precision_note})"
        + (", torch.compile" if plan.compiled else ""),
        f"  schedule    {plan.steps:,} steps, warmup {plan.warmup_steps:,}, "
        f"lr {plan.lr:.2e} → {plan.min_lr:.2e} (cosine)",
        f"  tokens      {plan.total_tokens:,} in total"
        + (
            f" ({plan.total_tokens / plan.train_tokens:.3g} epochs of {plan.train_tokens:,})"
            if plan.train_tokens
            else ""
        ),
        f"  estimate    {hms(plan.estimated_seconds)} on this device "
        f"({plan.step_seconds:.3g} s/step measured, {hms(plan.eval_seconds)} of evaluation)",
    ]
    if plan.start_step:
        lines.append(f"  resuming    at step {plan.start_step:,}")
    if plan.time_budget_s:
        fitted = "for this session" if plan.start_step else "(steps fitted to it)"
        lines.append(f"  budget      {hms(plan.time_budget_s)} {fitted}")
    for line in lines:
        console.print(line, highlight=False)


def evals_after(step: int, total: int, every: int) -> int:
    """Evaluations a run holds after ``step``: every ``every`` steps, and at the last one."""
    every = max(1, every)
    return total // every - step // every + (1 if total % every and step < total else 0)


class TimeLeft:
    """How long a run has left: the remaining steps at a smoothed pace, plus the evaluations
    still to come at the time they take. Each log window moves the pace a fifth of the way to
    what it measured, so one slow window (another job, a page-fault storm) nudges the ETA
    instead of making it jump, and evaluation pauses are in it instead of surprising it."""

    SMOOTHING = 0.2

    def __init__(self, seconds_per_step: float, seconds_per_eval: float, eval_every: int) -> None:
        self.seconds_per_step = seconds_per_step  # first the plan's measurement
        self.seconds_per_eval = seconds_per_eval
        self.eval_every = max(1, eval_every)
        self._evals_timed = 0

    def add_window(self, steps: int, seconds: float) -> None:
        if steps > 0 and seconds > 0:
            self.seconds_per_step += self.SMOOTHING * (seconds / steps - self.seconds_per_step)

    def add_eval(self, seconds: float) -> None:
        """The first measured evaluation replaces the estimate; later ones are smoothed."""
        weight = 1.0 if self._evals_timed == 0 else self.SMOOTHING
        self.seconds_per_eval += weight * (seconds - self.seconds_per_eval)
        self._evals_timed += 1

    def evals_left(self, step: int, total: int) -> int:
        return evals_after(step, total, self.eval_every)

    def seconds(self, step: int, total: int) -> float:
        steps_left = max(0, total - step)
        return steps_left * self.seconds_per_step + self.evals_left(step, total) * (
            self.seconds_per_eval
        )


class CountdownColumn(ProgressColumn):
    """The ETA given at the last log step, counted down between log steps."""

    def render(self, task: Task) -> Text:
        eta, given_at = task.fields.get("eta"), task.fields.get("eta_at")
        if eta is None or given_at is None:
            return Text("ETA -:--:--", style="progress.remaining")
        # never below what the steps still to run need at the last pace: a slow stretch
        # between log steps holds the countdown up instead of running it down to zero
        steps_left = (task.total or 0) - task.completed
        floor = max(0.0, steps_left) * task.fields.get("pace", 0.0)
        left = max(floor, eta - (time.monotonic() - given_at))
        return Text(f"ETA {hms(left)}", style="progress.remaining")


class TrainProgress:
    """A live bar in a terminal, plain log lines elsewhere; silent on ranks other than 0."""

    BAR_WIDTH = 16
    WIDE = 100  # columns from which the elapsed time shows too

    def __init__(self, console: Console, total: int, start: int, enabled: bool = True) -> None:
        self.console = console
        self.total = total
        self.enabled = enabled
        self.live = enabled and console.is_terminal
        self._progress: Progress | None = None
        self._task = None
        self._start = start

    def __enter__(self) -> TrainProgress:
        if self.live:
            # the step, the bar and the ETA always show whole; the figures after them are cut
            # to the room left (``_fit``), and the elapsed time shows where there is room
            columns = [
                TextColumn("[bold]step"),
                MofNCompleteColumn(),
                BarColumn(bar_width=self.BAR_WIDTH),
                CountdownColumn(),
                TextColumn("{task.fields[stats]}"),
            ]
            if self.console.width >= self.WIDE:
                columns.append(TimeElapsedColumn())
            self._progress = Progress(
                *columns,
                console=self.console,
                transient=False,
            )
            self._progress.start()
            self._task = self._progress.add_task(
                "train", total=self.total, completed=self._start, stats="", eta=None, eta_at=None
            )
        return self

    def __exit__(self, *exc) -> None:
        if self._progress is not None:
            self._progress.stop()

    def update(
        self,
        step: int,
        loss: float,
        lr: float,
        tokens_per_s: float,
        mfu: float | None,
        eta_s: float,
        seconds_per_step: float = 0.0,
    ) -> None:
        if not self.enabled:
            return
        stats = f"loss {loss:.4f}  {count(tokens_per_s)} tok/s"  # most wanted first
        if mfu is not None:
            stats += f"  MFU {mfu * 100:.1f}%"
        stats += f"  lr {lr:.2e}"
        if self._progress is not None:
            given = {"eta": eta_s, "eta_at": time.monotonic(), "pace": seconds_per_step}
            self._progress.update(self._task, completed=step, stats=self._fit(stats), **given)
        else:
            self.console.print(
                f"step {step:,}/{self.total:,}  {stats}  ETA {hms(eta_s)}", highlight=False
            )

    def _fit(self, stats: str) -> str:
        """``stats`` cut to the room the other columns leave in this terminal."""
        step_digits = 2 * len(f"{self.total}") + 1
        used = len("step") + step_digits + self.BAR_WIDTH + len("ETA 0:00:00")
        used += 4 + (len(" 0:00:00") if self.console.width >= self.WIDE else 0)
        room = max(8, self.console.width - used - 1)
        return stats if len(stats) <= room else stats[: room - 1] + "…"

    def tick(self, step: int) -> None:
        """Move the bar every step (cheap: the figures refresh at log steps)."""
        if self._progress is not None:
            self._progress.update(self._task, completed=step)

    def note(self, text: str) -> None:
        if self.enabled:
            self.console.print(text, highlight=False)
