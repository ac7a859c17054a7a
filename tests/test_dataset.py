"""Token shards: building, caching, rebuilding, masks and the batches drawn from them."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from storytui import paths
from storytui.errors import StoryError
from storytui.story_format import StoryTemplate
from storytui.tokenizer import Tokenizer, load_tokenizer
from trainer.dataset import (
    IGNORE_INDEX,
    ShardSet,
    build_shards,
    finetune_documents,
    pretrain_documents,
    token_dtype,
)

PROSE = (
    "The ship came into the harbour on a grey morning, and the whole town went down to see it. "
    "Nobody had expected it so early in the year, and the old woman at the gate said so twice. "
)


def byte_tokenizer() -> Tokenizer:
    """A real tiktoken vocabulary of the 256 bytes alone: same API, different hash."""
    return Tokenizer("bytes-test", {bytes([i]): i for i in range(256)})


class Spy:
    """Wraps a tokenizer and counts encode calls, to prove a cached build does no work."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name, self.hash, self.n_vocab, self.eot = (
            inner.name,
            inner.hash,
            inner.n_vocab,
            inner.eot,
        )
        self.calls = 0

    def encode_batch(self, texts):
        self.calls += 1
        return self.inner.encode_batch(texts)


def docs(n: int = 6, header: str = "") -> dict[str, list[tuple[str, str]]]:
    return {
        "train": [(header, f"Story {i}. " + PROSE * 3) for i in range(n)],
        "val": [(header, "Held out. " + PROSE * 2)],
    }


def test_build_writes_tokens_masks_and_meta():
    tok = load_tokenizer()
    documents = docs()
    shards = build_shards("pre", documents, tok, progress=False)
    tokens, mask = shards.arrays("train")
    expected: list[int] = []
    for _, body in documents["train"]:
        expected += [*tok.encode(body), tok.eot]
    assert tokens.tolist() == expected
    assert mask.tolist() == [1] * len(expected)  # pretraining: every token is a target
    meta = json.loads((paths.shards_dir("pre") / "meta.json").read_text())
    assert meta["tokenizer"] == tok.name and meta["tokenizer_hash"] == tok.hash
    assert meta["dtype"] == "uint16"
    assert meta["splits"]["train"]["documents"] == 6
    assert meta["splits"]["train"]["tokens"] == len(expected)
    assert meta["splits"]["train"]["bytes"] == sum(len(b.encode()) for _, b in documents["train"])
    assert (paths.shards_dir("pre") / "train.bin").stat().st_size == 2 * len(expected)
    assert ShardSet.load("pre").stats("val").documents == 1


def test_header_tokens_are_masked_from_the_loss():
    tok = load_tokenizer()
    header, body = "[Prompt] A dragon wakes\n[Story]\n", "The dragon opened one eye."
    shards = build_shards("fine", {"train": [(header, body)] * 3}, tok, progress=False)
    tokens, mask = shards.arrays("train")
    n_head, n_body = len(tok.encode(header)), len(tok.encode(body))
    one = [0] * n_head + [1] * (n_body + 1)
    assert mask.tolist() == one * 3
    assert tokens[: n_head + n_body + 1].tolist() == [
        *tok.encode(header),
        *tok.encode(body),
        tok.eot,
    ]

    x, y = next(shards.iter_eval_batches("train", batch_size=1, block_size=len(tokens) - 1))
    targets = y[0].tolist()
    # y[i] is token i+1: ignored exactly where token i+1 is a header token.
    assert targets == [
        IGNORE_INDEX if m == 0 else t for t, m in zip(tokens[1:].tolist(), mask[1:], strict=True)
    ]
    assert x[0].tolist() == tokens[:-1].tolist()


