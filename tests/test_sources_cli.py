"""`storytui data ...` commands through typer's test runner."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from storytui import paths
from storytui.errors import StoryError
from storytui.tokenizer import load_tokenizer
from tests.data_fixtures import FixtureServer, fixture_server, gutenberg_book
from trainer.data_cli import data_app
from trainer.dataset import build_shards

runner = CliRunner()


@pytest.fixture
def http_server() -> Iterator[FixtureServer]:
    with fixture_server() as server:
        yield server


def story(n: int) -> str:
    return f"Story {n} starts. " + " ".join(f"w{n}x{i}" for i in range(40))


def test_download_gutenberg_from_folder_then_status(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    (books / "pg2701-moby-dick.txt").write_text(gutenberg_book("Moby"))
    result = runner.invoke(data_app, ["download", "gutenberg", "--from", str(books)])
    assert result.exit_code == 0, result.output
    assert "1 cleaned" in result.output
    assert (paths.clean_dir("gutenberg") / "pg2701.txt").exists()

    status = runner.invoke(data_app, ["status"])
    assert status.exit_code == 0, status.output
    assert "1 cleaned books" in status.output
    assert "none built yet" in status.output


def test_download_gutenberg_skips_a_binary_file_with_one_warning(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    (books / "pg2701-moby-dick.txt").write_text(gutenberg_book("Moby"))
    (books / "bin.txt").write_bytes(b"\x7fELF" + b"\x00" * 500)
    result = runner.invoke(data_app, ["download", "gutenberg", "--from", str(books)])
    assert result.exit_code == 0, result.output
    assert "1 cleaned" in result.output and "1 binary skipped" in result.output
    assert result.output.count("looks like a binary file, not text") == 1
    assert "bin.txt: looks like a binary" in result.output.replace("\n", "")

    (books / "pg2701-moby-dick.txt").unlink()
    (paths.clean_dir("gutenberg") / "pg2701.txt").unlink()
    result = runner.invoke(data_app, ["download", "gutenberg", "--from", str(books)])
    assert isinstance(result.exception, StoryError)
    assert "no usable book" in str(result.exception)


def test_download_gutenberg_by_ids_from_a_mirror(http_server):
    http_server.add("/cache/epub/84/pg84.txt", gutenberg_book("Frankenstein").encode())
    args = ["download", "gutenberg", "--ids", "84", "--mirror", http_server.base_url]
    result = runner.invoke(data_app, [*args, "--delay", "0"])
    assert result.exit_code == 0, result.output
    assert (paths.raw_dir("gutenberg") / "pg84.txt").exists()
    assert (paths.clean_dir("gutenberg") / "pg84.txt").exists()


def test_bad_ids_are_a_story_error():
    result = runner.invoke(data_app, ["download", "gutenberg", "--ids", "12,abc"])
    assert isinstance(result.exception, StoryError)


def test_download_writingprompts_from_files_then_status(tmp_path):
    data = tmp_path / "pairs.jsonl"
    rows = [{"prompt": "[ WP ] P", "story": story(i), "split": "train"} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(data_app, ["download", "writingprompts", "--from", str(data)])
    assert result.exit_code == 0, result.output
    assert "3 pairs" in result.output and "train 3" in result.output

    build_shards("finetune-test", {"train": [("", story(1))]}, load_tokenizer(), progress=False)
    status = runner.invoke(data_app, ["status"])
    assert "train 3" in status.output
    assert "finetune-test" in status.output


def test_writingprompts_from_and_url_together_is_refused(tmp_path):
    result = runner.invoke(
        data_app, ["download", "writingprompts", "--from", str(tmp_path), "--url", "http://x"]
    )
    assert isinstance(result.exception, StoryError)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["gutenberg", "--ids", "", "--mirror", "{local}"], "--ids: no book ids given"),
        (["gutenberg", "--ids", " , ", "--mirror", "{local}"], "--ids: no book ids given"),
        (["gutenberg", "--ids", "41", "--mirror", ""], "--mirror: empty URL"),
        (["gutenberg", "--ids", "41", "--mirror", "notaurl"], "--mirror: not a URL"),
        (
            ["gutenberg", "--ids", "41", "--mirror", "{local}", "--url-pattern", ""],
            "--url-pattern: ''",
        ),
        (["gutenberg", "--ids", "41", "--mirror", "{local}", "--url-pattern", "{0}"], "--url-pa"),
        (["writingprompts", "--url", ""], "--url: empty URL"),
        (["writingprompts", "--url", "notaurl"], "--url: not a URL"),
    ],
)
def test_empty_or_malformed_sources_are_refused_not_defaulted(args, expected, http_server):
    args = [http_server.base_url if arg == "{local}" else arg for arg in args]
    if args[0] == "gutenberg":
        args += ["--delay", "0"]
    result = runner.invoke(data_app, ["download", *args])
    assert isinstance(result.exception, StoryError), result.output
    assert str(result.exception).startswith(expected) and "\n" not in str(result.exception)
    assert http_server.requests == []  # nothing fetched: not the default list, not a mirror
    assert not paths.raw_dir("gutenberg").exists() and not paths.raw_dir("writingprompts").exists()


def test_rows_labelled_by_number_are_named_as_left_out(tmp_path):
    data = tmp_path / "scored.jsonl"
    rows = [{"prompt": "P", "story": story(1), "label": "human"}]
    rows += [{"prompt": "P", "story": story(i), "label": i % 2} for i in range(2, 5)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    result = runner.invoke(data_app, ["download", "writingprompts", "--from", str(data)])
    assert result.exit_code == 0, result.output
    assert "WritingPrompts: 1 pair (train" in " ".join(result.output.split())
    assert "left out: 3 rows of scored whose label is a number" in " ".join(result.output.split())


def test_a_second_import_says_which_pairs_it_replaced(tmp_path):
    first, second = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    first.write_text(
        "".join(json.dumps({"prompt": "P", "story": story(i)}) + "\n" for i in range(3))
    )
    second.write_text(json.dumps({"prompt": "Q", "story": story(9)}) + "\n")
    runner.invoke(data_app, ["download", "writingprompts", "--from", str(first)])
    again = runner.invoke(data_app, ["download", "writingprompts", "--from", str(first)])
    assert "replaced" not in again.output  # the same source again replaces nothing unsaid
    result = runner.invoke(data_app, ["download", "writingprompts", "--from", str(second)])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"replaced the 3 pairs imported before from {first}" in said
    assert f"import every source at once: --from {first} --from {second}" in said
    both = runner.invoke(
        data_app, ["download", "writingprompts", "--from", str(first), "--from", str(second)]
    )
    assert "replaced" not in both.output  # everything before is read again: nothing lost


def test_a_jsonl_line_that_is_not_json_is_named_by_its_line(tmp_path):
    data = tmp_path / "rows.jsonl"
    data.write_text(
        json.dumps({"prompt": "P", "story": story(1)}) + "\n\n" + '{"prompt": "P", story}\n'
    )
    result = runner.invoke(data_app, ["download", "writingprompts", "--from", str(data)])
    assert isinstance(result.exception, StoryError)
    assert str(result.exception) == (
        f"cannot read {data}: line 3 is not JSON (Expecting property name enclosed in double "
        "quotes, column 17)"
    )
