"""Prompt/story pairs cut from the short-story collections among the books.

WritingPrompts gives a few thousand pairs; the fairy-tale books, the Sherlock Holmes
collections and the Just So Stories hold hundreds more short stories, each under its
own title. Used as extra finetuning pairs (the tale's title as its prompt), they teach the same
"header, then a story that answers it" layout. `storytui train finetune --tales` adds them; the
held-out books are never used, so the Gutenberg figures stay clean.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# Project Gutenberg ids of the default books that are collections of separate stories, each under
# a title line. Poe's Works and the Jungle Books are left out: their epigraphs, verses and
# dialogue headings read as titles, so their "pairs" would be mostly wrong.
COLLECTION_IDS = frozenset(
    {
        108,  # The Return of Sherlock Holmes
        503,  # The Blue Fairy Book
        540,  # The Red Fairy Book
        640,  # The Yellow Fairy Book
        641,  # The Violet Fairy Book
        834,  # The Memoirs of Sherlock Holmes
        902,  # The Happy Prince and Other Tales
        1597,  # Andersen's Fairy Tales
        1661,  # The Adventures of Sherlock Holmes
        2435,  # The Crimson Fairy Book
        2591,  # Grimms' Fairy Tales
        2781,  # Just So Stories
        2892,  # Irish Fairy Tales
        4018,  # Japanese Fairy Tales
        7439,  # English Fairy Tales
        7885,  # Celtic Fairy Tales
    }
)

MIN_WORDS = 300  # shorter sections are verses, notices or front matter, not tales
MAX_WORDS = 1000  # about a WritingPrompts story; longer tales keep their opening paragraphs
MIN_WORDS_PER_PARAGRAPH = 15  # poems and lists have short lines; prose does not

_SMALL_WORDS = frozenset(
    {"a", "an", "and", "as", "at", "but", "by", "for", "from", "in", "into", "nor", "of", "on"}
    | {"or", "the", "to", "with"}
)
# Section numbers inside a tale ("III.", "CHAPTER IV") are not titles.
_SECTION_NUMBER = re.compile(r"^(?:(?:CHAPTER|PART|BOOK)\s+)?[IVXLC\d]+\.?$", re.IGNORECASE)
# "ADVENTURE I. A SCANDAL IN BOHEMIA", "VII. THE ADVENTURE OF THE BLUE CARBUNCLE"
_NUMBER_PREFIX = re.compile(
    r"^(?:(?:ADVENTURE\s+|STORY\s+|TALE\s+)?[IVXLC\d]+|"
    r"(?:FIRST|SECOND|THIRD|FOURTH|FIFTH|SIXTH|SEVENTH|EIGHTH|NINTH|TENTH)\s+STORY)\.\s+",
    re.IGNORECASE,
)
# Where a picture stood in the printed book: not text at all.
_PICTURE = re.compile(r"^\[?(?:GRAPHIC|ILLUSTRATION)\b.*$", re.IGNORECASE)
_FOOTNOTE_MARK = re.compile(r"\(\d+\)|\[\d+\]")
_NOT_A_TALE = re.compile(
    r"\b(?:PREFACE|INTRODUCTION|CONTENTS|NOTES?|DEDICATION|APPRECIATION|APPENDIX|FOOTNOTES?|"
    r"INDEX|ILLUSTRATIONS?|TRANSCRIBER|GLOSSARY|VOLUME|EDITION|IMPRESSION|MEMOIR|POEMS?|"
    r"ESSAYS?|MARGINALIA|BIBLIOGRAPHY|LIFE OF|COLLECTED BY|JOSEPH JACOBS)\b",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Tale:
    """One story of a collection: its title (the prompt) and its text."""

    title: str
    story: str
    book: str


def is_collection(book: Path) -> bool:
    """Whether a cleaned book file (``pg<ID>.txt``) is one of the known story collections."""
    match = re.fullmatch(r"pg(\d+)", book.stem)
    return bool(match) and int(match.group(1)) in COLLECTION_IDS


def split_tales(text: str, book: str = "", max_words: int = MAX_WORDS) -> list[Tale]:
    """The tales of one collection, found by their title lines.

    A title is a short paragraph of its own in capitals or title case. A title whose text runs
    under ``MIN_WORDS`` words before the next title (a sign quoted in a story, a verse) stays part
    of the tale before it, as do section numbers.
    """
    sections: list[tuple[str, list[str]]] = []
    for paragraph in _paragraphs(text):
        if _is_title(paragraph):
            sections.append((paragraph, []))
        elif sections and not _is_apparatus(paragraph):
            sections[-1][1].append(paragraph)
    merged: list[tuple[str, list[str]]] = []
    for title, body in sections:
        if merged and _word_count(body) < MIN_WORDS:
            merged[-1][1].extend([title, *body])
        else:
            merged.append((title, list(body)))
    tales = []
    for title, body in merged:
        prompt = clean_title(title)
        if not prompt or _NOT_A_TALE.search(prompt) or not _is_prose(body):
            continue
        tales.append(Tale(prompt, _opening(body, max_words), book))
    return tales


def clean_title(line: str) -> str:
    """'ADVENTURE I. A SCANDAL IN BOHEMIA' → 'A Scandal in Bohemia'."""
    if line.lstrip()[:1] in "—-":  # an epigraph's attribution, not a title
        return ""
    title = _FOOTNOTE_MARK.sub("", _NUMBER_PREFIX.sub("", line.strip()))
    title = title.strip().strip('"').rstrip(".").strip()
    if not any(c.isalpha() for c in title):
        return ""
    if title.isupper():
        words = title.lower().split()
        title = " ".join(
            w if i and w in _SMALL_WORDS else w[:1].upper() + w[1:] for i, w in enumerate(words)
        )
    return title


def load_tales(exclude: set[Path] | None = None, max_words: int = MAX_WORDS) -> list[Tale]:
    """Every tale of the cleaned collections, leaving out the books in ``exclude``."""
    from trainer.sources.gutenberg import cleaned_books

    exclude = exclude or set()
    tales: list[Tale] = []
    for book in cleaned_books():
        if is_collection(book) and book not in exclude:
            tales += split_tales(book.read_text("utf-8"), book.stem, max_words)
    return tales


def _paragraphs(text: str) -> list[str]:
    return [p.strip() for p in re.split(r"\n\s*\n", text) if p.strip()]


def _is_apparatus(paragraph: str) -> bool:
    """Section numbers, picture markers and an editor's source notes: not the tale's text."""
    return bool(
        _SECTION_NUMBER.match(paragraph)
        or _PICTURE.match(paragraph)
        or _FOOTNOTE_MARK.match(paragraph)
    )


def _is_title(paragraph: str) -> bool:
    if "\n" in paragraph or len(paragraph) > 80:
        return False
    words = paragraph.split()
    if not words or len(words) > 12 or _SECTION_NUMBER.match(paragraph):
        return False
    letters = [c for c in paragraph if c.isalpha()]
    if len(letters) < 3:
        return False
    if _PICTURE.match(paragraph):
        return False
    if paragraph.isupper():
        return True
    # Title case: two or more words, all but the small ones capitalised, and no punctuation
    # inside (a signature or an address under a letter looks like a title otherwise).
    if (
        len(words) < 2
        or paragraph.rstrip(".")[-1:] in "!?;:\"'"
        or any(c in paragraph for c in ',"')
    ):
        return False
    significant = [w for w in words if w.lower() not in _SMALL_WORDS]
    return (
        bool(significant) and words[0][:1].isupper() and all(w[:1].isupper() for w in significant)
    )


def _is_prose(body: list[str]) -> bool:
    """Long enough, in full paragraphs, and not verse (lines broken inside a paragraph)."""
    words = _word_count(body)
    verse = sum("\n" in p for p in body)
    return (
        words >= MIN_WORDS
        and words / len(body) >= MIN_WORDS_PER_PARAGRAPH
        and verse <= len(body) // 5
    )


def _opening(body: list[str], max_words: int) -> str:
    """Whole paragraphs from the start, up to ``max_words`` words (at least one paragraph)."""
    kept: list[str] = []
    count = 0
    for paragraph in body:
        n = len(paragraph.split())
        if kept and count + n > max_words:
            break
        kept.append(paragraph)
        count += n
    return "\n\n".join(kept)


def _word_count(paragraphs: list[str]) -> int:
    return sum(len(p.split()) for p in paragraphs)
