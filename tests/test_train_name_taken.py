"""--out NAME of an existing run: --resume only for a run that stopped before its end."""

from __future__ import annotations

import pytest

from storytui.errors import StoryError
from tests import train_corpus
from trainer.loop import train


def test_a_finished_run_says_models_rm_not_resume():
    train_corpus.write_books()
    train(train_corpus.pretrain("t1", steps=2, eval_every=2))
    with pytest.raises(StoryError) as info:
        train(train_corpus.pretrain("t1", steps=2, eval_every=2))
    assert str(info.value) == (
        "run 't1' already exists and finished (2 of 2 steps): pick another --out, or delete "
        "it with `storytui models rm t1`"
    )


def test_a_stopped_run_still_says_resume():
    train_corpus.write_books()
    halted = train(train_corpus.pretrain("t2", steps=4, eval_every=2, halt_after_steps=2))
    assert halted.stopped_by == "halt"
    with pytest.raises(StoryError) as info:
        train(train_corpus.pretrain("t2", steps=4, eval_every=2))
    message = str(info.value)
    assert "(it stopped at step 2 of 4): add --resume to continue that run" in message
    assert "`storytui models rm t2`" in message


def test_resuming_a_finished_run_says_there_is_nothing_to_resume():
    from trainer.stages import resume_spec

    train_corpus.write_books()
    train(train_corpus.pretrain("t3", steps=2, eval_every=2))
    with pytest.raises(StoryError, match=r"run 't3' already finished \(2 of 2 steps\)"):
        resume_spec("t3", "pretrain", device="cpu")
