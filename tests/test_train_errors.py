"""Training when things go wrong: a full disk mid-save, a batch that cannot fit, bad flags,
and a resume whose flags differ from the saved run's. Each gives one line, and what is left on
disk can always be resumed or started again."""

from __future__ import annotations

import builtins
import errno
import io
import os
import stat

import pytest
import torch
from rich.console import Console
from safetensors import SafetensorError

from storytui import paths
from storytui.checkpoint import load_checkpoint
from storytui.errors import StoryError
from tests import train_corpus
from tests.test_cli import run_cli
from trainer import loop, run_state
from trainer.loop import train
from trainer.stages import resume_spec

SAFETENSORS_FULL = "Error while serializing: I/O error: No space left on device (os error 28)"


def _fail_weights_under(monkeypatch, part: str) -> list[str]:
    """safetensors reports a full disk for every weights file saved under a path with ``part``
    (the real error: not an OSError, so nothing turned it into a message before)."""
    import storytui.checkpoint as checkpoint

    real = checkpoint.save_file
    failed: list[str] = []

    def save_file(state, filename, metadata=None):
        if part in str(filename):
            failed.append(str(filename))
            raise SafetensorError(SAFETENSORS_FULL)
        return real(state, filename, metadata=metadata)

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    return failed


class _NoSpaceFile:
    """A file whose writes fail as on a full disk."""

    def __init__(self, handle) -> None:
        self.handle = handle

    def write(self, data) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    def __getattr__(self, name):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.handle.close()


def _leftover_temp_dirs(name: str) -> list[str]:
    found = []
    for parent in (paths.run_dir(name), paths.model_dir(name).parent):
        if parent.is_dir():
            found += [p.name for p in parent.iterdir() if ".tmp-" in p.name]
    return found


def test_disk_full_at_the_first_latest_save_leaves_a_run_that_starts_again(monkeypatch):
    train_corpus.write_books()
    with monkeypatch.context() as patched, pytest.raises(StoryError) as info:
        failed = _fail_weights_under(patched, "/runs/")
        train(train_corpus.pretrain("fd", steps=4, eval_every=2))
    message = str(info.value)
    assert failed and "\n" not in message
    assert message.startswith(f"disk full while saving {run_state.latest_dir('fd')}; ")
    assert "no resumable state was saved yet" in message and "--out fd" in message
    assert paths.model_dir("fd").is_dir() and not run_state.latest_dir("fd").exists()
    assert _leftover_temp_dirs("fd") == []

    with pytest.raises(StoryError, match="nothing to resume; start it again without --resume"):
        resume_spec("fd", "pretrain", device="cpu")

    # space again: the same name starts afresh and replaces the leftover
    console = Console(file=io.StringIO(), width=200)
    result = train(train_corpus.pretrain("fd", steps=4, eval_every=2), console=console)
    assert result.stopped_by == "done" and result.steps == 4
    assert "note: replacing" in console.file.getvalue()
    assert load_checkpoint(paths.model_dir("fd")).meta.steps == 4
    assert not (paths.run_dir("fd") / run_state.NO_LATEST_MARK).exists()


def test_disk_full_at_a_later_state_save_keeps_the_last_checkpoint(monkeypatch):
    train_corpus.write_books()
    calls = []

    def open_state(path, mode="r", *args, **kwargs):
        handle = builtins.open(path, mode, *args, **kwargs)  # noqa: SIM115 - the caller closes
        calls.append(path)
        return _NoSpaceFile(handle) if len(calls) == 2 else handle

    # torch.save then fails inside its own zip writer ("unexpected pos"), as on a full disk
    with monkeypatch.context() as patched, pytest.raises(StoryError) as info:
        patched.setattr(run_state, "open", open_state, raising=False)
        train(train_corpus.pretrain("later", steps=6, eval_every=2))
    message = str(info.value)
    assert message == (
        f"disk full while saving {run_state.latest_dir('later')}; the last checkpoint is kept; "
        "once there is space, continue with `storytui train pretrain --out later --resume`"
    )
    state = torch.load(run_state.latest_dir("later") / "state.pt", weights_only=True)
    assert state["step"] == 2 and _leftover_temp_dirs("later") == []

    resumed = train(resume_spec("later", "pretrain", device="cpu"))
    assert resumed.stopped_by == "done" and resumed.steps == 6


