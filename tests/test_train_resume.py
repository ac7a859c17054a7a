"""Exact resume: a run stopped at step k and resumed ends with the very weights of an
uninterrupted run, whether it was stopped in-process or by a real Ctrl-C (SIGINT)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from storytui import paths
from storytui.cli import _mount_trainer, app
from tests import train_corpus
from trainer import run_state
from trainer.loop import train
from trainer.stages import resume_spec
from trainer.train_cli import _run

_mount_trainer()

STEPS = 10


def _weights(directory: Path) -> dict[str, torch.Tensor]:
    return load_file(str(directory / "model.safetensors"))


def _assert_same_weights(a: Path, b: Path) -> None:
    left, right = _weights(a), _weights(b)
    assert left.keys() == right.keys()
    for key in left:
        assert torch.equal(left[key], right[key]), key


def _losses(name: str) -> list[tuple[int, float]]:
    rows = run_state.read_metrics(run_state.metrics_path(name))
    return [(r["step"], r["loss"]) for r in rows if "loss" in r]


def test_halted_run_resumes_to_the_same_weights():
    train_corpus.write_books()
    overrides = {"eval_every": 4, "lr": 1e-2, "log_every": 1}
    whole = train(train_corpus.pretrain("whole", steps=STEPS, **overrides))
    halted = train(train_corpus.pretrain("part", steps=STEPS, halt_after_steps=5, **overrides))
    assert halted.stopped_by == "halt" and halted.steps == 5
    state = torch.load(paths.run_dir("part") / "latest" / "state.pt", weights_only=True)
    assert state["step"] == 5 and state["total_steps"] == STEPS

    resumed = train(resume_spec("part", "pretrain", device="cpu"))
    assert resumed.stopped_by == "done" and resumed.steps == STEPS
    assert resumed.tokens_seen == whole.tokens_seen
    _assert_same_weights(paths.run_dir("whole") / "latest", paths.run_dir("part") / "latest")
    _assert_same_weights(paths.model_dir("whole"), paths.model_dir("part"))
    assert _losses("part") == _losses("whole")  # metrics after the restart replace none twice
    assert resumed.val_loss == whole.val_loss


def test_resume_without_a_saved_run_is_an_error():
    import pytest

    from storytui.errors import StoryError

    with pytest.raises(StoryError, match="no saved run"):
        resume_spec("ghost", "pretrain")


def _cli(home: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "storytui.cli",
        "train",
        "pretrain",
        "--preset",
        "tiny",
        "--device",
        "cpu",
        "--dtype",
        "fp32",
        "--batch-size",
        "2",
        *args,
    ]


def test_sigint_saves_and_resume_matches_an_uninterrupted_run(storytui_home):
    train_corpus.write_books()
    steps = 20
    env = {**os.environ, "STORYTUI_HOME": str(storytui_home), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        _cli(storytui_home, "--out", "sig", "--max-steps", str(steps)),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = paths.run_dir("sig") / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never logged a step"
        time.sleep(0.05)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    message = [line for line in err.splitlines() if line.strip()]
    assert len(message) == 1 and "Stopped by SIGINT" in message[0] and "--resume" in message[0]
    assert "Traceback" not in err
    stopped_at = json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert 10 <= stopped_at < steps
    state = torch.load(paths.run_dir("sig") / "latest" / "state.pt", weights_only=True)
    assert state["step"] >= stopped_at
    assert (paths.model_dir("sig") / "model.safetensors").is_file()  # usable at once

    resumed = subprocess.run(
        _cli(storytui_home, "--out", "sig", "--resume"),
        env=env,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert resumed.returncode == 0, resumed.stderr
    assert f"Done: {steps} steps" in resumed.stdout

    reference = train(train_corpus.pretrain("ref", steps=steps, batch_size=2, block_size=None))
    assert reference.steps == steps
    _assert_same_weights(paths.run_dir("ref") / "latest", paths.run_dir("sig") / "latest")


def test_dropout_and_the_seed_recipe_resume_exactly():
    """Dropout draws from the global RNG: resume must restore it (seed architecture, p=0.2)."""
    from dataclasses import replace

    from trainer.stages import pretrain_spec

    train_corpus.write_books()

    def spec(name: str, halt: int | None = None):
        run = pretrain_spec(
            name,
            "tiny",
            "seed",
            {"batch_size": 4, "max_steps": 8, "eval_every": 4, "log_every": 1},
            device="cpu",
        )
        run.model_config = replace(run.model_config, arch="seed", dropout=0.2, block_size=64)
        run.halt_after_steps, run.sample_tokens = halt, 4
        return run

    whole = train(spec("seed-whole"))
    assert whole.plan.precision == "fp32" and whole.plan.warmup_steps == 0
    train(spec("seed-part", halt=3))
    train(resume_spec("seed-part", "pretrain", device="cpu"))
    _assert_same_weights(
        paths.run_dir("seed-whole") / "latest", paths.run_dir("seed-part") / "latest"
    )
    assert _losses("seed-part") == _losses("seed-whole")


def _endless_run(home: Path, name: str) -> tuple[subprocess.Popen, Path]:
    """A run far longer than any test, started and past its first logged step."""
    train_corpus.write_books()
    env = {**os.environ, "STORYTUI_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        _cli(home, "--out", name, "--max-steps", "100000", "--eval-every", "100000"),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    metrics = paths.run_dir(name) / "metrics.jsonl"
    _logged_step(process, metrics)
    return process, metrics


def _logged_step(process: subprocess.Popen, metrics: Path) -> None:
    deadline = time.monotonic() + 120
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the run never logged a step"
        time.sleep(0.05)


def test_a_hang_up_saves_like_sigterm(storytui_home):
    """Closing the terminal (SIGHUP) killed the run with up to --eval-every steps unsaved."""
    process, metrics = _endless_run(storytui_home, "hup")
    process.send_signal(signal.SIGHUP)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 129, err
    assert "Stopped by SIGHUP" in err and "Traceback" not in err
    stopped_at = json.loads(metrics.read_text().splitlines()[-1])["step"]
    state = torch.load(paths.run_dir("hup") / "latest" / "state.pt", weights_only=True)
    assert state["step"] >= stopped_at >= 10


def test_a_closed_output_pipe_saves_and_stops(storytui_home):
    """`storytui train ... | head` used to die at the first line after head left, unsaved."""
    process, metrics = _endless_run(storytui_home, "pipe")
    process.stdout.close()  # the reader goes away, as `head` does once it has its lines
    err = process.stderr.read()
    process.wait(timeout=120)
    assert process.returncode == 141, err
    assert "Stopped: the output closed" in err and "--resume" in err
    assert "Traceback" not in err
    state = torch.load(paths.run_dir("pipe") / "latest" / "state.pt", weights_only=True)
    assert state["step"] >= json.loads(metrics.read_text().splitlines()[-1])["step"]
    assert (paths.model_dir("pipe") / "model.safetensors").is_file()


class _SlowerAfter:
    """Training batches that turn slow after the first few, as on a machine that other work
    starts to share: the steps fitted to the time budget then no longer fit in it."""

    def __init__(self, data, fast_batches: int, delay_s: float) -> None:
        self.data, self.fast_batches, self.delay_s, self.batches = data, fast_batches, delay_s, 0

    def get_batch(self, split, *args, **kwargs):
        if split == "train":
            self.batches += 1
            if self.batches > self.fast_batches:
                time.sleep(self.delay_s)
        return self.data.get_batch(split, *args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.data, name)


def test_a_run_its_time_budget_stopped_trains_on_when_resumed(capsys):
    train_corpus.write_books()
    spec = train_corpus.pretrain("budget", steps=40, eval_every=1000)
    spec.time_budget_s = 1.5
    spec.data = _SlowerAfter(spec.data, fast_batches=2, delay_s=0.3)
    _run(spec)
    out = capsys.readouterr().out
    stopped = torch.load(paths.run_dir("budget") / "latest" / "state.pt", weights_only=True)
    # the plan may already trim the 40 steps to what 1.5 s of the fast first batches allow
    total = stopped["total_steps"]
    assert 2 < stopped["step"] < total <= 40
    assert f"Stopped by the time budget at step {stopped['step']}/{total}; model saved to " in out
    assert "storytui train pretrain --out budget --resume" in out
    assert paths.model_dir("budget").is_dir()  # the model a budgeted run ends with is usable

    # Resumed with the budget it started with: this session has its own 1.5 s, not none left.
    again = resume_spec("budget", "pretrain", device="cpu")
    again.data = _SlowerAfter(again.data, fast_batches=2, delay_s=0.3)
    resumed = train(again)
    assert resumed.stopped_by == "time budget"
    assert stopped["step"] + 2 < resumed.steps < total

    # A budget typed with --resume replaces the saved one for this session and is not ignored.
    result = CliRunner().invoke(
        app, ["train", "pretrain", "--out", "budget", "--resume", "--time-budget", "10"]
    )
    assert result.exit_code == 0, result.output
    assert "ignoring" not in result.output
    assert "budget      0:10:00 for this session" in result.output
    assert f"Done: {total} steps" in result.output
    final = torch.load(paths.run_dir("budget") / "latest" / "state.pt", weights_only=True)
    assert final["step"] == total


def test_a_run_whose_shards_another_run_rebuilt_from_new_text_is_not_resumed_on_them():
    """Shards are shared per vocabulary: new text and another run rebuild them, and a resumed
    run used to continue mid-way on that other data without a word."""
    import pytest

    from storytui.errors import StoryError

    train_corpus.write_books(seed=0)
    overrides = {"eval_every": 4, "lr": 1e-2, "log_every": 1}
    whole = train(train_corpus.pretrain("whole", steps=STEPS, **overrides))
    train(train_corpus.pretrain("part", steps=STEPS, halt_after_steps=5, **overrides))
    train_corpus.write_books(seed=5)  # new text: another run rebuilds the shared shards
    train(train_corpus.pretrain("other", steps=2, **overrides))
    with pytest.raises(StoryError, match="the text this run trained on has changed"):
        resume_spec("part", "pretrain", device="cpu")

    train_corpus.write_books(seed=0)  # the run's own text back: its shards are rebuilt
    resumed = train(resume_spec("part", "pretrain", device="cpu"))
    assert resumed.steps == STEPS and resumed.tokens_seen == whole.tokens_seen
    _assert_same_weights(paths.model_dir("whole"), paths.model_dir("part"))
