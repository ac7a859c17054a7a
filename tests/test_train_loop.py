"""The training loop on a tiny model: it learns, saves loadable checkpoints, logs, evaluates."""

from __future__ import annotations

import itertools
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from typer.testing import CliRunner

from storytui import paths
from storytui.checkpoint import load_checkpoint
from storytui.cli import _mount_trainer, app
from storytui.model import PRESETS, build_model
from storytui.tokenizer import load_tokenizer
from tests import train_corpus
from trainer import dataset
from trainer.loop import evaluate, make_optimizer, train
from trainer.stages import default_hyperparameters, lr_at, with_overrides
from trainer.throughput import Precision

_mount_trainer()
runner = CliRunner()


def test_pretrain_learns_and_saves_everything():
    train_corpus.write_books()
    result = train(train_corpus.pretrain("t", steps=40, eval_every=20, lr=1e-2))
    assert result.stopped_by == "done" and result.steps == 40
    assert result.tokens_seen == 40 * 4 * 64

    rows = [json.loads(line) for line in (paths.run_dir("t") / "metrics.jsonl").open()]
    train_rows = [r for r in rows if "loss" in r]
    eval_rows = [r for r in rows if "val_loss" in r]
    assert [r["step"] for r in train_rows] == [10, 20, 30, 40]
    for key in ("step", "tokens", "loss", "lr", "grad_norm", "tokens_per_s", "mfu", "elapsed"):
        assert key in train_rows[0]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"] - 1.0
    assert [r["step"] for r in eval_rows] == [20, 40]
    assert eval_rows[1]["val_loss"] < eval_rows[0]["val_loss"]
    assert all(r["val_bpb"] > 0 and r["sample"] for r in eval_rows)

    best = load_checkpoint(paths.model_dir("t"))
    assert best.meta.stage == "pretrain" and best.meta.preset == "tiny"
    assert best.meta.steps == 40 and best.meta.tokens_seen == 40 * 256
    assert best.meta.val_loss == pytest.approx(eval_rows[1]["val_loss"])
    assert best.meta.val_bpb == pytest.approx(eval_rows[1]["val_bpb"])
    assert best.meta.parent is None
    latest = load_checkpoint(paths.run_dir("t") / "latest")
    assert (paths.run_dir("t") / "latest" / "state.pt").is_file()
    for key, value in best.model.state_dict().items():
        assert torch.equal(value, latest.model.state_dict()[key])


def test_existing_name_is_refused():
    train_corpus.write_books()
    train(train_corpus.pretrain("same", steps=2))
    with pytest.raises(Exception, match="already exists"):
        train(train_corpus.pretrain("same", steps=2))


def _bpb_by_hand(model, shards, split, block_size, tokenizer):
    """Walk every eval window one sequence at a time, summing log-probs of unmasked targets."""
    nats, n_bytes, n_tokens = 0.0, 0, 0
    for x, y in shards.iter_eval_batches(split, 1, block_size):
        with torch.no_grad():
            logits, _ = model(x)
        logprobs = torch.log_softmax(logits[0].double(), dim=-1)
        for position, target in enumerate(y[0].tolist()):
            if target == -100:
                continue
            nats -= float(logprobs[position, target])
            n_tokens += 1
            n_bytes += 0 if target == tokenizer.eot else len(tokenizer.token_bytes(target))
    return nats / n_tokens, nats / math.log(2) / n_bytes, n_tokens, n_bytes


@pytest.mark.parametrize("with_headers", [False, True])
def test_bits_per_byte_matches_a_hand_computation(with_headers):
    tokenizer = load_tokenizer()
    docs = [
        ("[Prompt] a door\n[Story]\n" if with_headers else "", "The sea was grey. Ünïcode — yes.")
        for _ in range(5)
    ]
    shards = dataset.build_shards("bpb", {"train": docs, "val": docs}, tokenizer, progress=False)
    torch.manual_seed(0)
    model = build_model(PRESETS["tiny"].config(tokenizer.n_vocab)).eval()
    loss, bpb, n_tokens, n_bytes = _bpb_by_hand(model, shards, "val", 32, tokenizer)
    result = evaluate(
        model,
        shards,
        "val",
        3,
        32,
        100,
        Precision("fp32", "cpu"),
        torch.device("cpu"),
        torch.as_tensor(tokenizer.token_byte_lengths()),
    )
    assert result.tokens == n_tokens
    assert result.loss == pytest.approx(loss, rel=1e-5)
    assert result.bpb == pytest.approx(bpb, rel=1e-5)
    _, mask = shards.arrays("val")
    assert n_tokens == int(mask[1:].sum())  # each unmasked target once
    if with_headers:  # the prompt header is not scored: the bytes are the stories' only
        assert n_bytes == shards.stats("val").target_bytes


def test_schedule_warms_up_then_decays_to_a_tenth():
    hp = with_overrides(default_hyperparameters("pretrain", "small", "storytui"), max_steps=1000)
    assert hp.warmup_steps == 100
    assert lr_at(0, hp, 1000) == pytest.approx(hp.lr / 100)
    assert lr_at(99, hp, 1000) == pytest.approx(hp.lr)
    assert lr_at(100, hp, 1000) == pytest.approx(hp.lr)
    middle = lr_at(550, hp, 1000)
    assert middle == pytest.approx(hp.lr * 0.55, rel=1e-6)
    assert lr_at(1000, hp, 1000) == pytest.approx(hp.lr * 0.1)
    lrs = [lr_at(s, hp, 1000) for s in range(100, 1000)]
    assert all(a >= b for a, b in itertools.pairwise(lrs))