def test_second_build_is_cached_and_changes_rebuild():
    tok = Spy(load_tokenizer())
    build_shards("cache", docs(), tok, progress=False)
    first_calls = tok.calls
    bin_path = paths.shards_dir("cache") / "train.bin"
    stamp = bin_path.stat().st_mtime_ns

    again = build_shards("cache", docs(), tok, progress=False)
    assert tok.calls == first_calls  # nothing re-tokenised
    assert bin_path.stat().st_mtime_ns == stamp
    assert again.stats("train").documents == 6

    changed = docs()
    changed["train"][0] = ("", "A different first story. " + PROSE)
    build_shards("cache", changed, tok, progress=False)
    assert tok.calls > first_calls

    calls = tok.calls
    build_shards("cache", changed, tok, force=True, progress=False)
    assert tok.calls > calls


@pytest.mark.parametrize("force", [False, True])
def test_builders_of_the_same_shards_at_once_tokenise_them_once(force: bool):
    """The ranks of a data-parallel run all build the same shards at start: the first builds,
    the others wait and take its shards (with ``force`` too: they were built after it asked)."""
    import threading

    first_started, release = threading.Event(), threading.Event()

    class SlowSpy(Spy):
        def encode_batch(self, texts):
            first_started.set()
            release.wait(10)  # hold the build until the other builder is waiting for it
            return super().encode_batch(texts)

    builders = [SlowSpy(load_tokenizer()), Spy(load_tokenizer())]
    results = {}

    def build(i: int) -> None:
        results[i] = build_shards("ranks", docs(), builders[i], force=force, progress=False)

    first = threading.Thread(target=build, args=(0,))
    first.start()
    assert first_started.wait(10)
    second = threading.Thread(target=build, args=(1,))
    second.start()
    second.join(0.5)
    waiting = second.is_alive()  # for the first build, not tokenising beside it
    release.set()
    first.join(10)
    second.join(10)
    assert waiting
    assert builders[0].calls > 0 and builders[1].calls == 0
    assert results[0].meta == results[1].meta


def test_new_tokenizer_rebuilds_with_its_own_ids():
    build_shards("swap", docs(), load_tokenizer(), progress=False)
    other = byte_tokenizer()
    shards = build_shards("swap", docs(), other, progress=False)
    assert shards.meta["tokenizer_hash"] == other.hash
    assert shards.matches(other) and not shards.matches(load_tokenizer())
    body = docs()["train"][0][1]
    assert shards.arrays("train")[0][: len(body)].tolist() == list(body.encode())


def test_large_vocabularies_use_uint32():
    class BigVocab:
        name, hash, n_vocab, eot = "big", "big-1", 70_000, 69_999

        def encode_batch(self, texts):
            return [[66_000 + (ord(c) % 1000) for c in text] for text in texts]

    assert token_dtype(65_536) == np.uint16 and token_dtype(65_537) == np.uint32
    shards = build_shards("big", {"train": [("", "hello world")]}, BigVocab(), progress=False)
    assert shards.meta["dtype"] == "uint32"
    assert shards.arrays("train")[0].tolist() == [66_000 + ord(c) for c in "hello world"] + [69_999]


def test_incomplete_shards_are_refused_on_load():
    build_shards("broken", docs(), load_tokenizer(), progress=False)
    path = paths.shards_dir("broken") / "train.bin"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(StoryError, match="incomplete"):
        ShardSet.load("broken")
    with pytest.raises(StoryError, match="no token shards"):
        ShardSet.load("never-built")


