"""WritingPrompts ingest: detokenising, tags, dedupe, splits, and never any machine text."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from storytui import paths
from storytui.errors import StoryError
from tests.data_fixtures import FixtureServer, fan_archive, fixture_server
from trainer.sources import writingprompts as wp
from trainer.sources.writingprompts import (
    clean_prompt,
    clean_story,
    dedupe_key,
    detokenize,
    download_writingprompts,
    hash_split,
    ingest,
    load_pairs,
)

MACHINE = "MACHINEWRITTEN"  # every machine row in the fixtures carries this word


@pytest.fixture
def http_server() -> Iterator[FixtureServer]:
    with fixture_server() as server:
        yield server


def story(n: int, words: int = 30) -> str:
    """A distinct human story: its first words differ, so dedupe keeps each one."""
    return f"Story number {n} begins here. " + " ".join(f"word{n}x{i}" for i in range(words))


def machine(n: int) -> str:
    return f"{MACHINE} text {n} " + " ".join("generated" for _ in range(30))


def all_output() -> str:
    out = paths.clean_dir("writingprompts")
    return "".join((out / f"{split}.jsonl").read_text() for split in wp.SPLITS)


# --- cleaning ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("I do n't know , he said .", "I don't know, he said."),
        ("Ca n' t stop . It' s over . I' ll go", "Can't stop. It's over. I'll go"),
        ("it 's fine , we 're here and I 'm done", "it's fine, we're here and I'm done"),
        ("`` Hello , '' she said . `` Bye ! ''", '"Hello," she said. "Bye!"'),
        (
            'He said , " Thou shalt not pass . " Then left .',
            'He said, "Thou shalt not pass." Then left.',
        ),
        (
            "PATIENT!'' doctor Hut said, `` The growth.''",
            'PATIENT!" doctor Hut said, "The growth."',
        ),
        ("I 'm gon na win ( maybe ) .", "I'm gonna win (maybe)."),
        ("wait . . . what", "wait... what"),
        ("cold - too cold -- and dark--yes", "cold \u2014 too cold \u2014 and dark\u2014yes"),
        ("\u201cIt\u2019s mine,\u201d he said.", '"It\'s mine," he said.'),
        ("see [ this song ] ( http: //example.com/x ) now", "see this song now"),
        ("fish &amp; chips & nbsp;", "fish & chips"),
        ("*I've taken the title*", "I've taken the title"),
    ],
)
def test_detokenize(raw, clean):
    assert detokenize(raw) == clean


def test_detokenize_leaves_plain_text_alone():
    text = "She said, \"Don't go.\" He didn't. (He never did.) It cost $5, 20% off."
    assert detokenize(text) == text


@pytest.mark.parametrize(
    ("raw", "clean"),
    [
        ("[ WP ] A dragon wakes up .\n", "A dragon wakes up."),
        ("[WP] [EU] Two tags", "Two tags"),
        ("[ IP ] ( CW ) An image", "An image"),
        ("No tag at all", "No tag at all"),
        ("A prompt <newline> on two lines", "A prompt on two lines"),
    ],
)
def test_clean_prompt_strips_tags(raw, clean):
    assert clean_prompt(raw) == clean


def test_clean_story_paragraphs_and_newline_tokens():
    raw = "First line . <newline> <newline> Second para . <newline> Third . <\\newline> Four<br><br>Five"
    assert clean_story(raw) == "First line.\n\nSecond para.\n\nThird.\n\nFour\n\nFive"


def test_clean_story_scene_breaks():
    assert clean_story("One.\n\n***\n\n- - -\n\nTwo.\n\n* * *") == "One.\n\n* * *\n\nTwo."


def test_replacement_characters_are_repaired():
    assert clean_story("\ufffdHello,\ufffd I said. It\ufffds late\ufffd so late.") == (
        '"Hello," I said. It\'s late\u2014 so late.'
    )


def test_dedupe_key_matches_truncated_recased_retokenised_copies():
    full = "Don't look back, she said. The road was long and the night was dark " * 3
    assert dedupe_key(full) == dedupe_key(full.lower()[:200])
    assert dedupe_key(full) == dedupe_key(detokenize("Do n't look back , she said .") + full[25:])
    assert dedupe_key(full) != dedupe_key("A completely different story about ships " * 4)


def test_hash_split_is_stable_and_roughly_90_5_5():
    keys = [dedupe_key(story(i)) for i in range(2000)]
    splits = [hash_split(k) for k in keys]
    assert splits == [hash_split(k) for k in keys]
    assert 0.85 < splits.count("train") / 2000 < 0.95
    assert splits.count("valid") > 40 and splits.count("test") > 40


# --- layouts and human-only --------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def write_json(path: Path, data) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


@pytest.fixture
def mixed_folder(tmp_path: Path) -> Path:
    """One file per recognised layout, each mixing human rows with machine rows."""
    root = tmp_path / "wp"
    # HANNA: `Human` is human, `Story` is an LLM's story for the same prompt.
    write_csv(
        root / "hanna" / "hanna_llm_stories.csv",
        ["", "Prompt", "Human", "Story", "Model"],
        [
            [0, "Hanna prompt one", story(1), machine(1), "Llama-7b"],
            [1, "Hanna prompt one", story(1), machine(2), "Mistral-7b"],
        ],
    )
    # DetectRL: only label == human AND data_type == story.
    write_json(
        root / "detectrl" / "multi_llms_Claude-instant_test.json",
        [
            {"text": story(2), "label": "human", "data_type": "story", "llm_type": "Claude"},
            {"text": machine(3), "label": "llm", "data_type": "story", "llm_type": "Claude"},
            {"text": "An abstract about physics " * 5, "label": "human", "data_type": "abstract"},
        ],
    )
    # Fast-DetectGPT: `original` is human, `sampled` is a model's continuation.
    write_json(
        root / "fastdetect" / "writing_gpt2-xl.raw_data.json",
        {"original": [story(3)], "sampled": [machine(4)]},
    )
    # psychdepth-style CSV with an author_type column.
    write_csv(
        root / "psych" / "all_stories.csv",
        ["story_id", "premise_id", "premise", "text", "author_type"],
        [
            ["a", 0, "Psych premise", story(4), "Human"],
            ["b", 0, "Psych premise", machine(5), "LLM"],
        ],
    )
    # Generic JSONL with a label field.
    (root / "generic").mkdir()
    (root / "generic" / "mine.jsonl").write_text(
        json.dumps({"prompt": "Generic prompt", "story": story(5), "label": "human"})
        + "\n"
        + json.dumps({"prompt": "Generic prompt", "story": machine(6), "label": "gpt-4"})
        + "\n"
        + json.dumps({"prompt": "Generic prompt", "story": machine(7), "model": "claude"})
        + "\n"
        + json.dumps({"prompt": "Generic prompt", "story": machine(8), "generated": True})
        + "\n"
    )
    # prompt|||story lines: the human file is read, a model's file of the same shape is not.
    (root / "nextchapter").mkdir()
    (root / "nextchapter" / "sample_human.txt").write_text(f"a prompt .|||{story(6).lower()}\n")
    (root / "nextchapter" / "sample_GPT3.txt").write_text(f"a prompt .|||{machine(9)}\n")
    (root / "nextchapter" / "sample_other.txt").write_text(f"a prompt .|||{machine(10)}\n")
    # UNION-style line pairs: reference is human; the model-named pair is refused.
    (root / "union").mkdir()
    (root / "union" / "reference_ipt.txt").write_text("union prompt\n")
    (root / "union" / "reference_opt.txt").write_text(story(7) + "   second paragraph here\n")
    (root / "union" / "bart_ipt.txt").write_text("union prompt\n")
    (root / "union" / "bart_opt.txt").write_text(machine(11) + "\n")
    # StoryER: preference pairs (both human) and scored stories without prompts.
    write_json(
        root / "storyer" / "rank.converted.json",
        [["[WP] StoryER prompt", story(8), story(9), 1, 1]],
    )
    write_json(root / "storyer" / "corr.converted.json", [[story(10), 0.5]])
    write_json(
        root / "storyer" / "rate.json",
        [
            {
                "story": story(11).replace(". ", ".<br><br>"),
                "prompt": "[WP] Rate",
                "score": 3.0,
                "comments": [],
            }
        ],
    )
    # Unlabelled generic rows in a model-named file are refused.
    write_json(root / "generic" / "llm_outputs.json", [{"prompt": "p", "story": machine(12)}])
    return root


def test_no_machine_text_is_ever_ingested(mixed_folder):
    report = ingest(mixed_folder)
    text = all_output()
    assert MACHINE not in text
    assert "abstract about physics" not in text
    for n in range(1, 12):
        assert f"word{n}x0" in text, f"human story {n} is missing"
    assert report.machine["hanna"] == 2
    assert report.machine["detectrl"] == 1
    assert report.machine["fastdetect"] == 1
    assert report.machine["mine"] == 3
    skipped = " ".join(report.skipped_files)
    assert "sample_GPT3.txt" in skipped and "sample_other.txt" in skipped
    assert "bart_ipt.txt" in skipped and "llm_outputs.json" in skipped


def test_sources_prompts_and_splits(mixed_folder):
    ingest(mixed_folder)
    pairs = {p.story.split()[2]: p for split in wp.SPLITS for p in load_pairs(split)}
    assert pairs["1"].source == "hanna" and pairs["1"].prompt == "Hanna prompt one"
    assert pairs["2"].source == "detectrl" and pairs["2"].split == "train"
    assert pairs["3"].source == "fastdetect" and pairs["3"].split == "valid"
    assert pairs["3"].prompt == ""
    assert pairs["8"].prompt == "StoryER prompt" and pairs["9"].prompt == "StoryER prompt"
    assert pairs["10"].prompt == ""
    assert "\n\n" in pairs["11"].story  # <br><br> paragraph breaks
    assert pairs["7"].story.endswith("\n\nsecond paragraph here")  # runs of spaces
    for key in ("1", "4", "7", "8", "11"):  # no official split: hash of the text
        assert pairs[key].split == hash_split(dedupe_key(pairs[key].story))


def test_fan_archive_keeps_official_splits_and_cleans(tmp_path):
    archive = fan_archive(
        tmp_path / "writingPrompts.tar.gz",
        {
            "train": [
                (
                    "[ WP ] A dragon wakes .",
                    "The dragon did n't move . <newline> <newline> " + story(1),
                ),
                ("[ WP ] Empty", "[deleted]"),
                ("[ EU ] Short", "Too short ."),
            ],
            "valid": [("[ WP ] Valid prompt", story(2))],
            "test": [("[ WP ] Test prompt", story(3)), ("[ WP ] Again", story(3))],
        },
    )
    report = ingest(archive)
    train, valid, test = (load_pairs(s) for s in wp.SPLITS)
    assert [p.prompt for p in train] == ["A dragon wakes."]
    assert train[0].story.startswith("The dragon didn't move.\n\nStory number 1")
    assert [p.prompt for p in valid] == ["Valid prompt"]
    assert [p.prompt for p in test] == ["Test prompt"]
    assert report.dropped["writingprompts"] == 2
    assert report.duplicates["writingprompts"] == 1
    assert report.split_totals() == {"train": 1, "valid": 1, "test": 1}
    row = json.loads((paths.clean_dir("writingprompts") / "train.jsonl").read_text())
    assert set(row) == {"prompt", "story", "source"}


def test_split_files_folder_and_cross_source_dedupe(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "test.wp_source").write_text("[ WP ] Official\n")
    (folder / "test.wp_target").write_text(story(5, words=60) + "\n")
    truncated = tmp_path / "more" / "sample_human.txt"
    truncated.parent.mkdir()
    truncated.write_text("official .|||" + story(5, words=20).lower() + "\n")
    report = ingest([truncated, folder])
    # The complete copy with the official split wins over the truncated lower-cased one.
    assert [p.prompt for p in load_pairs("test")] == ["Official"]
    assert report.duplicates["nextchapter"] == 1
    assert load_pairs("train") == [] and load_pairs("valid") == []


def test_euclaise_subset_csv_split_from_file_name(tmp_path):
    header = ["row_id", "prompt", "story", "completion"]
    write_csv(
        tmp_path / "d" / "writing_prompts_test_subset.csv", header, [[1, "[ WP ] T", story(1), ""]]
    )
    write_csv(
        tmp_path / "d" / "writing_prompts_train_subset.csv", header, [[2, "[ WP ] R", story(2), ""]]
    )
    ingest(tmp_path / "d")
    assert [p.prompt for p in load_pairs("test")] == ["T"]
    assert [p.prompt for p in load_pairs("train")] == ["R"]


def test_nothing_recognised_is_an_error(tmp_path):
    (tmp_path / "notes.md").write_text("hello")
    with pytest.raises(StoryError, match="no WritingPrompts data"):
        ingest(tmp_path)
    with pytest.raises(StoryError, match="no such file"):
        ingest(tmp_path / "missing")


BINARY = b"\x7fELF\x02\x01\x01" + b"\x00" * 2000


def test_binary_and_non_utf8_files_are_left_out_whole(tmp_path):
    good = write_json(tmp_path / "d" / "train.json", [{"prompt": "P", "story": story(1)}])
    (tmp_path / "d" / "bin.jsonl").write_bytes(BINARY)
    write_csv(tmp_path / "d" / "latin.csv", ["prompt", "story"], [["L", story(2)]])
    latin = (tmp_path / "d" / "latin.csv").read_text(encoding="utf-8")
    (tmp_path / "d" / "latin.csv").write_bytes((latin + "Q,caf\u00e9 " * 20).encode("latin-1"))
    report = ingest(good.parent)
    assert [p.prompt for p in load_pairs("train")] == ["P"]  # no row of latin.csv either
    skipped = "\n".join(report.skipped_files)
    assert f"{tmp_path / 'd' / 'bin.jsonl'} (looks like a binary file, not text)" in skipped
    offset = len(latin.encode()) + len("Q,caf")
    assert f"latin.csv (not UTF-8 text: bad byte at offset {offset})" in skipped


def test_a_binary_split_file_leaves_out_only_that_split(tmp_path):
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "train.wp_source").write_text("[ WP ] Kept\n")
    (folder / "train.wp_target").write_text(story(1) + "\n")
    (folder / "valid.wp_source").write_text("[ WP ] Broken\n")
    (folder / "valid.wp_target").write_bytes(BINARY)
    report = ingest(folder)
    assert [p.prompt for p in load_pairs("train")] == ["Kept"] and load_pairs("valid") == []
    assert report.skipped_files == [
        f"{folder / 'valid.wp_target'} (looks like a binary file, not text)"
    ]


def test_only_unreadable_files_is_one_error_and_keeps_earlier_output(tmp_path):
    ingest(write_json(tmp_path / "a" / "train.json", [{"prompt": "P", "story": story(1)}]))
    (tmp_path / "bin.jsonl").write_bytes(BINARY)
    with pytest.raises(StoryError, match=r"no WritingPrompts data .*bin\.jsonl \(looks like a bin"):
        ingest(tmp_path / "bin.jsonl")
    folder = tmp_path / "release"
    folder.mkdir()
    (folder / "train.wp_source").write_bytes(BINARY)
    (folder / "train.wp_target").write_text(story(2) + "\n")
    with pytest.raises(StoryError, match=r"no usable WritingPrompts pairs .*train\.wp_source"):
        ingest(folder)
    assert [p.prompt for p in load_pairs("train")] == ["P"]


def test_reingest_replaces_output(tmp_path):
    first = write_json(tmp_path / "a" / "train.json", [{"prompt": "P", "story": story(1)}])
    ingest(first)
    second = write_json(tmp_path / "b" / "train.json", [{"prompt": "Q", "story": story(2)}])
    ingest(second)
    assert [p.prompt for p in load_pairs("train")] == ["Q"]
    assert not list(paths.clean_dir("writingprompts").glob(".*.tmp"))


def test_download_fetches_archive_and_ingests(http_server, tmp_path):
    archive = fan_archive(tmp_path / "a.tar.gz", {"train": [("[ WP ] Net", story(1))]})
    url = http_server.add("/fairseq/writingPrompts.tar.gz", archive.read_bytes(), drop_first=1)
    report = download_writingprompts(url)
    assert report.split_totals()["train"] == 1
    assert (paths.raw_dir("writingprompts") / "writingPrompts.tar.gz").read_bytes() == (
        archive.read_bytes()
    )
    hits = len(http_server.requests)
    download_writingprompts(url)  # already downloaded: no second fetch
    assert len(http_server.requests) == hits


def test_download_missing_archive_is_one_line_error(http_server):
    with pytest.raises(StoryError, match="not found"):
        download_writingprompts(http_server.base_url + "/missing.tar.gz")


def test_doubly_broken_apostrophes_are_repaired_not_dropped():
    raw = "She hadn'''''\u00ef\ufffd\ufffd signed it. It was kind.\u00ef\ufffd " + story(1)
    assert clean_story(raw).startswith("She hadn't signed it. It was kind. Story number 1")


# --- full disks, bad downloads, file modes --------------------------------------------------


def _pairs_file(tmp_path: Path, n: int = 12) -> Path:
    data = tmp_path / "pairs.jsonl"
    rows = [
        {"prompt": f"[ WP ] P{i}", "story": story(i), "split": ("train", "valid", "test")[i % 3]}
        for i in range(n)
    ]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return data


def _no_space() -> OSError:
    import errno

    return OSError(errno.ENOSPC, "No space left on device")


def test_discard_removes_the_temp_file_even_when_closing_fails(tmp_path):
    writer = wp._TempJsonl(tmp_path / "train.jsonl")
    real_close = writer.handle.close

    def close_on_a_full_disk():
        real_close()
        raise _no_space()

    writer.handle.close = close_on_a_full_disk
    writer.discard()
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_leaves_no_temp_files_and_the_earlier_splits(tmp_path, monkeypatch):
    first = tmp_path / "first"
    first.mkdir()
    ingest(_pairs_file(first, 6))
    out = paths.clean_dir("writingprompts")
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    real_finish = wp._TempJsonl.finish

    def finish(self):
        if self.final.name == "valid.jsonl":  # train is already on disk: valid fails
            real_close = self.handle.close

            def close_on_a_full_disk():
                real_close()
                raise _no_space()

            self.handle.close = close_on_a_full_disk
            raise _no_space()
        real_finish(self)

    monkeypatch.setattr(wp._TempJsonl, "finish", finish)
    with pytest.raises(StoryError) as info:
        ingest(_pairs_file(tmp_path, 30))
    assert str(info.value) == f"disk full while writing {out}; nothing was changed"
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # no new train split


def test_cleaned_splits_get_the_usual_file_mode(tmp_path):
    import os
    import stat

    old = os.umask(0o022)
    try:
        ingest(_pairs_file(tmp_path))
    finally:
        os.umask(old)
    for split in wp.SPLITS:
        mode = stat.S_IMODE((paths.clean_dir("writingprompts") / f"{split}.jsonl").stat().st_mode)
        assert mode == 0o644, (split, oct(mode))


def test_an_html_page_instead_of_the_archive_is_refused_and_not_kept(http_server):
    page = b"<!DOCTYPE html><html><body>Service unavailable</body></html>"
    url = http_server.add("/writingPrompts.tar.gz", page, content_type="text/html")
    with pytest.raises(StoryError) as info:
        download_writingprompts(url)
    assert "HTML page" in str(info.value) and "\n" not in str(info.value)
    assert list(paths.raw_dir("writingprompts").iterdir()) == []


def test_a_download_that_is_not_a_tar_archive_is_refused_and_not_kept(http_server):
    url = http_server.add("/writingPrompts.tar.gz", b"plain text, not an archive " * 50)
    with pytest.raises(StoryError, match="is not a tar archive"):
        download_writingprompts(url)
    assert list(paths.raw_dir("writingprompts").iterdir()) == []


def test_a_bad_archive_from_an_earlier_run_is_fetched_again(http_server, tmp_path):
    saved = paths.raw_dir("writingprompts") / wp.ARCHIVE_NAME
    saved.parent.mkdir(parents=True)
    saved.write_bytes(b"<html><body>login required</body></html>")
    archive = fan_archive(tmp_path / "a.tar.gz", {"train": [("[ WP ] Net", story(1))]})
    url = http_server.add("/writingPrompts.tar.gz", archive.read_bytes())
    assert download_writingprompts(url).split_totals()["train"] == 1
    assert saved.read_bytes() == archive.read_bytes()


def test_a_truncated_archive_is_one_line_that_says_to_fetch_it_again(http_server, tmp_path):
    archive = fan_archive(tmp_path / "a.tar.gz", {"train": [("[ WP ] Net", story(1))] * 50})
    saved = paths.raw_dir("writingprompts") / wp.ARCHIVE_NAME
    saved.parent.mkdir(parents=True)
    saved.write_bytes(archive.read_bytes()[: len(archive.read_bytes()) // 2])
    with pytest.raises(StoryError) as info:
        download_writingprompts(http_server.base_url + "/writingPrompts.tar.gz")
    message = str(info.value)
    assert message.startswith("cannot unpack") and message.endswith("--force")
    assert "\n" not in message and http_server.requests == []


def test_rows_naming_a_model_or_labelled_by_number_are_never_ingested(tmp_path):
    """A model named in a source/generator column wins over a "human" label, and a bare 0/1
    label is left out (its meaning differs between releases), counted apart."""
    rows = [
        {"prompt": "P", "story": story(1), "label": "human", "source": "reddit"},
        {"prompt": "P", "story": story(2), "generator": "human"},
        {"prompt": "P", "story": machine(1), "label": "human", "source": "gpt-4"},
        {"prompt": "P", "story": machine(2), "source": "ChatGPT"},
        {"prompt": "P", "story": machine(3), "generator": "text-davinci-003"},
        {"prompt": "P", "story": machine(4), "written_by": "Claude-instant"},
        {"prompt": "P", "story": machine(5), "label": 1},
        {"prompt": "P", "story": machine(6), "label": 0},
        {"prompt": "P", "story": machine(7), "label": True},
    ]
    data = tmp_path / "mine.jsonl"
    data.write_text("".join(json.dumps(row) + "\n" for row in rows))
    labels = tmp_path / "labelled.csv"
    write_csv(labels, ["prompt", "story", "label"], [["P", machine(8), "1"], ["P", machine(9), 0]])
    report = ingest([data, labels])
    text = all_output()
    assert MACHINE not in text
    assert "word1x0" in text and "word2x0" in text
    assert report.machine["mine"] == 4
    assert report.unclear == {"mine": 3, "labelled": 2}
    assert report.to_json()["unclear_label_rows"] == {"mine": 3, "labelled": 2}


def test_a_bad_forced_fetch_keeps_the_good_archive(http_server, tmp_path):
    archive = fan_archive(tmp_path / "a.tar.gz", {"train": [("[ WP ] Net", story(1))]})
    good = http_server.add("/good/writingPrompts.tar.gz", archive.read_bytes())
    download_writingprompts(good)
    bad = http_server.add("/bad/writingPrompts.tar.gz", b"plain text, not an archive " * 50)
    with pytest.raises(StoryError) as info:
        download_writingprompts(bad, force=True)
    assert "is not a tar archive" in str(info.value) and "was kept" in str(info.value)
    raw = paths.raw_dir("writingprompts")
    assert [p.name for p in raw.iterdir() if p.is_file()] == [wp.ARCHIVE_NAME]
    assert (raw / wp.ARCHIVE_NAME).read_bytes() == archive.read_bytes()
    assert download_writingprompts().split_totals()["train"] == 1  # no fetch: still usable


def test_a_url_given_once_the_archive_is_here_is_named_not_silently_ignored(http_server, tmp_path):
    archive = fan_archive(tmp_path / "a.tar.gz", {"train": [("[ WP ] Net", story(1))]})
    download_writingprompts(http_server.add("/writingPrompts.tar.gz", archive.read_bytes()))
    console = Console(record=True, width=200)
    hits = len(http_server.requests)
    download_writingprompts("http://127.0.0.1:9/other.tar.gz", console=console)
    assert len(http_server.requests) == hits
    assert "pass --force to fetch http://127.0.0.1:9/other.tar.gz" in console.export_text()


@pytest.mark.parametrize(
    "fields",
    [
        {"label": "human", "written_by": "Claude Monet"},
        {"label": "human", "source": "Gemma Jones"},
        {"label": "human", "source": "Bloomsbury writing group"},
        {"label": "human", "source": "Arnold Palmer"},
        {"label": "human", "source": "Model UN creative club"},
        {"source": "r/WritingPrompts"},
        {"model": "human-written"},
        {"generator": "Reddit user"},
        {"label": 1, "is_human": True},  # the flag says what the number does not
    ],
)
def test_people_and_places_are_not_mistaken_for_models(fields):
    assert wp._is_human(fields) is True


def test_an_interrupted_first_download_resumes_into_place(http_server, tmp_path):
    archive = fan_archive(tmp_path / "a.tar.gz", {"train": [("[ WP ] Net", story(1))]})
    body = archive.read_bytes()
    raw = paths.raw_dir("writingprompts")
    raw.mkdir(parents=True)
    (raw / (wp.ARCHIVE_NAME + ".part")).write_bytes(body[:100])  # a download cut short
    url = http_server.add("/writingPrompts.tar.gz", body)
    assert download_writingprompts(url).split_totals()["train"] == 1
    assert http_server.requests[0][1] == "bytes=100-"  # resumed, not fetched from zero
    assert sorted(p.name for p in raw.iterdir() if p.is_file()) == [wp.ARCHIVE_NAME]
