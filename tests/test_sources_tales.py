"""Tales cut from story collections: titles found, apparatus dropped, verse and front matter
left out, long tales trimmed to whole paragraphs, held-out books never used."""

from __future__ import annotations

import random
from pathlib import Path

from storytui import paths
from tests import train_corpus
from trainer.sources.tales import clean_title, is_collection, load_tales, split_tales


def _prose(rng: random.Random, paragraphs: int, sentences: int = 6) -> list[str]:
    return [
        " ".join(train_corpus.sentence(rng) for _ in range(sentences)) for _ in range(paragraphs)
    ]


def _collection(rng: random.Random) -> str:
    """A small collection laid out the way the Gutenberg fairy books and Holmes stories are."""
    verse = ["The wind is in the tree,\nThe moon is on the sea,\nAnd all is well with me."] * 30
    parts = [
        "THE GREEN FAIRY BOOK",
        "PREFACE",
        *_prose(rng, 20),
        "ADVENTURE I. A SCANDAL IN THE GARDEN",
        *_prose(rng, 10),
        "II.",  # a section number inside the tale
        *_prose(rng, 10),
        "[Illustration: the garden at night]",
        "THE RED DOOR",  # a sign quoted in the story: too little text follows to be a tale
        "IS CLOSED.",
        *_prose(rng, 1, sentences=2),
        "THE SILVER KEY",
        "(3) From the Danish. Grundtvig.",  # the editor's source note
        *_prose(rng, 12),
        "A Song of the Sea",  # title case; verse follows, so not a tale
        *verse,
        "The Girl and the Tower.",
        *_prose(rng, 14),
    ]
    return "\n\n".join(parts) + "\n"


def test_split_tales_finds_titles_and_keeps_only_the_tales_text():
    text = _collection(random.Random(0))
    tales = split_tales(text, "pg503")
    assert [t.title for t in tales] == [
        "A Scandal in the Garden",
        "The Silver Key",
        "The Girl and the Tower",
    ]
    scandal, key, _ = tales
    assert "II." not in scandal.story.split("\n\n")  # section numbers are not text
    assert "[Illustration" not in scandal.story and "Grundtvig" not in key.story
    assert "THE RED DOOR\n\nIS CLOSED." in scandal.story  # the sign stays in its story
    assert not any("The wind is in the tree" in t.story for t in tales)  # verse is no tale
    assert all(t.book == "pg503" for t in tales)
    assert all(len(t.story.split()) >= 300 for t in tales)


def test_long_tales_keep_whole_opening_paragraphs():
    text = _collection(random.Random(1))
    full = split_tales(text, max_words=100_000)
    short = split_tales(text, max_words=320)
    for long_tale, cut in zip(full, short, strict=True):
        assert long_tale.story.startswith(cut.story)
        assert len(cut.story.split()) <= 320 or "\n\n" not in cut.story
        rest = long_tale.story[len(cut.story) :]
        assert rest == "" or rest.startswith("\n\n")  # cut between paragraphs


def test_clean_title():
    assert clean_title("ADVENTURE IV. THE BOSCOMBE VALLEY MYSTERY") == "The Boscombe Valley Mystery"
    assert clean_title("VII. THE ADVENTURE OF THE BLUE CARBUNCLE") == (
        "The Adventure of the Blue Carbuncle"
    )
    assert clean_title("FIRST STORY. WHICH TREATS OF A MIRROR") == "Which Treats of a Mirror"
    assert clean_title("The Golden Crab(5)") == "The Golden Crab"
    assert clean_title("The Happy Prince.") == "The Happy Prince"
    assert clean_title("—Old Saying.") == ""


def test_is_collection_by_gutenberg_id():
    assert is_collection(Path("pg2591.txt")) and is_collection(Path("pg1661.txt"))
    assert not is_collection(Path("pg2701.txt")) and not is_collection(Path("notes.txt"))


def test_load_tales_reads_only_collections_and_skips_excluded_books():
    directory = paths.clean_dir("gutenberg")
    directory.mkdir(parents=True)
    rng = random.Random(2)
    (directory / "pg2591.txt").write_text(_collection(rng), encoding="utf-8")
    (directory / "pg7439.txt").write_text(_collection(rng), encoding="utf-8")
    (directory / "pg2701.txt").write_text(_collection(rng), encoding="utf-8")  # a novel
    tales = load_tales()
    assert {t.book for t in tales} == {"pg2591", "pg7439"} and len(tales) == 6
    assert {t.book for t in load_tales(exclude={directory / "pg7439.txt"})} == {"pg2591"}