def test_disk_full_at_the_first_model_save_leaves_nothing_in_the_way(monkeypatch):
    train_corpus.write_books()
    with monkeypatch.context() as patched, pytest.raises(StoryError) as info:
        _fail_weights_under(patched, "/models/")
        train(train_corpus.pretrain("first", steps=2, eval_every=2))
    assert str(info.value).startswith(f"disk full while saving {paths.model_dir('first')}; ")
    assert not paths.model_dir("first").exists() and _leftover_temp_dirs("first") == []
    assert train(train_corpus.pretrain("first", steps=2, eval_every=2)).stopped_by == "done"


def test_another_save_error_is_one_line_too(monkeypatch):
    import storytui.checkpoint as checkpoint

    def save_file(state, filename, metadata=None):
        raise SafetensorError("Error while serializing: I/O error: Permission denied (os error 13)")

    monkeypatch.setattr(checkpoint, "save_file", save_file)
    train_corpus.write_books()
    with pytest.raises(StoryError) as info:
        train(train_corpus.pretrain("perm", steps=2, eval_every=2))
    message = str(info.value)
    assert message.startswith(f"cannot save {paths.model_dir('perm')}: ")
    assert "Permission denied" in message and "once that is fixed" in message


def test_disk_full_on_the_command_line_is_one_line_and_exit_1(monkeypatch, capsys):
    train_corpus.write_books()
    _fail_weights_under(monkeypatch, "/runs/")
    args = ["train", "pretrain", "--preset", "tiny", "--out", "cli", "--device", "cpu"]
    args += ["--dtype", "fp32", "--batch-size", "2", "--max-steps", "2", "--eval-every", "1"]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("storytui: error: disk full while saving")

    code, _, err = run_cli(["train", "pretrain", "--out", "cli", "--resume"], capsys)
    assert code == 1 and "nothing to resume" in err


def test_a_finished_model_still_blocks_a_new_run_of_its_name():
    train_corpus.write_books()
    train(train_corpus.pretrain("kept", steps=2, eval_every=2))
    import shutil

    shutil.rmtree(run_state.latest_dir("kept"))  # say, to save disk space
    with pytest.raises(StoryError) as info:
        train(train_corpus.pretrain("kept", steps=2))
    assert "already exists: pick another --out" in str(info.value)
    assert "--resume" not in str(info.value)  # there is nothing to resume


def test_saved_files_get_the_usual_permissions():
    train_corpus.write_books()
    old = os.umask(0o022)
    try:
        train(train_corpus.pretrain("modes", steps=2, eval_every=2))
    finally:
        os.umask(old)
    for directory in (paths.model_dir("modes"), run_state.latest_dir("modes")):
        for path in directory.iterdir():
            assert stat.S_IMODE(path.stat().st_mode) == 0o644, path


# --- batches that cannot fit ----------------------------------------------------------------


def test_an_absurd_batch_is_refused_at_once_with_the_plan_printed_first(monkeypatch):
    train_corpus.write_books()

    def never(*args, **kwargs):
        raise AssertionError("measured a micro-batch that cannot fit")

    monkeypatch.setattr(loop, "time_micro_step", never)
    with pytest.raises(StoryError) as info:
        train(train_corpus.pretrain("huge", steps=1, batch_size=100_000))
    message = str(info.value)
    assert message.startswith("--batch-size 100,000 is too large: one micro-batch of 100,000")
    assert "GiB" in message and "--grad-accum" in message and "\n" not in message
    assert not paths.run_dir("huge").exists() and not paths.model_dir("huge").exists()


