"""`storytui` on the command line: continue, models, and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from storytui.cli import main
from tests.conftest import make_tiny_checkpoint

STORY = "The sea was calm that morning, and the captain"


def run_cli(args: list[str], capsys) -> tuple[int, str, str]:
    code = 0
    try:
        main(args)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def story(tmp_path: Path) -> Path:
    path = tmp_path / "story.txt"
    path.write_text(STORY, encoding="utf-8")
    return path


def test_help_lists_commands(capsys) -> None:
    code, out, _ = run_cli(["--help"], capsys)
    assert code == 0
    for command in ("continue", "models", "train", "data"):
        assert command in out
    for group in (["train", "--help"], ["data", "--help"], ["models", "--help"]):
        code, out, err = run_cli(group, capsys)
        assert code == 0, err


def test_presets_show_exact_parameter_counts(capsys) -> None:
    from storytui.model import PRESETS, count_parameters

    code, out, _ = run_cli(["models", "presets"], capsys)
    assert code == 0
    for name in ("tiny", "small", "colab"):
        assert name in out
        assert f"{count_parameters(PRESETS[name].config(16384)):,}" in out
    assert "12/4" in out  # colab's 12 query heads share 4 key/value heads


def test_continue_is_reproducible_by_seed(tiny_checkpoint: Path, story: Path, capsys) -> None:
    args = ["continue", str(story), "--model", "tiny-test", "--max-tokens", "30", "--seed", "3"]
    code, first, err = run_cli(args, capsys)
    assert code == 0, err
    _, again, _ = run_cli(args, capsys)
    _, other, _ = run_cli([*args[:-1], "4"], capsys)
    assert first == again
    assert first != other
    assert len(first.strip()) > 0
    assert story.read_text() == STORY


def test_a_prompt_too_long_for_the_model_is_cut_with_a_warning(
    tiny_checkpoint: Path, story: Path, capsys
) -> None:
    """The continuation is the one the cut prompt gives, and one line says what was cut."""
    from storytui.session import load_generator

    args = ["continue", str(story), "-m", "tiny-test", "-n", "8", "--seed", "2"]
    premise = "the dragon and the knight " * 400
    code, out, err = run_cli([*args, "--prompt", premise, "--memory", "Ada"], capsys)
    assert code == 0, err
    assert err.startswith("storytui: warning: the model reads at most ")
    assert err.strip().endswith("the end of --prompt was left out")
    generator = load_generator("tiny-test")
    cut, memory = generator.fit_conditioning(premise, "Ada")
    assert memory == "Ada" and len(cut) < len(premise)
    _, again, err = run_cli([*args, "--prompt", cut, "--memory", "Ada"], capsys)
    assert again == out and err == ""


def test_continue_in_place_appends_exactly_what_was_streamed(
    tiny_checkpoint: Path, story: Path, capsys
) -> None:
    args = ["continue", str(story), "--max-tokens", "20", "--seed", "5", "--temperature", "0.9"]
    _, streamed, _ = run_cli(args, capsys)
    code, _, err = run_cli([*args, "-i"], capsys)
    assert code == 0, err
    assert story.read_text() == STORY + streamed[:-1]  # stdout ends with one newline


def test_continue_reads_stdin(tiny_checkpoint: Path, story: Path, capsys, monkeypatch) -> None:
    import io

    args = ["--max-tokens", "15", "--seed", "2"]
    _, from_file, _ = run_cli(["continue", str(story), *args], capsys)
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(STORY.encode())))
    code, from_stdin, err = run_cli(["continue", "-", *args], capsys)
    assert code == 0, err
    assert from_stdin == from_file


def test_stop_string_and_sampling_flags(tiny_checkpoint: Path, story: Path, capsys) -> None:
    base = [
        "continue",
        str(story),
        "--max-tokens",
        "60",
        "--seed",
        "1",
        "--top-k",
        "40",
        "--top-p",
        "0.9",
        "--min-p",
        "0.02",
        "--repetition-penalty",
        "1.2",
    ]
    _, full, _ = run_cli(base, capsys)
    stop = full[8:11]
    code, cut, _ = run_cli([*base, "--stop", stop, "--stop", "\u2603never"], capsys)
    assert code == 0
    assert cut.rstrip("\n") == full[: full.index(stop)]


def test_model_omitted_uses_newest_finetune(storytui_home: Path, story: Path, capsys) -> None:
    models = storytui_home / "models"
    make_tiny_checkpoint(models / "pre", seed=1, created="2026-05-01T00:00:00+00:00")
    make_tiny_checkpoint(
        models / "ft", seed=2, stage="finetune", created="2026-04-01T00:00:00+00:00"
    )
    args = ["--max-tokens", "20", "--seed", "9"]
    _, default, _ = run_cli(["continue", str(story), *args], capsys)
    _, explicit, _ = run_cli(["continue", str(story), "--model", "ft", *args], capsys)
    _, other, _ = run_cli(["continue", str(story), "--model", "pre", *args], capsys)
    assert default == explicit != other


def test_models_list_and_info(tiny_checkpoint: Path, capsys) -> None:
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0 and "tiny-test" in out and "pretrain" in out
    code, out, _ = run_cli(["models", "info", "tiny-test"], capsys)
    assert code == 0 and "storytui-16k" in out and "tiny" in out


NEWEST = "2026-02-01T00:00:00+00:00"


def _newest_model_broken(storytui_home: Path, capsys, breaking, reason: str) -> Path:
    """Two finetuned models, the newer one broken by ``breaking(its folder)``: the listing
    names ``reason`` and stars the older one, and `models info` still describes the broken
    one, then fails in one line with ``reason``. Returns the broken model's folder."""
    models = storytui_home / "models"
    make_tiny_checkpoint(models / "older", stage="finetune", created="2026-01-01T00:00:00+00:00")
    newest = make_tiny_checkpoint(models / "newest", stage="finetune", created=NEWEST)
    breaking(newest)
    code, out, _ = run_cli(["models"], capsys)
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert code == 0 and "unreadable" in rows["newest"] and "* older" in out
    assert f"unreadable: checkpoint newest: {reason}" in out
    code, out, err = run_cli(["models", "info", "newest"], capsys)
    assert code == 1 and "finetune" in out
    assert err.startswith(f"storytui: error: newest cannot be loaded: checkpoint newest: {reason}")
    assert len(err.strip().splitlines()) == 1
    return newest