def test_seed_recipe_is_the_original():
    hp = default_hyperparameters("pretrain", "small", "seed")
    assert (hp.batch_size, hp.block_size, hp.max_steps) == (16, 256, 10_000)
    assert (hp.weight_decay, hp.warmup_steps, hp.grad_clip, hp.dtype) == (0.0, 0, None, "fp32")
    assert lr_at(0, hp, 10_000) == pytest.approx(1e-4)
    assert lr_at(10_000, hp, 10_000) == pytest.approx(1e-5)
    short = with_overrides(hp, max_steps=100)  # the cosine follows the shortened run
    assert lr_at(100, short, 100) == pytest.approx(1e-5)
    assert lr_at(50, short, 100) == pytest.approx(5.5e-5)
    fine = default_hyperparameters("finetune", "small", "seed")
    assert (fine.batch_size, fine.block_size, fine.lr, fine.max_steps) == (8, 256, 8e-5, 10_000)
    tokens = with_overrides(hp, max_tokens=16 * 256 * 40)
    from trainer.stages import total_steps

    assert total_steps(tokens, 16 * 256) == 40


def test_weight_decay_only_on_matrices():
    model = build_model(PRESETS["tiny"].config(load_tokenizer().n_vocab))
    hp = default_hyperparameters("pretrain", "tiny", "storytui")
    decayed, plain = make_optimizer(model, hp, torch.device("cpu")).param_groups
    assert decayed["weight_decay"] == hp.weight_decay and plain["weight_decay"] == 0.0
    assert all(p.dim() == 2 for p in decayed["params"])
    assert all(p.dim() == 1 for p in plain["params"]) and plain["params"]
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))


def test_masked_targets_do_not_contribute_to_the_loss():
    torch.manual_seed(0)
    model = build_model(PRESETS["tiny"].config(load_tokenizer().n_vocab))
    x = torch.randint(0, 1000, (2, 16))
    y = torch.randint(0, 1000, (2, 16))
    masked = y.clone()
    masked[:, :10] = -100
    with torch.no_grad():
        _, loss = model(x, masked)
        logits, _ = model(x)
    expected = F.cross_entropy(logits[:, 10:].reshape(-1, logits.size(-1)), y[:, 10:].reshape(-1))
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_cli_pretrain_prints_the_plan_and_draws_curves():
    train_corpus.write_books()
    result = runner.invoke(
        app,
        [
            "train",
            "pretrain",
            "--preset",
            "tiny",
            "--out",
            "cli",
            "--max-steps",
            "10",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--eval-every",
            "5",
        ],
    )
    assert result.exit_code == 0, result.output
    for expected in ("551,072 parameters", "per step", "tokens", "estimate", "Done: 10 steps"):
        assert expected in result.output
    assert "val loss" in result.output
    curves = runner.invoke(app, ["train", "curves", "cli"])
    assert curves.exit_code == 0, curves.output
    assert "loss vs tokens" in curves.output and "best val loss" in curves.output


def test_cli_without_cleaned_books_says_what_to_run(tmp_path):
    result = runner.invoke(app, ["train", "pretrain", "--preset", "tiny", "--out", "x"])
    assert result.exit_code != 0
    assert "storytui data download gutenberg" in str(result.exception)
    missing = runner.invoke(app, ["train", "curves", "nothing"])
    assert missing.exit_code != 0 and "no training metrics" in str(missing.exception)


def test_token_byte_lengths_feed_the_denominator():
    tokenizer = load_tokenizer()
    lengths = np.asarray(tokenizer.token_byte_lengths())
    ids = tokenizer.encode("Hello — wörld")
    assert int(lengths[ids].sum()) == len("Hello — wörld".encode())


def test_cli_seed_recipe_plan_and_record():
    train_corpus.write_books()
    result = runner.invoke(
        app,
        [
            "train",
            "pretrain",
            "--preset",
            "tiny",
            "--recipe",
            "seed",
            "--out",
            "seedrec",
            "--max-steps",
            "3",
            "--batch-size",
            "2",
            "--device",
            "cpu",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "recipe seed" in result.output and "fp32 (requested)" in result.output
    assert "lr 1.00e-04 → 1.00e-05" in result.output and "warmup 0" in result.output
    run = load_checkpoint(paths.model_dir("seedrec")).meta.extra["run"]
    assert run["recipe"] == "seed" and run["hp"]["weight_decay"] == 0.0
    assert run["hp"]["grad_clip"] is None and run["hp"]["betas"] == [0.9, 0.999]


def test_cli_rejects_bad_options():
    train_corpus.write_books()
    for args, message in (
        (["--out", "../escape"], "--out: invalid model name '../escape'"),
        (["--out", "default"], "--out: 'default' is the bundled model's name"),
        (["--out", "ok", "--dtype", "fp16", "--device", "cpu"], "fp16 needs a GPU"),
        (["--out", "ok", "--lr", "-1"], "invalid lr"),
        (["--out", "ok", "--time-budget", "0"], "invalid --time-budget"),
        (["--out", "ok", "--preset", "huge"], "unknown preset"),
    ):
        result = runner.invoke(app, ["train", "pretrain", "--preset", "tiny", *args][:])
        assert result.exit_code != 0
        assert message in str(result.exception), (args, result.exception)


def test_time_budget_fits_the_steps_to_the_measured_speed():
    train_corpus.write_books()
    spec = train_corpus.pretrain("budget", steps=100_000)
    spec.time_budget_s = 2.0
    result = train(spec)
    assert result.plan.steps < 100_000 and result.total_steps == result.plan.steps
    assert result.stopped_by in ("done", "time budget")
    assert load_checkpoint(paths.model_dir("budget")).meta.steps == result.steps
