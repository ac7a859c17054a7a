"""`storytui models eval`: scores computed right, every token scored once, reproducible."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from storytui import paths
from storytui.checkpoint import load_checkpoint
from storytui.tokenizer import load_tokenizer
from trainer import evaluate as ev

PAIRS = [
    {
        "prompt": "A man in a sinking ship",
        "story": "Water rose to his knees. He laughed anyway.",
        "source": "t",
    },
    {
        "prompt": "A woman hugging a child",
        "story": "She held on until the train was gone.",
        "source": "t",
    },
]
BOOK = "It was the best of times, it was the worst of times. " * 40


def test_distinct_and_repetition_metrics() -> None:
    assert ev.distinct_n(["a b c d"], 2) == 1.0
    assert ev.distinct_n(["a b a b"], 2) == pytest.approx(2 / 3)
    assert ev.repeated_4gram_share(["a b c d a b c d"]) == pytest.approx(1 / 5)
    assert ev.repeated_4gram_share(["one two three four five"]) == 0.0


def test_strided_scoring_counts_each_target_once_and_matches_direct_loss(
    tiny_checkpoint: Path,
) -> None:
    checkpoint = load_checkpoint(tiny_checkpoint)
    model, tok = checkpoint.model, checkpoint.tokenizer
    lengths = tok.token_byte_lengths()
    short = tok.encode("The whale surfaced beside the boat.")
    loss, count, nbytes = ev.score_tokens(model, short, 1, lengths, block_size=128)
    with torch.no_grad():
        logits, _ = model(torch.tensor([short[:-1]]))
    direct = torch.nn.functional.cross_entropy(logits[0], torch.tensor(short[1:]), reduction="sum")
    assert count == len(short) - 1
    assert nbytes == len(b"The whale surfaced beside the boat.") - len(tok.token_bytes(short[0]))
    assert loss == pytest.approx(float(direct), rel=1e-5)
    long = tok.encode(BOOK)
    assert len(long) > 300
    _, count, nbytes = ev.score_tokens(model, long, 1, lengths, block_size=128)
    assert count == len(long) - 1
    assert nbytes == sum(int(lengths[t]) for t in long[1:])


def test_evaluate_reports_all_figures_reproducibly(tiny_checkpoint: Path, monkeypatch) -> None:
    clean = paths.clean_dir("writingprompts")
    clean.mkdir(parents=True)
    (clean / "valid.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    monkeypatch.setattr(ev, "heldout_book_texts", lambda: [BOOK])
    first = ev.evaluate("tiny-test", split="valid", n_samples=3, sample_tokens=30).to_json()
    again = ev.evaluate("tiny-test", split="valid", n_samples=3, sample_tokens=30).to_json()
    assert first == again
    wp = first["writingprompts"]
    story_bytes = sum(len(p["story"].encode()) for p in PAIRS)
    assert wp["bytes"] == story_bytes  # only story text is scored, never the prompt header
    assert wp["words"] == sum(len(p["story"].split()) for p in PAIRS)
    assert 0 < wp["bits_per_byte"] < 20
    assert wp["word_perplexity"] == pytest.approx(
        math.exp(wp["token_loss"] * wp["tokens"] / wp["words"]), rel=1e-3
    )
    assert first["gutenberg"]["tokens"] > 0
    assert len(first["samples"]) == 3
    assert first["samples"][0]["prompt"] == "A man in a sinking ship"
    assert 0 < first["generation"]["distinct_2"] <= 1


def test_max_tokens_caps_each_corpus_by_cutting_the_last_story(
    tiny_checkpoint: Path, monkeypatch
) -> None:
    clean = paths.clean_dir("writingprompts")
    clean.mkdir(parents=True)
    (clean / "valid.jsonl").write_text("".join(json.dumps(p) + "\n" for p in PAIRS))
    monkeypatch.setattr(ev, "heldout_book_texts", lambda: [BOOK])
    tok = load_checkpoint(tiny_checkpoint).tokenizer
    first, second = (tok.encode(p["story"]) for p in PAIRS)
    limit = len(first) + 3  # all of the first story, then a limit part-way into the second
    assert len(second) > 3

    report = ev.evaluate("tiny-test", n_samples=0, max_tokens=limit).to_json()
    wp = report["writingprompts"]
    assert wp["tokens"] == limit
    cut = tok.decode(second[:3])
    assert wp["bytes"] == len(PAIRS[0]["story"].encode()) + len(cut.encode())
    assert wp["words"] == len(PAIRS[0]["story"].split()) + len(cut.split())
    assert report["gutenberg"]["tokens"] == limit


def test_missing_split_is_one_clear_error(tiny_checkpoint: Path) -> None:
    from storytui.errors import StoryError

    with pytest.raises(StoryError, match="storytui data download writingprompts"):
        ev.evaluate("tiny-test", n_samples=0)
    with pytest.raises(StoryError, match="invalid split"):
        ev.evaluate("tiny-test", split="train")


def test_bits_per_byte_is_tokenizer_independent_for_uniform_model() -> None:
    # a model that spreads probability evenly over V tokens pays log2(V) bits per token
    score = ev.TextScore(loss_nats=10 * math.log(16384), tokens=10, bytes=40, words=8)
    assert score.bits_per_byte == pytest.approx(10 * 14 / 40)
    assert load_tokenizer().n_vocab == 16384


def test_a_json_path_in_a_missing_folder_is_refused_before_evaluating(
    tiny_checkpoint: Path, tmp_path: Path, monkeypatch
) -> None:
    from storytui.errors import StoryError
    from trainer.eval_cli import run_eval

    monkeypatch.setattr(ev, "evaluate", lambda *a, **k: pytest.fail("evaluated anyway"))
    target = tmp_path / "missing" / "dir" / "x.json"
    with pytest.raises(StoryError) as info:
        run_eval("tiny-test", split="valid", samples=0, max_tokens=10, json_out=target)
    assert str(info.value) == f"--json {target}: the folder {target.parent} does not exist"
    assert not (tmp_path / "missing").exists()
    with pytest.raises(StoryError, match="is a folder; give a file"):
        run_eval("tiny-test", split="valid", samples=0, max_tokens=10, json_out=tmp_path)