def _cut_short(checkpoint: Path) -> None:
    weights = checkpoint / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])


def _poison(checkpoint: Path) -> None:
    """One weight set to NaN, as a diverged training run saves it (the file stays whole)."""
    from safetensors.torch import load_file, save_file

    weights = checkpoint / "model.safetensors"
    state = load_file(str(weights))
    state["norm.weight"][0] = float("nan")
    save_file(state, str(weights))


def test_models_shows_weights_that_would_not_load(storytui_home: Path, capsys) -> None:
    """Weights cut short show in the listing and in `models info` (which still describes the
    model, then fails), and the `*` goes to the model a command would actually use."""
    reason = "model.safetensors is corrupt or truncated"
    _newest_model_broken(storytui_home, capsys, _cut_short, reason)


def test_models_knows_weights_holding_nan_and_reads_them_once(
    storytui_home: Path, capsys, monkeypatch
) -> None:
    """A listing reads a header only, but NaN hides in the values: the `*` must not go to a
    model `continue` would skip. Each weights file is read once; saved again, it is new."""
    reason = "norm.weight contains NaN or infinite values"
    newest = _newest_model_broken(storytui_home, capsys, _poison, reason)
    make_tiny_checkpoint(newest, stage="finetune", created=NEWEST)  # retrained: a new file
    _, out, _ = run_cli(["models"], capsys)
    assert "* newest" in out and "unreadable" not in out

    def no_reading(directory) -> None:
        raise AssertionError(f"{directory}'s tensors were read again")

    monkeypatch.setattr("storytui.checkpoint.weight_values_reason", no_reading)
    _, again, _ = run_cli(["models"], capsys)
    assert again == out
    code, _, _ = run_cli(["models", "info", "newest"], capsys)
    assert code == 0