def test_the_plan_head_is_printed_before_the_measurement(monkeypatch):
    train_corpus.write_books()
    console = Console(file=io.StringIO(), width=200)
    printed_before: list[str] = []
    real = loop.time_micro_step

    def measure(*args, **kwargs):
        printed_before.append(console.file.getvalue())
        return real(*args, **kwargs)

    monkeypatch.setattr(loop, "time_micro_step", measure)
    train(train_corpus.pretrain("head", steps=2), console=console)
    assert "551,072 parameters" in printed_before[0] and "per step" in printed_before[0]
    output = console.file.getvalue()
    for line in ("  per step ", "  device ", "  schedule ", "  estimate "):
        assert output.count(line) == 1, line


def test_a_batch_that_runs_out_of_memory_is_one_line(monkeypatch):
    train_corpus.write_books()

    def out_of_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 81.00 GiB")

    monkeypatch.setattr(loop, "time_micro_step", out_of_memory)
    with pytest.raises(StoryError) as info:
        train(train_corpus.pretrain("oom", steps=1))
    assert str(info.value).startswith("out of memory on cpu with --batch-size 4 (4 × 64 tokens")


def test_device_memory_is_known_on_the_cpu():
    memory = loop.device_memory(torch.device("cpu"))
    assert memory is not None and memory > 2**28


# --- flags ----------------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["0", "-5", "1", "256", "257", "65537", "100000"])
def test_tokenizer_size_out_of_range_is_one_line(size, capsys, tmp_path):
    code, _, err = run_cli(
        ["train", "tokenizer", "--size", size, "--out", str(tmp_path / "t")], capsys
    )
    assert code == 1 and "Traceback" not in err
    assert err.strip() == (
        f"storytui: error: invalid --size: {size} (must be between 258 and 65,536: the 256 "
        "byte tokens, at least one merge and <|endoftext|>)"
    )


def test_the_smallest_tokenizer_size_trains(tmp_path, capsys):
    train_corpus.write_books(n_books=2, paragraphs=10)
    out = tmp_path / "t.tiktoken"
    code, stdout, err = run_cli(["train", "tokenizer", "--size", "258", "--out", str(out)], capsys)
    assert code == 0, err
    assert "Trained 257 ranks" in stdout and out.is_file()


@pytest.mark.parametrize("budget", ["nan", "inf", "-inf", "0", "-1", "1e308"])
def test_a_time_budget_that_is_not_a_sane_number_is_one_line(budget, capsys):
    args = ["train", "pretrain", "--preset", "tiny", "--out", "b", "--time-budget", budget]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "Traceback" not in err
    assert err.startswith("storytui: error: invalid --time-budget: ")
    assert "at most 1,000,000" in err and len(err.strip().splitlines()) == 1


# --- resume with flags that differ from the saved run's --------------------------------------


def _halted_run(name: str, capsys) -> None:
    train_corpus.write_books()
    train(train_corpus.pretrain(name, steps=4, eval_every=2, halt_after_steps=2))
    capsys.readouterr()  # what the first part printed


def _resume(name: str, *flags: str) -> list[str]:
    return ["train", "pretrain", "--out", name, "--resume", "--device", "cpu", *flags]


def test_resume_names_each_flag_that_differs_from_the_saved_run(capsys):
    _halted_run("d4", capsys)
    flags = ["--preset", "small", "--seed", "5", "--max-steps", "4", "--batch-size", "4"]
    code, out, err = run_cli(_resume("d4", *flags, "--rebuild-data"), capsys)
    assert code == 0, err
    assert err.strip() == (
        "resuming: the saved run's settings are kept; ignoring --preset, --seed, --rebuild-data"
    )
    assert "Done: 4 steps" in out


def test_resume_with_the_saved_values_warns_about_nothing(capsys):
    _halted_run("same", capsys)
    flags = ["--preset", "tiny", "--seed", "1337", "--dtype", "fp32", "--recipe", "storytui"]
    code, _, err = run_cli(_resume("same", *flags), capsys)
    assert code == 0 and err == ""


