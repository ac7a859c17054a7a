"""One clear line for what cannot work: the app without a terminal, --stop's empty cases."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storytui.story_format import StoryTemplate
from tests.conftest import make_tiny_checkpoint
from tests.test_cli import STORY, run_cli

NO_TERMINAL = (
    "storytui: error: the app needs a terminal, and {} is not one; to continue a story "
    "without one: storytui continue FILE"
)


def _run_app(args: list[str], home: Path, **streams) -> subprocess.CompletedProcess:
    """`storytui ARGS` with the given standard streams; a hang fails the test (run kills it)."""
    env = {**os.environ, "STORYTUI_HOME": str(home)}
    return subprocess.run(
        [sys.executable, "-m", "storytui.cli", *args], env=env, timeout=60, **streams
    )


@pytest.mark.parametrize("args", [["new-story.txt"], []], ids=["file", "last-story"])
def test_the_app_without_a_terminal_is_one_line_not_a_hang(
    storytui_home: Path, tmp_path: Path, args: list[str]
) -> None:
    """QA: `storytui bogus </dev/null >o.txt` drew escape codes and waited for keys forever."""
    result = _run_app(
        [str(tmp_path / name) for name in args],
        storytui_home,
        stdin=subprocess.DEVNULL,
        capture_output=True,
    )
    assert result.returncode == 1
    assert result.stderr.decode() == NO_TERMINAL.format("standard input") + "\n"
    assert result.stdout == b""
    assert list(tmp_path.iterdir()) == [] and list(storytui_home.iterdir()) == []  # no story


def test_the_app_needs_a_terminal_to_draw_on(storytui_home: Path, tmp_path: Path) -> None:
    """Keys from a terminal are not enough: the app draws on standard error."""
    keyboard, terminal = os.openpty()
    try:
        result = _run_app(
            [str(tmp_path / "story.txt")],
            storytui_home,
            stdin=terminal,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
    finally:
        os.close(keyboard)
        os.close(terminal)
    assert result.returncode == 1
    assert result.stderr.decode() == NO_TERMINAL.format("standard error (where it draws)") + "\n"


def test_a_bad_file_is_named_before_the_missing_terminal(
    storytui_home: Path, tmp_path: Path
) -> None:
    binary = tmp_path / "image.bin"
    binary.write_bytes(b"\x00\x01\x02")
    missing = tmp_path / "nope" / "story.txt"
    for path, message in ((binary, "looks like a binary file"), (missing, "does not exist")):
        result = _run_app([str(path)], storytui_home, stdin=subprocess.DEVNULL, capture_output=True)
        err = result.stderr.decode()
        assert result.returncode == 1 and message in err and len(err.splitlines()) == 1, err


def _first_text(story: Path, capsys) -> str:
    code, out, err = run_cli(["continue", str(story), "-n", "8", "--seed", "1"], capsys)
    assert code == 0 and out.strip(), err
    return out[0]


def test_a_stop_string_at_once_is_named_not_end_of_text(
    tiny_checkpoint: Path, tmp_path: Path, capsys
) -> None:
    """QA: a stop string hit before any text said "(it wrote end-of-text first)"."""
    story = tmp_path / "story.txt"
    story.write_text(STORY)
    stop = _first_text(story, capsys)  # the continuation begins with it
    code, out, err = run_cli(
        ["continue", str(story), "-n", "8", "--seed", "1", "--stop", stop], capsys
    )
    assert code == 0 and out == "\n"
    assert err == (
        f"storytui: the continuation is empty: it began with the stop string {stop!r}; "
        "try another --seed or another --stop\n"
    )


def test_the_models_own_stop_string_at_once_is_named(
    storytui_home: Path, tmp_path: Path, capsys
) -> None:
    story = tmp_path / "story.txt"
    story.write_text(STORY)
    models = storytui_home / "models"
    make_tiny_checkpoint(models / "plain")
    stop = _first_text(story, capsys)
    make_tiny_checkpoint(models / "own-stop", template=StoryTemplate(stop_strings=(stop,)))
    code, out, err = run_cli(
        ["continue", str(story), "-n", "8", "--seed", "1", "-m", "own-stop"], capsys
    )
    assert code == 0 and out == "\n"
    assert f"it began with {stop!r}, one of the model's own stop strings" in err
    assert "end-of-text" not in err and len(err.splitlines()) == 1


def test_tokens_that_add_no_text_are_not_called_end_of_text(
    tiny_checkpoint: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    from storytui.generation import GenerationStats, Generator

    def stream(self, *args, **kwargs):
        self.last_stats = GenerationStats(new_tokens=1, stopped_by="max_tokens")
        yield from ()

    monkeypatch.setattr(Generator, "stream", stream)
    story = tmp_path / "story.txt"
    story.write_text(STORY)
    code, _, err = run_cli(["continue", str(story), "-n", "1"], capsys)
    assert code == 0
    assert err == (
        "storytui: the continuation is empty: its 1 token(s) added no text; "
        "try a higher --max-tokens\n"
    )


@pytest.mark.parametrize("stops", [[""], ["\n", ""]], ids=["alone", "among-others"])
def test_an_empty_stop_string_is_one_readable_line(
    tiny_checkpoint: Path, tmp_path: Path, capsys, stops: list[str]
) -> None:
    """QA: `--stop ''` printed a Python tuple: invalid stop: ('',)."""
    story = tmp_path / "story.txt"
    story.write_text(STORY)
    flags = [arg for stop in stops for arg in ("--stop", stop)]
    code, out, err = run_cli(["continue", str(story), "-i", *flags], capsys)
    assert code == 1 and out == ""
    assert err == (
        "storytui: error: invalid stop: '' (must be non-empty text; an empty stop string "
        "would stop at once)\n"
    )
    assert story.read_text() == STORY


def test_an_error_line_reaches_stderr_in_one_write(monkeypatch):
    """The ranks of a DDP run share one stderr: a line written in two parts (print writes its
    newline apart) can be split by another rank's line."""
    import io

    from storytui import cli

    class Writes(io.StringIO):
        def __init__(self) -> None:
            super().__init__()
            self.calls: list[str] = []

        def write(self, text: str) -> int:
            self.calls.append(text)
            return super().write(text)

    stderr = Writes()
    monkeypatch.setattr("sys.stderr", stderr)
    with pytest.raises(SystemExit) as exit_info:
        cli._fail("disk full while saving", 1)
    assert exit_info.value.code == 1
    assert stderr.calls == ["storytui: error: disk full while saving\n"]
