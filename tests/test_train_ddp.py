"""Data-parallel training on the CPU: two gloo processes under torch.distributed.run."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import torch

from storytui import paths
from storytui.checkpoint import load_checkpoint
from tests import train_corpus
from trainer import run_state


@pytest.mark.timeout(240)
def test_two_processes_train_in_step_and_rank_zero_saves(storytui_home):
    train_corpus.write_books()
    env = {**os.environ, "STORYTUI_HOME": str(storytui_home), "OMP_NUM_THREADS": "1"}
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node=2",
        "-m",
        "storytui.cli",
        "train",
        "pretrain",
        "--preset",
        "tiny",
        "--out",
        "ddp",
        "--max-steps",
        "6",
        "--eval-every",
        "3",
        "--batch-size",
        "2",
        "--device",
        "cpu",
        "--dtype",
        "fp32",
    ]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=200)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "cpu × 2 processes" in out  # the plan counts both processes' tokens
    assert "512 tokens = 2 sequences × 128 tokens × 1 micro-batches × 2 processes" in out
    assert out.count("pretrain ddp:") == 1  # only rank 0 talks
    assert out.count("Done: 6 steps, 3,072 tokens") == 1
    assert "All 2 processes hold identical weights." in out

    checkpoint = load_checkpoint(paths.model_dir("ddp"))
    assert checkpoint.meta.steps == 6 and checkpoint.meta.tokens_seen == 6 * 512
    rows = run_state.read_metrics(run_state.metrics_path("ddp"))
    assert [r["step"] for r in rows if "val_loss" in r] == [3, 6]  # one writer, no duplicates
    state = torch.load(paths.run_dir("ddp") / "latest" / "state.pt", weights_only=True)
    assert state["world_size"] == 2 and len(state["rng"]) == 2
    # each rank draws its own batches: the two data streams differ
    assert not state["rng"][0]["data"].equal(state["rng"][1]["data"])


FULL_DISK_ON_RANK_ZERO = """
import errno, os, sys

import trainer.run_state as run_state

if os.environ.get("RANK") == "0":
    real_save, saves = run_state.save_checkpoint, []

    def save_until_the_disk_fills(*args, **kwargs):
        saves.append(args[0])
        if len(saves) > 1:  # the first eval's model is written, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_save(*args, **kwargs)

    run_state.save_checkpoint = save_until_the_disk_fills

from storytui.cli import main

main(sys.argv[1:])
"""


@pytest.mark.timeout(240)
def test_a_failed_save_on_rank_zero_stops_every_process_at_once(storytui_home, tmp_path):
    """Rank 0 alone writes checkpoints; when that fails, the other ranks must not wait for it
    in the next collective (forever, or until gloo's 30-minute timeout)."""
    train_corpus.write_books()
    script = tmp_path / "full_disk.py"
    script.write_text(FULL_DISK_ON_RANK_ZERO)
    env = {
        **os.environ,
        "STORYTUI_HOME": str(storytui_home),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.getcwd(),
    }
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    command += ["--nproc_per_node=2", str(script), "train", "pretrain", "--preset", "tiny"]
    command += ["--out", "ddp", "--max-steps", "9", "--eval-every", "3", "--batch-size", "2"]
    command += ["--device", "cpu", "--dtype", "fp32"]
    started = time.monotonic()
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=200)
    seconds = time.monotonic() - started
    assert result.returncode != 0
    err = result.stderr
    assert "storytui: error: disk full while saving" in err, err
    assert "rank 1: stopped because rank 0 failed" in err, err
    ours = [line for line in err.splitlines() if line.startswith("storytui: ")]
    assert len(ours) == 2, err  # one line from each rank, nothing else of ours
    assert "Traceback" not in err.split("storytui: error: rank 1")[0], err
    assert seconds < 90, f"the run took {seconds:.0f}s to stop"
    assert load_checkpoint(paths.model_dir("ddp")).meta.steps == 3  # the save that worked
