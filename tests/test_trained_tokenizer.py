"""A vocabulary the user trains: named so it hides nothing, chosen with --tokenizer, and carried
in every checkpoint trained with it, so that model keeps loading wherever it goes."""

from __future__ import annotations

import shutil

import pytest

from storytui import paths
from storytui.checkpoint import VOCABULARY_FILE, load_checkpoint, read_meta
from storytui.tokenizer import load_tokenizer, trained_tokenizer_path
from tests import train_corpus
from tests.test_cli import run_cli
from trainer.stages import resume_spec

FAST = ["--preset", "tiny", "--device", "cpu", "--dtype", "fp32", "--batch-size", "2"]


def train_vocabulary(capsys, *extra: str, size: int = 300) -> tuple[int, str, str]:
    return run_cli(["train", "tokenizer", "--size", str(size), *extra], capsys)


@pytest.fixture
def books():
    train_corpus.write_books(n_books=3, paragraphs=12)


def test_a_trained_vocabulary_gets_a_name_of_its_own_and_is_never_replaced_unasked(books, capsys):
    code, out, err = train_vocabulary(capsys)
    assert code == 0, err
    path = trained_tokenizer_path("custom-300")
    assert path.is_file() and path.parent == paths.home() / "tokenizers"
    assert "storytui train pretrain --tokenizer custom-300 --out NAME" in out
    assert load_tokenizer("custom-300").n_vocab == 300

    code, _, err = train_vocabulary(capsys)
    assert code == 1 and f"{path} exists" in err and "--force" in err
    code, _, err = train_vocabulary(capsys, "--name", "custom-300", "--force", size=280)
    assert code == 0, err
    assert load_tokenizer("custom-300").n_vocab == 280  # the new file is read, not a stale one
    assert train_vocabulary(capsys, size=16384 - 1024)[0] == 0
    assert trained_tokenizer_path("custom-15k").is_file()


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("storytui-16k", "'storytui-16k' is the name of a bundled vocabulary; choose another"),
        ("gpt2", "'gpt2' is the name of a bundled vocabulary; choose another"),
        ("../up", "invalid vocabulary name '../up'"),
        ("Storytui-16K", "'Storytui-16K' is the bundled vocabulary 'storytui-16k''s name in other"),
        ("mine.tiktoken", "vocabulary name 'mine.tiktoken': leave out .tiktoken"),
        ("", "invalid vocabulary name ''"),
    ],
)
def test_a_name_that_would_hide_a_bundled_vocabulary_or_leave_the_folder_is_refused(
    books, capsys, name, message
):
    code, _, err = train_vocabulary(capsys, "--name", name)
    assert code == 1 and err.startswith(f"storytui: error: {message}")
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert not paths.trained_tokenizers_dir().exists()