def test_get_batch_windows_are_next_token_pairs_and_seeded():
    shards = build_shards("batches", docs(), byte_tokenizer(), progress=False)
    tokens, _ = shards.arrays("train")
    x, y = shards.get_batch("train", 8, 32, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (8, 32) and x.dtype == y.dtype == torch.int64
    assert torch.equal(x[:, 1:], y[:, :-1])
    stream = torch.from_numpy(tokens.astype(np.int64))
    for row in x:  # every window is a real slice of the split
        starts = [s for s in range(len(stream) - 32) if torch.equal(stream[s : s + 32], row)]
        assert starts
    x2, _ = shards.get_batch("train", 8, 32, torch.Generator().manual_seed(0))
    x3, _ = shards.get_batch("train", 8, 32, torch.Generator().manual_seed(1))
    assert torch.equal(x, x2) and not torch.equal(x, x3)


def test_get_batch_masks_prompt_targets():
    header = "[Prompt] " + "A long prompt about dragons and ships. " * 4 + "\n[Story]\n"
    shards = build_shards("mask", docs(header=header), load_tokenizer(), progress=False)
    tokens, mask = shards.arrays("train")
    stream = tokens.astype(np.int64)
    x, y = shards.get_batch("train", 16, 64, torch.Generator().manual_seed(3))
    assert (y == IGNORE_INDEX).any() and (y != IGNORE_INDEX).any()
    for row_x, row_y in zip(x.numpy(), y.numpy(), strict=True):
        expected = [
            np.where(mask[s + 1 : s + 65] == 0, IGNORE_INDEX, stream[s + 1 : s + 65])
            for s in range(len(stream) - 64)
            if np.array_equal(stream[s : s + 64], row_x)
        ]
        assert any(np.array_equal(row_y, e) for e in expected)


def test_split_too_small_for_a_block_is_a_clear_error():
    shards = build_shards("tiny", {"train": [("", "hi")]}, byte_tokenizer(), progress=False)
    with pytest.raises(StoryError, match="block size"):
        shards.get_batch("train", 2, 64, torch.Generator().manual_seed(0))
    with pytest.raises(StoryError, match="no split 'val'"):
        shards.get_batch("val", 2, 1, torch.Generator())


@pytest.mark.parametrize("block_size", [7, 16, 1000])
def test_eval_batches_cover_every_target_once_in_order(block_size):
    shards = build_shards("eval", docs(3), byte_tokenizer(), progress=False)
    tokens, _ = shards.arrays("train")
    batches = list(shards.iter_eval_batches("train", batch_size=4, block_size=block_size))
    again = list(shards.iter_eval_batches("train", batch_size=4, block_size=block_size))
    assert all(
        torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
        for a, b in zip(batches, again, strict=True)
    )
    counted = sum(int((y != IGNORE_INDEX).sum()) for _, y in batches)
    assert counted == len(tokens) - 1  # every next-token target exactly once
    seen = torch.cat([y[y != IGNORE_INDEX] for _, y in batches])
    assert sorted(seen.tolist()) == sorted(tokens[1:].tolist())
    limited = list(shards.iter_eval_batches("train", 4, block_size, max_batches=1))
    assert len(limited) == 1


def test_pretrain_documents_hold_out_whole_books():
    clean = paths.clean_dir("gutenberg")
    clean.mkdir(parents=True)
    for i in range(60):
        (clean / f"pg{i}.txt").write_text(f"Book {i}. " + PROSE)
    splits = pretrain_documents()
    assert set(splits) == {"train", "val"}
    assert 1 <= len(splits["val"]) <= 8
    assert len(splits["train"]) + len(splits["val"]) == 60
    assert all(header == "" for header, _ in splits["train"] + splits["val"])
    val_books = {body.split(".")[0] for _, body in splits["val"]}
    assert not val_books & {body.split(".")[0] for _, body in splits["train"]}
    assert pretrain_documents() == splits  # deterministic


def test_pretrain_documents_need_books():
    with pytest.raises(StoryError, match="download gutenberg"):
        pretrain_documents()


def test_finetune_documents_format_pairs_and_map_splits():
    out = paths.clean_dir("writingprompts")
    out.mkdir(parents=True)
    rows = {
        "train": [
            {"prompt": "A dragon wakes", "story": "It yawned.", "source": "t"},
            {"prompt": "", "story": "No prompt here.", "source": "t"},
        ],
        "valid": [{"prompt": "Valid", "story": "V.", "source": "t"}],
        "test": [{"prompt": "Test", "story": "T.", "source": "t"}],
    }
    for split, items in rows.items():
        (out / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in items))
    splits = finetune_documents(StoryTemplate())
    assert set(splits) == {"train", "val", "test"}
    header, body = splits["train"][0]
    assert "A dragon wakes" in header and body == "It yawned."
    assert splits["train"][1] == ("", "No prompt here.")
    assert splits["val"][0][1] == "V." and splits["test"][0][1] == "T."


def test_finetune_documents_need_pairs():
    with pytest.raises(StoryError, match="download writingprompts"):
        finetune_documents()
