"""Finetuning: starts from a pretrained checkpoint, keeps its vocabulary and story layout,
trains only on stories (not prompts) by default, and records where it came from."""

from __future__ import annotations

import random

import pytest
import torch
from typer.testing import CliRunner

from storytui import paths
from storytui.checkpoint import load_checkpoint, read_meta
from storytui.cli import _mount_trainer, app
from storytui.errors import StoryError
from storytui.story_format import StoryTemplate
from tests import train_corpus
from trainer.loop import evaluate, train
from trainer.stages import finetune_shards, finetune_spec
from trainer.throughput import Precision

_mount_trainer()
runner = CliRunner()
FAST = {**train_corpus.FAST, "eval_every": 5}


@pytest.fixture
def pretrained():
    train_corpus.write_books()
    train_corpus.write_pairs()
    train(train_corpus.pretrain("base", steps=6))
    return "base"


def _spec(name: str, parent: str, steps: int, **kwargs):
    spec = finetune_spec(name, parent, None, {**FAST, "max_steps": steps}, device="cpu", **kwargs)
    spec.sample_tokens = 6
    return spec


def test_finetune_starts_from_the_parent_and_records_it(pretrained):
    parent = load_checkpoint(paths.model_dir(pretrained))
    spec = _spec("tuned", pretrained, steps=0 + 10)
    for key, value in parent.model.state_dict().items():  # starts exactly at the parent
        assert torch.equal(spec.init_state[key], value)
    result = train(spec)
    assert result.stopped_by == "done"

    child = load_checkpoint(paths.model_dir("tuned"))
    assert child.meta.stage == "finetune" and child.meta.parent == "base"
    assert child.meta.preset == "tiny" and child.meta.steps == 10
    assert (child.tokenizer.name, child.tokenizer.hash) == (
        parent.tokenizer.name,
        parent.tokenizer.hash,
    )
    assert child.meta.template == parent.meta.template
    assert child.meta.extra["run"]["options"] == {"mask_prompt": True, "tales": False}
    assert child.meta.val_bpb is not None
    changed = [
        k
        for k, v in child.model.state_dict().items()
        if not torch.equal(v, parent.model.state_dict()[k])
    ]
    assert changed  # it trained


def test_finetune_keeps_a_custom_template(pretrained):
    """The finetune data is laid out with the parent's template (what the app will use)."""
    from storytui.checkpoint import save_checkpoint

    parent = load_checkpoint(paths.model_dir(pretrained))
    custom = StoryTemplate(with_memory="<<{prompt}|{memory}>>\n", prompt_only="<<{prompt}>>\n")
    parent.meta.template = custom
    save_checkpoint(paths.model_dir("custom-base"), parent.model, parent.meta)
    spec = _spec("custom-tuned", "custom-base", steps=2)
    assert spec.template == custom
    tokens, mask = spec.data.arrays("train")
    header = spec.tokenizer.encode("<<Write about")
    assert list(tokens[: len(header)]) == header and not mask[: len(header)].any()
    train(spec)
    assert read_meta(paths.model_dir("custom-tuned")).template == custom


def test_masked_prompts_are_not_scored(pretrained):
    tokenizer = load_checkpoint(paths.model_dir(pretrained)).tokenizer
    template = StoryTemplate()
    masked = finetune_shards(tokenizer, template, mask_prompt=True)
    full = finetune_shards(tokenizer, template, mask_prompt=False)
    assert masked.stats("val").tokens == full.stats("val").tokens
    assert masked.stats("val").targets < full.stats("val").targets

    model = load_checkpoint(paths.model_dir(pretrained)).model
    lengths = torch.as_tensor(tokenizer.token_byte_lengths())
    scores = {}
    for label, shards in (("masked", masked), ("full", full)):
        scores[label] = evaluate(
            model,
            shards,
            "val",
            4,
            64,
            1000,
            Precision("fp32", "cpu"),
            torch.device("cpu"),
            lengths,
        )
        _, mask = shards.arrays("val")
        assert scores[label].tokens == int(mask[1:].sum())  # exactly the unmasked targets
    assert scores["masked"].tokens < scores["full"].tokens

    x, y = next(iter(masked.iter_eval_batches("train", 2, 64)))
    assert (y == -100).any() and (y != -100).any()
    header_targets = y == -100
    other = y.clone()
    other[header_targets] = 7  # what a masked target "is" must not matter...
    changed = y.clone()
    changed[~header_targets] = 7  # ...while a story target does
    with torch.no_grad():
        base = model(x, y)[1]
        assert torch.equal(base, model(x, torch.where(header_targets, -100, other))[1])
        assert not torch.equal(base, model(x, changed)[1])


def test_no_mask_prompt_is_recorded(pretrained):
    train(_spec("unmasked", pretrained, steps=2, mask_prompt=False))
    options = read_meta(paths.model_dir("unmasked")).extra["run"]["options"]
    assert options == {"mask_prompt": False, "tales": False}


def test_tales_join_the_training_split_only(pretrained):
    from tests.test_sources_tales import _collection

    collection = _collection(random.Random(5))
    (paths.clean_dir("gutenberg") / "pg2591.txt").write_text(collection, encoding="utf-8")
    template = StoryTemplate()
    plain = finetune_shards(load_checkpoint(paths.model_dir(pretrained)).tokenizer, template, True)
    spec = _spec("told", pretrained, steps=2, tales=True)
    with_tales = spec.data
    assert with_tales.name == plain.name + "-tales"
    assert with_tales.stats("train").documents == plain.stats("train").documents + 3
    for split in ("val", "test"):  # evaluation stays on WritingPrompts
        assert with_tales.stats(split) == plain.stats(split)
    tokens, _ = with_tales.arrays("train")
    text = spec.tokenizer.decode([int(t) for t in tokens])
    assert "[Prompt] The Silver Key\n[Story]\n" in text
    train(spec)
    assert read_meta(paths.model_dir("told")).extra["run"]["options"]["tales"] is True


def test_cli_finetune_tales_without_collections_says_so(pretrained):
    result = runner.invoke(
        app,
        ["train", "finetune", "--from", pretrained, "--out", "t", "--tales", "--max-steps", "1"],
    )
    assert isinstance(result.exception, StoryError)
    assert "no tales found" in str(result.exception)


def test_cli_finetune_needs_a_parent_that_exists(pretrained):
    missing = runner.invoke(app, ["train", "finetune", "--out", "x"])
    assert missing.exit_code != 0 and "--from" in str(missing.exception)
    unknown = runner.invoke(app, ["train", "finetune", "--from", "nope", "--out", "x"])
    assert isinstance(unknown.exception, StoryError) and "nope" in str(unknown.exception)


def test_cli_finetune_runs(pretrained):
    result = runner.invoke(
        app,
        [
            "train",
            "finetune",
            "--from",
            pretrained,
            "--out",
            "cli-tuned",
            "--max-steps",
            "3",
            "--batch-size",
            "2",
            "--device",
            "cpu",
            "--dtype",
            "fp32",
            "--no-mask-prompt",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "finetune cli-tuned" in result.output and "Done: 3 steps" in result.output
    meta = read_meta(paths.model_dir("cli-tuned"))
    assert meta.parent == pretrained and meta.stage == "finetune"


def test_finetune_without_pairs_says_what_to_run():
    train_corpus.write_books()
    train(train_corpus.pretrain("lonely", steps=2))
    with pytest.raises(StoryError, match="storytui data download writingprompts"):
        _spec("x", "lonely", steps=2)