def test_pretraining_with_it_then_finetuning_carries_it_in_every_checkpoint(
    books, capsys, tmp_path
):
    assert train_vocabulary(capsys)[0] == 0
    args = ["train", "pretrain", *FAST, "--tokenizer", "custom-300", "--out", "own"]
    code, out, err = run_cli([*args, "--max-steps", "2", "--eval-every", "2"], capsys)
    assert code == 0, err
    model = paths.model_dir("own")
    checkpoint = load_checkpoint(model)
    assert checkpoint.meta.model.vocab_size == 300 and checkpoint.tokenizer.n_vocab == 300
    assert checkpoint.meta.tokenizer == "custom-300"
    assert (model / VOCABULARY_FILE).is_file()
    assert (paths.run_dir("own") / "latest" / VOCABULARY_FILE).is_file()

    # the user retrains a different vocabulary under the same name, then deletes it: the model
    # and its run still use their own copy
    assert train_vocabulary(capsys, "--name", "custom-300", "--force", size=270)[0] == 0
    trained_tokenizer_path("custom-300").unlink()
    assert load_checkpoint(model).tokenizer.hash == checkpoint.tokenizer.hash
    latest = load_checkpoint(paths.run_dir("own") / "latest")  # what --resume would train on
    assert latest.tokenizer.hash == checkpoint.tokenizer.hash
    code, out, _ = run_cli(["models", "info", "own"], capsys)
    assert code == 0 and "custom-300" in out and "tokenizer.tiktoken, in the checkpoint" in out

    story = tmp_path / "story.txt"
    story.write_text("Alice walked to the river.", encoding="utf-8")
    code, out, err = run_cli(
        ["continue", str(story), "-m", "own", "-n", "8", "--seed", "3"], capsys
    )
    assert code == 0, err
    assert (
        run_cli(["continue", str(story), "-m", "own", "-n", "8", "--seed", "3"], capsys)[1] == out
    )

    # a copied checkpoint loads anywhere: the vocabulary travels inside it
    elsewhere = tmp_path / "copied"
    shutil.copytree(model, elsewhere)
    assert load_checkpoint(elsewhere).tokenizer.n_vocab == 300

    train_corpus.write_pairs()
    finetune = ["train", "finetune", "--from", "own", "--out", "own-ft", "--device", "cpu"]
    code, _, err = run_cli(
        [*finetune, "--dtype", "fp32", "--batch-size", "2", "--max-steps", "1"], capsys
    )
    assert code == 0, err
    finetuned = load_checkpoint(paths.model_dir("own-ft"))
    assert finetuned.tokenizer.hash == checkpoint.tokenizer.hash
    assert (paths.model_dir("own-ft") / VOCABULARY_FILE).is_file()


def test_a_vocabulary_file_can_be_named_directly(books, capsys, tmp_path):
    vocabulary = tmp_path / "mine.tiktoken"
    assert (
        run_cli(["train", "tokenizer", "--size", "290", "--out", str(vocabulary)], capsys)[0] == 0
    )
    args = ["train", "pretrain", *FAST, "--tokenizer", str(vocabulary), "--out", "filed"]
    code, _, err = run_cli([*args, "--max-steps", "1"], capsys)
    assert code == 0, err
    meta = read_meta(paths.model_dir("filed"))
    assert meta.tokenizer == "mine" and meta.model.vocab_size == 290


@pytest.mark.parametrize(
    ("choice", "message"),
    [
        (
            "nothing-here",
            "--tokenizer: no vocabulary named 'nothing-here' (available: storytui-16k, gpt2); "
            "train one with `storytui train tokenizer --name nothing-here`, or give a "
            ".tiktoken file",
        ),
        ("missing/file.tiktoken", "--tokenizer: missing/file.tiktoken is not a file"),
    ],
)
def test_a_vocabulary_that_does_not_exist_is_one_line(books, capsys, choice, message):
    args = ["train", "pretrain", *FAST, "--tokenizer", choice, "--out", "x", "--max-steps", "1"]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and err.strip() == f"storytui: error: {message}"
    assert not paths.model_dir("x").exists()


def test_a_vocabulary_file_named_like_a_bundled_one_is_refused(books, capsys, tmp_path):
    for name in ("storytui-16k", "GPT2"):
        copy = tmp_path / f"{name}.tiktoken"
        shutil.copy(paths.tokenizer_assets_dir() / "storytui-16k.tiktoken", copy)
        args = ["train", "pretrain", *FAST, "--tokenizer", str(copy), "--out", "x"]
        code, _, err = run_cli([*args, "--max-steps", "1"], capsys)
        assert code == 1 and ("name of a bundled vocabulary" in err or "in other letters" in err)
        assert "rename the file" in err


def test_models_with_a_bundled_vocabulary_carry_no_copy(tiny_checkpoint):
    assert not (tiny_checkpoint / VOCABULARY_FILE).exists()