def test_a_negated_flag_is_named_as_typed(capsys):
    from trainer.train_cli import _warn_ignored

    _halted_run("neg", capsys)
    _warn_ignored("neg", {"--mask-prompt": False, "--tales": False, "--seed": 1337})
    assert capsys.readouterr().err.strip() == (
        "resuming: the saved run's settings are kept; ignoring --no-mask-prompt"
    )


@pytest.mark.parametrize("stage", ["pretrain", "finetune"])
@pytest.mark.parametrize("seed", ["-1", str(2**63), str(2**80)])
def test_a_seed_torch_cannot_take_is_refused_before_any_work(stage, seed, capsys):
    """It used to train and then fail at the first eval, saving nothing."""
    train_corpus.write_books()
    args = ["train", stage, "--out", "s", "--seed", seed]
    args += ["--preset", "tiny"] if stage == "pretrain" else ["--from", "x"]
    code, _, err = run_cli(args, capsys)
    assert code == 1 and "Traceback" not in err
    assert (
        err.strip() == f"storytui: error: invalid --seed: {seed} (a whole number from 0 to 2**63-1)"
    )
    assert not paths.model_dir("s").exists() and not paths.run_dir("s").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dtype", "fp64"], "unknown dtype 'fp64' (choose auto, fp32, bf16, fp16)"),
        (["--dtype", "fp16", "--device", "cpu"], "--dtype fp16 needs a GPU"),
        (["--device", "tpu"], "unknown device 'tpu'"),
    ],
)
def test_dtype_and_device_are_checked_before_the_data(args, message, capsys):
    """With no books at all, the flag's error comes first: real data takes minutes to
    tokenise before the old check ran."""
    code, _, err = run_cli(["train", "pretrain", "--preset", "tiny", "--out", "d", *args], capsys)
    assert code == 1 and "Traceback" not in err
    assert err.startswith(f"storytui: error: {message}"), err


class _Card:
    def __init__(self, name: str, major: int) -> None:
        self.name, self.major = name, major


def _pretend_cards(monkeypatch, *cards: _Card) -> list[int]:
    """CUDA cards this CPU-only machine pretends to have; returns the indices asked about."""
    from trainer import throughput

    asked: list[int] = []

    def properties(device) -> _Card:
        index = torch.device(device).index or 0
        asked.append(index)
        return cards[index]

    monkeypatch.setattr(throughput.torch.version, "hip", None)
    monkeypatch.setattr(throughput.torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(throughput.torch.cuda, "get_device_properties", properties)
    monkeypatch.setattr(
        throughput.torch.cuda, "get_device_name", lambda device: cards[device.index].name
    )
    # torch's own check says yes on any card that can emulate bf16, as a T4 can
    monkeypatch.setattr(throughput.torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    return asked


def test_a_t4_trains_in_fp16_and_refuses_bf16(monkeypatch):
    """A T4 runs bf16 only emulated, far slower than fp16: `auto` picks fp16 there."""
    from trainer.throughput import check_precision, resolve_precision

    _pretend_cards(monkeypatch, _Card("Tesla T4", 7))
    t4 = torch.device("cuda", 0)
    assert resolve_precision("auto", t4).name == "fp16"
    with pytest.raises(StoryError, match=r"^Tesla T4 has no bf16; use --dtype fp16$"):
        check_precision("bf16", t4)
    assert check_precision("fp16", t4).name == "fp16"


def test_each_rank_asks_its_own_card(monkeypatch):
    """Under torchrun rank 1's card decides its precision, not card 0."""
    from trainer.stages import _check_device_and_dtype
    from trainer.throughput import resolve_precision

    asked = _pretend_cards(monkeypatch, _Card("Tesla T4", 7), _Card("NVIDIA A100", 8))
    assert resolve_precision("auto", torch.device("cuda", 1)).name == "bf16"
    monkeypatch.setenv("LOCAL_RANK", "1")
    _check_device_and_dtype("cuda", "bf16")  # the A100: no error
    monkeypatch.setenv("LOCAL_RANK", "0")
    with pytest.raises(StoryError, match="Tesla T4 has no bf16"):
        _check_device_and_dtype("cuda", "bf16")
    assert asked == [1, 1, 0]