def test_models_finds_nan_with_a_cache_it_cannot_write(storytui_home: Path, capsys) -> None:
    (storytui_home / "cache").write_text("not a folder")
    _poison(make_tiny_checkpoint(storytui_home / "models" / "diverged"))
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0 and "norm.weight contains NaN" in out


def _poison_in_place(weights: Path) -> None:
    """NaN written over the first number of ``norm.weight`` inside the file itself: the same
    inode and size, as an in-place copy leaves it."""
    import struct

    with weights.open("r+b") as handle:
        (header_size,) = struct.unpack("<Q", handle.read(8))
        header = json.loads(handle.read(header_size))
        entry = header["norm.weight"]
        nan = {"F32": struct.pack("<f", float("nan")), "F16": struct.pack("<e", float("nan"))}
        handle.seek(8 + header_size + entry["data_offsets"][0])
        handle.write(nan[entry["dtype"]])


def test_a_remembered_nan_is_told_under_each_name_and_found_after_a_rewrite(
    storytui_home: Path, tmp_path: Path, capsys
) -> None:
    """The cache keeps reasons without a checkpoint's name (one file, reached as a folder
    outside the data dir and through a link in it, is told under each), and knows a file
    rewritten in place even when its size and times are put back (`cp -p`, `rsync -t`)."""
    outside = make_tiny_checkpoint(tmp_path / "elsewhere" / "ck")
    _poison(outside)
    (storytui_home / "models").mkdir(exist_ok=True)
    (storytui_home / "models" / "alias").symlink_to(outside)
    code, _, err = run_cli(["models", "info", str(outside)], capsys)
    assert code == 1 and f"checkpoint {outside}: norm.weight contains NaN" in err
    _, out, _ = run_cli(["models"], capsys)
    assert "unreadable: checkpoint alias: norm.weight contains NaN" in out
    good = make_tiny_checkpoint(storytui_home / "models" / "good")
    _, out, _ = run_cli(["models"], capsys)
    assert "* good" in out and "unreadable: checkpoint good" not in out
    weights = good / "model.safetensors"
    before = weights.stat()
    _poison_in_place(weights)
    os.utime(weights, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert (weights.stat().st_ino, weights.stat().st_size) == (before.st_ino, before.st_size)
    _, out, _ = run_cli(["models"], capsys)
    assert "unreadable: checkpoint good: norm.weight contains NaN" in out


def test_a_remembered_path_out_of_reach_does_not_break_the_listing(
    storytui_home: Path, capsys
) -> None:
    cache = storytui_home / "cache" / "weight-checks.json"
    cache.parent.mkdir(parents=True)
    too_long = "/" + "x" * 5000  # stat fails (name too long) instead of saying it is gone
    cache.write_text(json.dumps({too_long: {"stamp": [], "problem": None}}))
    make_tiny_checkpoint(storytui_home / "models" / "fresh")
    code, out, _ = run_cli(["models"], capsys)
    assert code == 0 and "* fresh" in out
    assert list(json.loads(cache.read_text())) == [
        str((storytui_home / "models" / "fresh" / "model.safetensors").resolve())
    ]


def test_models_rm_without_an_answer_deletes_nothing(
    tiny_checkpoint: Path, storytui_home: Path
) -> None:
    """End of input (`</dev/null`, a script) is no answer, not a Ctrl-C."""
    env = {**os.environ, "STORYTUI_HOME": str(storytui_home)}
    result = subprocess.run(
        [sys.executable, "-m", "storytui", "models", "rm", "tiny-test"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1 and tiny_checkpoint.is_dir()
    assert result.stderr.decode().endswith(
        "storytui: error: not deleted (no answer; pass -y to delete without asking)\n"
    )


def test_models_rm(tiny_checkpoint: Path, capsys) -> None:
    code, _, _ = run_cli(["models", "rm", "tiny-test", "--yes"], capsys)
    assert code == 0 and not tiny_checkpoint.exists()
    code, _, err = run_cli(["models", "rm", "tiny-test", "--yes"], capsys)
    assert code != 0 and "no model named" in err


def _write(path: Path, how: str) -> Path:
    if how == "binary":
        path.write_bytes(b"\x00\x01\x02PNG" * 10)
    elif how == "latin1":
        path.write_bytes("caf\xe9 au lait".encode("latin-1"))
    elif how == "dir":
        path.mkdir()
    elif how == "fifo":
        os.mkfifo(path)
    return path


@pytest.mark.parametrize(
    "target, extra, message",
    [
        ("missing", [], "no such file"),
        ("dir", [], "is a directory"),
        ("binary", [], "binary file"),
        ("latin1", [], "not UTF-8"),
        ("story", ["--temperature", "-1"], "invalid temperature"),
        ("story", ["--top-p", "2"], "invalid top-p"),
        ("story", ["--max-tokens", "0"], "invalid max-tokens"),
        ("story", ["--model", "nope"], "no model named 'nope'"),
        ("story", ["--temperature", "warm"], "temperature"),
        ("story", ["--precision", "fp8"], "invalid precision"),
        ("story", ["--temperature", "1e-320"], "invalid temperature"),
        ("story", ["--temperature", "1e308"], "invalid temperature"),
        ("story", ["--temperature", "nan"], "invalid temperature"),
        ("story", ["--repetition-penalty", "1e-300"], "invalid repetition-penalty"),
        ("fifo", [], "needs a regular file"),
    ],
)
def test_bad_input_is_one_line_and_touches_nothing(
    tiny_checkpoint: Path,
    story: Path,
    tmp_path: Path,
    capsys,
    target: str,
    extra: list[str],
    message: str,
) -> None:
    path = story if target == "story" else _write(tmp_path / target, target)
    before = path.read_bytes() if path.is_file() else None
    code, _out, err = run_cli(["continue", str(path), "-i", *extra], capsys)
    assert code != 0
    assert message in err
    assert len(err.strip().splitlines()) == 1, err
    assert "Traceback" not in err
    if before is not None:
        assert path.read_bytes() == before


@pytest.mark.parametrize("how", ["truncated", "bad-json", "wrong-hash"])
def test_corrupt_checkpoint_is_one_line(
    tiny_checkpoint: Path, story: Path, capsys, how: str
) -> None:
    from tests.test_checkpoint import _corrupt

    _corrupt(tiny_checkpoint, how)
    code, _, err = run_cli(["continue", str(story), "--model", "tiny-test"], capsys)
    assert code != 0
    assert len(err.strip().splitlines()) == 1 and "tiny-test" in err


def test_no_model_says_how_to_train(story: Path, capsys) -> None:
    code, _, err = run_cli(["continue", str(story)], capsys)
    assert code != 0
    assert "storytui train pretrain" in err and len(err.strip().splitlines()) == 1


def _spawn(args: list[str], home: Path) -> subprocess.Popen:
    env = {**os.environ, "STORYTUI_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "storytui.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
        # a shell's background job starts with Ctrl-C ignored, and children inherit that:
        # give the child the default disposition, as a terminal would
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )


def test_output_streams_before_the_end_and_ctrl_c_is_clean(
    tiny_checkpoint: Path, story: Path, storytui_home: Path
) -> None:
    process = _spawn(
        ["continue", str(story), "--max-tokens", "20000", "-i", "--seed", "1"], storytui_home
    )
    first = process.stdout.read(1)  # blocks until the first streamed byte
    assert first, process.communicate(timeout=60)[1].decode()
    assert process.poll() is None  # still generating: output is streamed, not buffered
    time.sleep(0.3)
    process.send_signal(signal.SIGINT)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert err.decode().strip() == "storytui: interrupted"
    assert out.endswith(b"\n")  # the text's line ends: in a terminal the error line is its own
    assert story.read_text() == STORY  # in-place: the old file, untouched


def test_ctrl_c_while_the_command_line_is_still_starting_is_one_line(
    storytui_home: Path,
) -> None:
    """A Ctrl-C during the first imports (typer, rich), before any command runs: the entry
    point itself turns it into the one line and status 130 (simulated: an import that is
    interrupted, as a SIGINT at that moment would interrupt it)."""
    code = (
        "import builtins, sys\n"
        "real = builtins.__import__\n"
        "def interrupted(name, *a, **k):\n"
        "    if name == 'typer': raise KeyboardInterrupt\n"
        "    return real(name, *a, **k)\n"
        "builtins.__import__ = interrupted\n"
        "sys.argv = ['storytui', '--help']\n"
        "from storytui.__main__ import main\n"
        "main()\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert result.returncode == 130
    assert result.stderr.decode() == "storytui: interrupted\n" and result.stdout == b""


def test_models_rm_takes_only_a_model_name(
    tiny_checkpoint: Path, storytui_home: Path, tmp_path: Path, capsys
) -> None:
    """A path, `.` or `..` never reaches rmtree: only a directory inside models/ by name."""
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "notes.txt").write_text("mine")
    (storytui_home / "runs" / "a-run").mkdir(parents=True)
    for name in (str(victim), "../../victim", "../runs/a-run", ".", ".."):
        code, _, err = run_cli(["models", "rm", name, "--yes"], capsys)
        assert code == 1 and "invalid model name" in err and len(err.splitlines()) == 1, err
    assert (victim / "notes.txt").read_text() == "mine"
    assert (storytui_home / "runs" / "a-run").is_dir() and tiny_checkpoint.is_dir()
    code, _, err = run_cli(["models", "rm", "default", "--yes"], capsys)
    assert code == 1 and "no model named 'default'" in err
    make_tiny_checkpoint(storytui_home / "models" / "old name")  # allowed by older versions
    code, _, err = run_cli(["models", "rm", "old name", "--yes"], capsys)
    assert code == 0 and not (storytui_home / "models" / "old name").exists(), err


def test_tables_fit_80_columns(tiny_checkpoint: Path, storytui_home: Path) -> None:
    from rich.console import Console

    from storytui.model import PRESETS
    from storytui.model_views import print_model_list, print_presets

    for show in (print_presets, print_model_list):
        console = Console(width=80, record=True)
        show(console)
        text = console.export_text()
        assert max(len(line) for line in text.splitlines()) <= 80, text
        words = " ".join(text.split())
        if show is print_presets:  # every description whole, wrapped at spaces
            for preset in PRESETS.values():
                assert all(word in words for word in preset.description.split()), text
        else:
            assert "* tiny-test" in text and "2026" in text  # the default choice is marked


@pytest.mark.parametrize("width", [40, 60])
def test_a_narrow_terminal_gets_whole_values_not_ellipses(
    tiny_checkpoint: Path, storytui_home: Path, width: int
) -> None:
    from rich.console import Console

    from storytui.model import PRESETS
    from storytui.model_views import print_model_info, print_model_list, print_presets
    from storytui.tokenizer import load_tokenizer

    for show in (print_presets, print_model_list):
        console = Console(width=width, record=True)
        show(console)
        text = console.export_text()
        assert "…" not in text, text
        assert max(len(line) for line in text.splitlines()) <= width, text
        if show is print_presets:
            assert "parameters: 77,183,232" in text and "context: 1024" in text
            assert all(f"\n{name}\n" in f"\n{text}" for name in PRESETS)
        else:
            assert "* tiny-test\n" in text and "preset: tiny" in text
            assert "params: 551.07K" in text and "date: 20" in text
    console = Console(width=width, record=True)
    print_model_info("tiny-test", console)
    squeezed = "".join(ch for ch in console.export_text() if ch not in " \n│")
    assert f"({load_tokenizer().hash})" in squeezed  # folded onto the next line, never cut


def test_in_place_writes_through_a_symlink(tiny_checkpoint: Path, story: Path, capsys) -> None:
    link = story.with_name("link.txt")
    link.symlink_to(story.name)
    args = ["continue", str(link), "-n", "10", "--seed", "1"]
    _, streamed, _ = run_cli(args, capsys)
    code, _, err = run_cli([*args, "-i"], capsys)
    assert code == 0, err
    assert link.is_symlink() and story.read_text() == STORY + streamed[:-1]


@pytest.mark.parametrize(
    "original",
    [b"\xef\xbb\xbfOnce upon a time, a fox", b"Line one.\r\nLine two, the", b"a\r\nb\nc, the"],
    ids=["byte-order-mark", "crlf", "mixed"],
)
def test_in_place_keeps_the_files_own_bytes(
    tiny_checkpoint: Path, tmp_path: Path, capsys, original: bytes
) -> None:
    """The story's bytes stay as they were; a Windows-style file gets Windows line breaks."""
    path = tmp_path / "story.txt"
    path.write_bytes(original)
    # newlines guaranteed: stop the continuation only after a few line breaks
    args = ["continue", str(path), "-n", "40", "--seed", "2", "--temperature", "1.5"]
    _, streamed, _ = run_cli(args, capsys)
    code, _, err = run_cli([*args, "-i"], capsys)
    assert code == 0, err
    written = path.read_bytes()
    assert written.startswith(original)
    added = written[len(original) :].decode("utf-8")
    crlf_file = original.count(b"\r\n") == original.count(b"\n")
    expected = streamed[:-1].replace("\n", "\r\n") if crlf_file else streamed[:-1]
    assert added == expected


def test_in_place_turns_new_lines_into_the_files_line_breaks() -> None:
    from storytui.textfile import appended_bytes

    assert appended_bytes(b"a\r\nb", "c\nd\r\ne") == b"c\r\nd\r\ne"
    assert appended_bytes(b"a\nb", "c\nd") == b"c\nd"
    assert appended_bytes(b"a\r\nb\nc", "d\ne") == b"d\ne"  # mixed: left as written
    assert appended_bytes(b"no breaks", "d\ne") == b"d\ne"


def test_closed_stdout_is_one_line(tiny_checkpoint: Path, story: Path, storytui_home: Path) -> None:
    env = {**os.environ, "STORYTUI_HOME": str(storytui_home)}
    result = subprocess.run(
        f'"{sys.executable}" -m storytui.cli continue "{story}" -n 5 >&-',
        shell=True,
        capture_output=False,
        stderr=subprocess.PIPE,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        "storytui: error: standard output is closed; nothing was done"
    )


@pytest.mark.parametrize("in_place", [False, True])
def test_standard_output_that_cannot_be_written_is_one_line(
    tiny_checkpoint: Path, story: Path, storytui_home: Path, in_place: bool
) -> None:
    """/dev/full fails every write with ENOSPC, as a full disk under `> file` does: the error
    names standard output (no disk the story is on is full), and -i leaves the story alone."""
    env = {**os.environ, "STORYTUI_HOME": str(storytui_home)}
    flags = "-i" if in_place else ""
    result = subprocess.run(
        f'"{sys.executable}" -m storytui continue "{story}" -n 5 --seed 1 {flags} >/dev/full',
        shell=True,
        stderr=subprocess.PIPE,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.decode() == (
        "storytui: error: cannot write to standard output: No space left on device; "
        "nothing was changed\n"
    )
    assert story.read_text() == STORY


def test_mistyped_command_and_version(story: Path, capsys) -> None:
    from storytui.cli import _refuse_mistyped_command

    code, _, err = run_cli(["contine", str(story)], capsys)
    assert code == 2 and "no command 'contine' (did you mean 'continue'?)" in err
    for new_story in ("train.txt", "data.md", "drafts/models", "rain.txt"):
        _refuse_mistyped_command([new_story])  # a story to create: no SystemExit
    code, out, _ = run_cli(["--version"], capsys)
    from importlib.metadata import version

    assert code == 0 and out.strip() == f"storytui {version('storytui')}"
    code, out, _ = run_cli(["--help"], capsys)
    assert "storytui [FILE]" in " ".join(out.split())


def test_model_omitted_skips_a_broken_newest_with_a_warning(
    storytui_home: Path, story: Path, capsys
) -> None:
    from tests.test_checkpoint import _corrupt

    models = storytui_home / "models"
    make_tiny_checkpoint(models / "good", created="2026-01-01T00:00:00+00:00")
    broken = make_tiny_checkpoint(models / "broken", created="2026-02-01T00:00:00+00:00")
    _corrupt(broken, "truncated")
    code, out, err = run_cli(["continue", str(story), "-n", "5", "--seed", "1"], capsys)
    assert code == 0 and out.strip()
    assert err.startswith("storytui: warning: skipped") and "broken" in err
    assert len(err.splitlines()) == 1
    _, expected, _ = run_cli(
        ["continue", str(story), "-n", "5", "--seed", "1", "-m", "good"], capsys
    )
    assert out == expected


def test_the_model_sees_plain_line_breaks_whatever_the_file_uses(
    tiny_checkpoint: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    """The model sees "\\n" line breaks, as in training and in the app: a Windows-style file
    is continued as its Unix twin would be (and -i writes \\r\\n back)."""
    from storytui.generation import Generator

    seen: list[str] = []

    def stream(self, text, settings, **kwargs):
        seen.append(text)
        yield "\nThree."

    monkeypatch.setattr(Generator, "stream", stream)
    story = tmp_path / "windows.txt"
    story.write_bytes(b"One.\r\nTwo.\rOld Mac line.")
    code, out, err = run_cli(["continue", str(story), "-i"], capsys)
    assert code == 0, err
    assert seen == ["One.\nTwo.\nOld Mac line."] and out == "\nThree.\n"
    assert story.read_bytes() == b"One.\r\nTwo.\rOld Mac line.\r\nThree."


def test_empty_and_closed_inputs_are_one_line(
    tiny_checkpoint: Path, story: Path, storytui_home: Path, capsys, monkeypatch
) -> None:
    code, _, err = run_cli(["continue", ""], capsys)
    assert code == 1 and err.strip() == "storytui: error: no story file given (an empty name)"
    env = {**os.environ, "STORYTUI_HOME": str(storytui_home)}
    result = subprocess.run(
        f'"{sys.executable}" -m storytui.cli continue - -n 5 <&-',
        shell=True,
        capture_output=True,
        env=env,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr.decode().strip() == (
        "storytui: error: standard input is closed; give a story file or pipe one in"
    )
    monkeypatch.setenv("STORYTUI_HOME", str(story))
    code, _, err = run_cli(["models"], capsys)
    assert code == 1 and "is not a directory" in err and len(err.strip().splitlines()) == 1


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes read-only files anyway")
def test_in_place_refuses_a_read_only_story_before_generating(
    tiny_checkpoint: Path, story: Path, capsys
) -> None:
    story.chmod(0o444)
    code, out, err = run_cli(["continue", str(story), "-i", "-n", "5"], capsys)
    assert code == 1 and "is read-only" in err and out == ""  # refused before generating
    assert story.read_text() == STORY


def test_in_place_still_writes_when_the_reader_goes_away(
    tiny_checkpoint: Path, story: Path, storytui_home: Path
) -> None:
    """`storytui continue story.txt -i | head -c 10`: the file gets the whole continuation."""
    env = {**os.environ, "STORYTUI_HOME": str(storytui_home)}
    command = f'"{sys.executable}" -m storytui.cli continue "{story}" -i -n 300 --seed 4'
    result = subprocess.run(
        f"{command} | head -c 10; exit ${{PIPESTATUS[0]}}",
        shell=True,
        executable="/bin/bash",
        capture_output=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0 and result.stderr == b"", result.stderr.decode()
    written = story.read_text()
    assert len(result.stdout) == 10 and written.startswith(STORY)
    assert written[len(STORY) :].startswith(result.stdout.decode())
    assert len(written) > len(STORY) + 10  # all of it, not only what the reader took


def test_an_empty_continuation_says_why(
    tiny_checkpoint: Path, story: Path, capsys, monkeypatch
) -> None:
    from storytui.generation import GenerationStats, Generator

    def stream(self, *args, **kwargs):
        self.last_stats = GenerationStats(new_tokens=1, stopped_by="eot")
        yield from ()

    monkeypatch.setattr(Generator, "stream", stream)
    code, out, err = run_cli(["continue", str(story), "-n", "5"], capsys)
    assert code == 0 and out == "\n"
    assert "the model ended the story at once" in err
    os.utime(story, (1_600_000_000, 1_600_000_000))
    before = story.stat()
    code, out, err = run_cli(["continue", str(story), "-n", "5", "-i"], capsys)
    after = story.stat()  # with nothing to add, -i leaves the file itself alone
    assert code == 0 and "the model ended the story at once" in err
    assert (after.st_ino, after.st_mtime) == (before.st_ino, before.st_mtime)


def test_models_rm_takes_the_training_run_along(
    tiny_checkpoint: Path, storytui_home: Path, capsys
) -> None:
    run = storytui_home / "runs" / "tiny-test"
    (run / "latest").mkdir(parents=True)
    code, _, err = run_cli(["models", "rm", "tiny-test/", "-y"], capsys)
    assert code == 0, err
    assert not tiny_checkpoint.exists() and not run.exists()


@pytest.mark.parametrize("command", [["continue"], ["train", "finetune"], ["train", "pretrain"]])
def test_help_in_a_narrow_terminal_keeps_option_names_whole(command, capsys, monkeypatch):
    monkeypatch.setenv("COLUMNS", "40")
    code, out, _ = run_cli([*command, "--help"], capsys)
    assert code == 0
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 40
    for option in ("--seed", "--help"):
        assert option in out
    names = {"continue": "--repetition-penalty", "train": "--rebuild-data"}
    assert names[command[0]] in out
    if command == ["train", "finetune"]:
        assert "--mask-prompt / --no-mask-prompt" in out

    monkeypatch.setenv("COLUMNS", "100")  # wide enough for rich's tables, which it keeps
    code, out, _ = run_cli([*command, "--help"], capsys)
    assert code == 0 and "╭─ Options" in out and "…" not in out


@pytest.mark.parametrize("args", [["--help"], ["train", "pretrain", "--help"]])
def test_help_into_a_closed_pipe_exits_quietly_with_0(args, tmp_path):
    """`storytui --help | head -1`: rich ends output whose reader went away with status 1,
    a failure in a shell with pipefail; it is the reader's choice, so storytui exits 0."""
    env = {**os.environ, "STORYTUI_HOME": str(tmp_path)}
    command = [sys.executable, "-m", "storytui.cli", *args]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    process.stdout.close()  # gone before the help is written: every write of it fails
    _, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert err == b""


def test_a_bad_precision_is_refused_before_any_model_is_read(
    tiny_checkpoint: Path, story: Path, capsys, monkeypatch
) -> None:
    from storytui import checkpoint, session

    for module in (checkpoint, session):
        monkeypatch.setattr(module, "load_checkpoint", lambda *_: pytest.fail("loaded"))
    for model in ([], ["-m", "tiny-test"]):
        code, _, err = run_cli(["continue", str(story), *model, "--precision", "INT4"], capsys)
        assert code == 1
        assert err == "storytui: error: invalid precision 'INT4' (choose fp32, bf16, int8, int4)\n"


@pytest.mark.parametrize("precision", ["int4", "int8"])
def test_continue_does_not_load_torchs_compiler(
    tiny_checkpoint: Path, story: Path, storytui_home: Path, precision: str
) -> None:
    """Checking a checkpoint builds the model on the meta device, where any torch op (random
    init, arange) imports dynamo: 1.6 s of a 3 s start. Nothing on the way to the first word
    may need it."""
    code = (
        "import sys\n"
        f"sys.argv = ['storytui', 'continue', {str(story)!r}, '-m', 'tiny-test', '-n', '3',"
        f" '--precision', {precision!r}]\n"
        "from storytui.__main__ import main\n"
        "try:\n"
        "    main()\n"
        "except SystemExit as exit:\n"
        "    assert exit.code in (0, None), exit.code\n"
        "print('dynamo' if 'torch._dynamo' in sys.modules else 'no dynamo', file=sys.stderr)\n"
    )
    env = {**os.environ, "STORYTUI_HOME": str(storytui_home)}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr.decode()
    assert result.stdout  # it did continue the story
    assert result.stderr.decode().splitlines()[-1] == "no dynamo"


def test_counting_parameters_does_not_load_torchs_compiler() -> None:
    """`models presets` counts every preset's parameters on the meta device."""
    code = (
        "import sys\n"
        "from storytui.model import PRESETS, count_parameters\n"
        "counts = [count_parameters(p.config(16384)) for p in PRESETS.values()]\n"
        "print(min(counts) > 0, 'torch._dynamo' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert result.stdout.decode().split() == ["True", "False"], result.stderr.decode()