def test_a_carried_vocabulary_that_was_altered_or_is_missing_is_refused(books, capsys, tmp_path):
    assert train_vocabulary(capsys)[0] == 0
    args = ["train", "pretrain", *FAST, "--tokenizer", "custom-300", "--out", "own"]
    assert run_cli([*args, "--max-steps", "1"], capsys)[0] == 0
    model = paths.model_dir("own")
    carried = model / VOCABULARY_FILE
    *rest, (token_a, rank_a), (token_b, rank_b) = [
        line.split() for line in carried.read_text().splitlines()
    ]
    swapped = [*map(" ".join, rest), f"{token_b} {rank_a}", f"{token_a} {rank_b}"]
    carried.write_text("\n".join(swapped) + "\n")  # still a valid file, another vocabulary
    story = tmp_path / "story.txt"
    story.write_text("Tom found the sea.", encoding="utf-8")
    code, _, err = run_cli(["continue", str(story), "-m", "own", "-n", "2"], capsys)
    assert code == 1 and "was trained with vocabulary custom-300" in err
    assert f"but its {VOCABULARY_FILE} is sha256:" in err

    carried.unlink()
    trained_tokenizer_path("custom-300").unlink()
    code, out, err = run_cli(["models", "info", "own"], capsys)  # described, then refused
    assert code == 1 and "custom-300" in out
    assert err.startswith("storytui: error: own cannot be loaded: checkpoint own was trained")
    code, _, err = run_cli(["continue", str(story), "-m", "own", "-n", "2"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1
    assert "vocabulary 'custom-300', which it does not carry and this install does not have" in err


def test_resuming_with_another_tokenizer_warns_that_it_is_ignored(books, capsys):
    assert train_vocabulary(capsys)[0] == 0
    base = ["train", "pretrain", *FAST, "--out", "r", "--max-steps", "1"]
    assert run_cli(base, capsys)[0] == 0
    _, _, err = run_cli([*base, "--resume", "--tokenizer", "custom-300"], capsys)
    assert "ignoring" in err and "--tokenizer" in err
    assert read_meta(paths.model_dir("r")).tokenizer == "storytui-16k"


def test_out_never_replaces_a_file_unasked_and_is_checked_before_training(books, capsys, tmp_path):
    notes = tmp_path / "notes.tiktoken"
    notes.write_text("my precious notes\n")
    code, _, err = run_cli(["train", "tokenizer", "--size", "300", "--out", str(notes)], capsys)
    assert code == 1 and f"{notes} exists; --force replaces it" in err
    assert notes.read_text() == "my precious notes\n"
    cases = {
        str(tmp_path): "is a folder; give a file",
        str(tmp_path / "notes.txt"): "the file's name must end in .tiktoken",
        str(tmp_path / "nowhere" / "v.tiktoken"): "does not exist",
        str(tmp_path / "gpt2.tiktoken"): "'gpt2' is the name of a bundled vocabulary",
    }
    for out, message in cases.items():
        code, _, err = run_cli(["train", "tokenizer", "--size", "300", "--out", out], capsys)
        assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    args = ["train", "tokenizer", "--size", "300", "--name", "other", "--out", str(notes)]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "disagree" in err
    replace = ["train", "tokenizer", "--size", "300", "--out", str(notes), "--force"]
    code, _, err = run_cli(replace, capsys)
    assert code == 0 and notes.read_text().startswith("AA== 0"), err


def test_a_small_text_that_gives_fewer_tokens_than_asked_says_so(capsys):
    train_corpus.write_books(n_books=1, paragraphs=2)
    code, out, err = train_vocabulary(capsys, size=60_000)
    assert code == 0, err
    assert "note: the text had pairs worth merging for only" in out and "60,000" in out


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "not a byte-level vocabulary: 256 of the 256 single-byte tokens are missing"),
        ("YQ== 0\n", "not a byte-level vocabulary: 255 of the 256"),
        ("not base64\n", "line 1 is not a base64 token and its rank"),
    ],
)
def test_a_broken_vocabulary_file_is_one_line_wherever_it_is(
    books, capsys, tmp_path, content, message, tiny_checkpoint
):
    bad = tmp_path / "bad.tiktoken"
    bad.write_text(content)
    args = ["train", "pretrain", *FAST, "--tokenizer", str(bad), "--out", "x", "--max-steps", "1"]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and message in err and "Traceback" not in err

    assert train_vocabulary(capsys)[0] == 0
    own = ["train", "pretrain", *FAST, "--tokenizer", "custom-300", "--out", "own"]
    assert run_cli([*own, "--max-steps", "1"], capsys)[0] == 0
    (paths.model_dir("own") / VOCABULARY_FILE).write_text(content)
    story = tmp_path / "story.txt"
    story.write_text("Tom found the sea.", encoding="utf-8")
    code, _, err = run_cli(["continue", str(story), "-m", "own", "-n", "2"], capsys)
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1
    # without --model, the broken one is skipped with a warning, like any that does not load
    code, _, err = run_cli(["continue", str(story), "-n", "2"], capsys)
    assert "skipp" in err and message in err and "Traceback" not in err


