"""Data-parallel training on the CPU: two gloo processes under torch.distributed.run."""

from __future__ import annotations

import os
import subprocess
import sys

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