def test_a_copy_that_is_a_folder_or_a_name_that_is_a_path_is_refused(books, capsys, tmp_path):
    import json

    assert train_vocabulary(capsys)[0] == 0
    own = ["train", "pretrain", *FAST, "--tokenizer", "custom-300", "--out", "own"]
    assert run_cli([*own, "--max-steps", "1"], capsys)[0] == 0
    model = paths.model_dir("own")
    story = tmp_path / "story.txt"
    story.write_text("Tom found the sea.", encoding="utf-8")
    carried = model / VOCABULARY_FILE
    carried.unlink()
    carried.mkdir()
    code, _, err = run_cli(["continue", str(story), "-m", "own", "-n", "2"], capsys)
    assert code == 1 and f"cannot read vocabulary file {carried}" in err
    carried.rmdir()
    config = json.loads((model / "config.json").read_text())
    config["tokenizer"]["name"] = "../evil"
    (model / "config.json").write_text(json.dumps(config))
    code, _, err = run_cli(["continue", str(story), "-m", "own", "-n", "2"], capsys)
    assert code == 1 and "names vocabulary '../evil', which is not a vocabulary name" in err


def test_a_resumed_run_trains_on_its_own_vocabularys_shards(books, capsys):
    """A vocabulary retrained under the same name gets shards of its own: resuming a run of
    the old one must not read the new one's token ids."""
    from trainer.stages import pretrain_spec

    assert train_vocabulary(capsys, "--name", "mine")[0] == 0
    assert halted_run("first", tokenizer="mine").stopped_by == "halt"
    assert train_vocabulary(capsys, "--name", "mine", "--force", size=280)[0] == 0
    second = pretrain_spec("second", "tiny", None, {}, tokenizer="mine", device="cpu")
    resumed = resume_spec("first", "pretrain", device="cpu")
    assert resumed.tokenizer.n_vocab == 300 and second.tokenizer.n_vocab == 280
    assert resumed.data.matches(resumed.tokenizer) and second.data.matches(second.tokenizer)
    assert resumed.data.directory != second.data.directory


def halted_run(name: str, tokenizer: str | None = None):
    """A run stopped after its first of four steps, as if interrupted: one to resume."""
    from trainer.loop import train
    from trainer.stages import pretrain_spec

    overrides = {**train_corpus.FAST, "max_steps": 4}
    spec = pretrain_spec(name, "tiny", None, overrides, tokenizer=tokenizer, device="cpu")
    spec.halt_after_steps, spec.sample_tokens = 1, 0
    return train(spec)


def test_damaged_training_state_is_one_line_on_resume(books, capsys):
    assert halted_run("r").stopped_by == "halt"
    state = paths.run_dir("r") / "latest" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])
    code, _, err = run_cli(["train", "pretrain", "--out", "r", "--resume"], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "Traceback" not in err
    assert "runs/r/latest is damaged and cannot be resumed" in err
    assert "storytui models rm r" in err
