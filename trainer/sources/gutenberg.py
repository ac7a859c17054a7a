"""Project Gutenberg books: fetch or take local copies, and clean them into plain prose.

The model should learn stories, not licences: the cleaner cuts the Project Gutenberg header,
footer and small print in every style the archive has used, production credits, transcriber's
notes, tables of contents and illustration markers, unwraps the ~70-column hard wrap into one line
per paragraph, and applies the shared punctuation convention (see ``trainer.sources``).
Each book becomes one file, ``clean/gutenberg/pg<ID>.txt``.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console

from storytui import paths
from storytui.atomic import atomic_write_text
from storytui.errors import StoryError
from storytui.textfile import looks_binary
from trainer.sources import BINARY_REASON, normalize_punctuation
from trainer.sources.http import (
    LocalWriteError,
    UnknownHost,
    bad_download,
    check_url,
    check_url_pattern,
    download,
)

DEFAULT_MIRROR = "https://www.gutenberg.org"
DEFAULT_URL_PATTERN = "{mirror}/cache/epub/{id}/pg{id}.txt"
BOOKS_FILE = Path(__file__).with_name("gutenberg_books.txt")
CLEANER_VERSION = 2
MANIFEST = "manifest.json"

# --- header and footer ---------------------------------------------------------------------

_START_MARKERS = re.compile(
    r"^[ \t]*\*{3}[ \t]*START OF (?:THIS|THE) PROJECT GUTENBERG"
    r"|^[ \t]*\*+[ \t]*END\*?[ \t]*THE SMALL PRINT",
    re.IGNORECASE | re.MULTILINE,
)
_END_MARKERS = re.compile(
    r"^[ \t]*\*{3}[ \t]*END OF (?:THIS|THE) PROJECT GUTENBERG"
    r"|^[ \t]*\**[ \t]*End of (?:the |this )?Project Gutenberg"
    r"|^[ \t]*\*?[ \t]*(?:The )?Project Gutenberg'?s? E-?text of"
    r"|^[ \t]*\*{3}[ \t]*START\*\*THE SMALL PRINT",
    re.IGNORECASE | re.MULTILINE,
)

# --- things that are not the story --------------------------------------------------------

_CREDITS = re.compile(
    r"^[\[(]?\s*(?:produced by|this (?:project gutenberg )?e-?(?:text|book) (?:was|is|has been)"
    r"|e-?text (?:prepared|produced|scanned|created)|transcribed (?:from|by)|prepared by"
    r"|html version by|scanned by|proofread|updated editions)",
    re.IGNORECASE,
)
_PG_MENTION = re.compile(r"\bgutenberg\b|\be-?texts?\b|\bebooks?\b", re.IGNORECASE)
_TRANSCRIBER = re.compile(
    r"^[\[(*]?\s*(?:original )?(?:transcriber|etext transcriber)['’]?s?\s+notes?"
    r"|^[\[(*]?\s*project gutenberg editor['’]?s note"
    r"|^typographical errors corrected",
    re.IGNORECASE,
)
_BRACKET_NOTES = re.compile(
    r"\[\s*(?:Illustrations?|Picture|Frontispiece|Plate|Footnote"
    r"|(?:Transcriber|Redactor|Editor)['’]?s? Notes?)\b"
    r"[^\]]*\]",
    re.IGNORECASE,
)
_TOC_HEADING = re.compile(
    r"^\s*(?:table of |detailed )?contents?\.?:?\s*$|^\s*(?:list of )?illustrations\.?:?\s*$",
    re.IGNORECASE,
)
_SEPARATOR = re.compile(r"^(?=.*[*=~_\-#+])[\s*=~_\-.#+]{3,}$")
SCENE_BREAK = "* * *"
_ITALIC_MARK = re.compile(r"(?<!_)_(?!_)")  # _italics_; runs like "Lord ____" are blanks
_SPACES = re.compile(r"[ \t]+")


def clean_gutenberg(text: str) -> str:
    """Turn one Project Gutenberg plain-text book into clean prose, one line per paragraph.

    Paragraphs are separated by one blank line. Verse, centred title pages and other blocks of
    short or irregularly indented lines keep their line breaks; scene breaks become ``* * *``.
    """
    text = text.lstrip("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    text = _strip_licence(text)
    text = _BRACKET_NOTES.sub("", text)
    blocks = _blocks(text)
    blocks = _drop_front_matter_notes(blocks)
    blocks = _drop_tables_of_contents(blocks)
    paragraphs = [p for p in (_render(block) for block in blocks) if p]
    paragraphs = _collapse_separators(paragraphs)
    return "\n\n".join(paragraphs) + "\n" if paragraphs else ""


def _strip_licence(text: str) -> str:
    """Keep what lies between the last header marker and the first footer marker after it."""
    body_start = 0
    for start in _START_MARKERS.finditer(text):
        if start.start() > len(text) // 2:
            break
        body_start = _end_of_marker(text, start.start())
    end = _END_MARKERS.search(text, body_start)
    return text[body_start : end.start() if end else len(text)]


def _end_of_marker(text: str, pos: int) -> int:
    """A start marker may wrap over a few lines; the body begins after its closing ``***``."""
    line_end = text.find("\n", pos)
    first = text[pos : line_end if line_end >= 0 else len(text)]
    if first.rstrip().endswith("*") or line_end < 0:
        return line_end + 1 if line_end >= 0 else len(text)
    cursor = line_end + 1
    for _ in range(3):
        nxt = text.find("\n", cursor)
        line = text[cursor : nxt if nxt >= 0 else len(text)]
        if line.rstrip().endswith("***"):
            return nxt + 1 if nxt >= 0 else len(text)
        if nxt < 0:
            break
        cursor = nxt + 1
    return line_end + 1


def _blocks(text: str) -> list[list[str]]:
    """Split into blank-line separated blocks of raw lines (indentation kept for now)."""
    blocks: list[list[str]] = []
    current: list[str] = []
    for line in text.split("\n"):
        if line.strip():
            current.append(line.rstrip())
        elif current:
            blocks.append(current)
            current = []
    if current:
        blocks.append(current)
    return blocks


def _drop_front_matter_notes(blocks: list[list[str]]) -> list[list[str]]:
    """Remove production credits and transcriber's notes; a note at the very end ends the book."""
    out: list[list[str]] = []
    skip_next = False
    front = max(12, len(blocks) // 20)
    for i, block in enumerate(blocks):
        first = block[0].strip()
        if skip_next:
            skip_next = False
            continue
        if i < front and (_CREDITS.match(first) or _PG_MENTION.search(" ".join(block))):
            continue
        if _TRANSCRIBER.match(first):
            if i > len(blocks) * 0.9:
                break
            # A bare heading ("Transcriber's Notes:") introduces the note in the next block.
            skip_next = len(block) == 1 and len(first) < 40
            continue
        out.append(block)
    return out


def _drop_tables_of_contents(blocks: list[list[str]]) -> list[list[str]]:
    """Remove each CONTENTS (or ILLUSTRATIONS) heading and the table of entries after it."""
    out: list[list[str]] = []
    i = 0
    while i < len(blocks):
        if len(blocks[i]) == 1 and _TOC_HEADING.match(blocks[i][0]):
            end = _toc_end(blocks, i + 1)
            if end > i + 1:
                i = end
                continue
        out.append(blocks[i])
        i += 1
    return out


def _toc_end(blocks: list[list[str]], start: int) -> int:
    """Index of the first block after the table that belongs to the book.

    The table runs while blocks look like entries. Within that run, the first heading that
    repeats the table's first entry (without a page number) is where the book really begins;
    without such a heading the book begins at the first prose block.
    """
    run_end = start
    while run_end < len(blocks) and _is_toc_block(blocks[run_end]):
        run_end += 1
    keyed = [(k, line) for k in range(start, run_end) for line in blocks[k] if _entry_key(line)]
    if keyed:
        first = _entry_key(keyed[0][1])
        for k, line in keyed[1:]:
            if not _PAGE_NUMBER.search(line) and _same_entry(_entry_key(line), first):
                return k
    return run_end


_NUMBERING = re.compile(
    r"^(?:chapter|book|part|adventure|stave|letter|no)?\s*(?:[0-9]+|[ivxlc]+)?\b\.?\s*"
)
_PAGE_NUMBER = re.compile(r"(?:\s{2,}|\.{2,}\s*|,\s*|\bp(?:age)?\.?\s*)\d+\s*$", re.IGNORECASE)
_CHAPTER_START = re.compile(r"(?:chapter|book|part|stave|letter)\b|[ivxlc]+\.\s|\d+\.\s", re.I)
_WORDS = re.compile(r"[^\W\d_][\w'’]*")
_NUMBERED_ITEMS = re.compile(r"(?:^|\s)\d{1,3}\.\s+[A-Z]")


def _entry_key(line: str) -> str:
    """``CHAPTER IV. The Visit`` and ``4.  The Visit .... 57`` both → ``the visit``."""
    line = _PAGE_NUMBER.sub("", line)
    words = re.sub(r"[^a-z0-9]+", " ", line.lower()).strip()
    if words in ("page", "pages"):
        return ""
    return _NUMBERING.sub("", words).strip()


def _same_entry(key: str, first: str) -> bool:
    """A heading repeats an entry exactly, or as its start or end (``PLAYING PILGRIMS``)."""
    if key == first:
        return True
    shorter, longer = sorted((key, first), key=len)
    if len(shorter) < 6 or len(shorter) < 0.4 * len(longer):
        return False
    return longer.startswith(shorter) or longer.endswith(shorter)


def _is_toc_block(block: list[str]) -> bool:
    """Entries are short, mostly capitalised lines; sentences and wrapped prose end the table."""
    stripped = [line.strip() for line in block]
    text = " ".join(stripped)
    if len(_NUMBERED_ITEMS.findall(text)) >= 3:
        return True  # a run-on "1. Title 2. Title ..." table
    if any(len(line) > 80 for line in stripped):
        return False
    words = _WORDS.findall(text)
    if len(words) >= 8 and sum(word[0].islower() for word in words) >= 0.6 * len(words):
        return False  # a sentence, not a title
    if len(stripped) <= 2 or _CHAPTER_START.match(stripped[0]):
        return True
    long_lines = sum(len(line) >= 60 for line in stripped[:-1])
    return long_lines <= len(stripped[:-1]) // 3


def _render(block: list[str]) -> str:
    """One paragraph per line for prose; verse-like blocks keep their own line breaks."""
    lines = [_SPACES.sub(" ", line.strip()) for line in block]
    if len(lines) == 1 and _SEPARATOR.match(lines[0]):
        return SCENE_BREAK
    verse = len(lines) > 1 and _keeps_line_breaks(block)
    joined = "\n".join(lines) if verse else _join_prose(lines)
    joined = _ITALIC_MARK.sub("", joined)
    joined = normalize_punctuation(joined)
    return "\n".join(_SPACES.sub(" ", line).strip() for line in joined.split("\n")).strip()


def _join_prose(lines: list[str]) -> str:
    """Join wrapped lines with spaces, except after a dash that ended a line ("way--/in")."""
    out = lines[0]
    for line in lines[1:]:
        out += line if out.endswith(("--", "\u2014")) and not out.endswith(" --") else " " + line
    return out


def _keeps_line_breaks(block: list[str]) -> bool:
    stripped = [line.strip() for line in block]
    if max(len(line) for line in stripped[:-1]) < 48:
        return True  # headings, verse, lists, addresses
    indents = {_indent(line) for line in block[1:]}
    return len(indents) > 1  # verse alternates its indentation; prose wraps flush


def _indent(line: str) -> int:
    n = len(line) - len(line.lstrip(" \t"))
    return n if n >= 2 else 0


def _collapse_separators(paragraphs: list[str]) -> list[str]:
    """Never two scene breaks in a row, and none at the start or end of the book."""
    out: list[str] = []
    for paragraph in paragraphs:
        if paragraph == SCENE_BREAK and (not out or out[-1] == SCENE_BREAK):
            continue
        out.append(paragraph)
    while out and out[-1] == SCENE_BREAK:
        out.pop()
    return out


# --- book lists ----------------------------------------------------------------------------


def default_book_ids() -> list[int]:
    """The bundled list of classic English fiction (Moby-Dick first)."""
    return read_ids_file(BOOKS_FILE)


def read_ids_file(path: Path) -> list[int]:
    """One id per line; ``#`` starts a comment (the title, by convention)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise StoryError(f"cannot read book list {path}: {exc.strerror or exc}") from exc
    ids = []
    for number, line in enumerate(text.splitlines(), 1):
        item = line.split("#", 1)[0].strip()
        if not item:
            continue
        if not item.isdigit():
            raise StoryError(f"{path}:{number}: expected a Project Gutenberg id, got {item!r}")
        ids.append(int(item))
    return ids


def parse_ids(text: str) -> list[int]:
    """``"2701, 1342 11"`` → ``[2701, 1342, 11]``."""
    items = [item for item in re.split(r"[,\s]+", text.strip()) if item]
    bad = [item for item in items if not item.isdigit()]
    if bad:
        raise StoryError(f"not a Project Gutenberg id: {bad[0]!r} (use numbers like 2701)")
    return [int(item) for item in items]


# --- fetching and ingesting ----------------------------------------------------------------


@dataclass
class GutenbergReport:
    """What one download/ingest run did, for the CLI to print."""

    fetched: list[int] = field(default_factory=list)
    cleaned: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    binary: list[str] = field(default_factory=list)  # files that are not text, left out
    clean_bytes: int = 0

    def problems(self) -> list[str]:
        """One line per book left out, failures first."""
        return self.failed + [f"{path} {BINARY_REASON}" for path in self.binary]


def book_url(book_id: int, mirror: str = DEFAULT_MIRROR, pattern: str = DEFAULT_URL_PATTERN) -> str:
    return pattern.format(mirror=mirror.rstrip("/"), id=book_id)


def check_source(mirror: str, pattern: str) -> None:
    """One-line errors for a mirror that is not a URL, or a pattern that cannot name each book."""
    check_url(mirror, "--mirror")
    check_url_pattern(pattern, ("mirror", "id"))
    url = book_url(1, mirror, pattern)
    try:
        check_url(url)
    except StoryError:
        raise StoryError(
            f"--url-pattern: {pattern!r} does not make an http://, https:// or file:// URL "
            f"(book 1 would be {url!r})"
        ) from None


def has_start_but_no_end(text: str) -> bool:
    """A header marker with no footer marker after it: the book may have been cut short.

    The cleaner keeps everything after the header then, so such a book is still usable.
    """
    starts = [m for m in _START_MARKERS.finditer(text) if m.start() <= len(text) // 2]
    return bool(starts) and _END_MARKERS.search(text, starts[-1].end()) is None


def download_gutenberg(
    ids: Sequence[int] | None = None,
    mirror: str = DEFAULT_MIRROR,
    delay: float = 2.0,
    *,
    url_pattern: str = DEFAULT_URL_PATTERN,
    force: bool = False,
    console: Console | None = None,
) -> GutenbergReport:
    """Fetch books into ``raw/gutenberg/pg<ID>.txt`` (politely, one at a time) and clean them.

    Books already downloaded are not fetched again; a missing book is reported and skipped so
    that one dead link does not stop a long run.
    """
    check_source(mirror, url_pattern)
    ids = list(ids) if ids is not None else default_book_ids()
    raw = paths.raw_dir("gutenberg")
    report = GutenbergReport()
    fetched_any = False
    for book_id in ids:
        dest = raw / f"pg{book_id}.txt"
        key = f"pg{book_id}"
        if dest.exists() and not force and (why := _bad_raw(dest)):
            _say(console, f"{dest.name} from an earlier download {why}; fetching it again")
            _forget_output(key, dest, read_manifest())
            dest.unlink()
        fetched = not dest.exists() or force
        if fetched:
            if fetched_any and delay > 0:
                time.sleep(delay)
            fetched_any = True
            _say(console, f"fetching Project Gutenberg #{book_id}")
            try:
                download(book_url(book_id, mirror, url_pattern), dest, progress=console)
            except (LocalWriteError, UnknownHost):
                raise  # a full disk or a mistyped mirror: every other book would fail the same way
            except StoryError as exc:
                report.failed.append(f"{key}: {exc}")
                _say(console, f"[yellow]skipped[/]: {exc}")
                continue
            report.fetched.append(book_id)
            _warn_if_cut_short(dest, key, console)
        _clean_one(dest, key, force or fetched, report)
    _raise_if_nothing(report, "downloaded")
    return report


def _bad_raw(path: Path) -> str | None:
    try:
        return bad_download(path)
    except OSError:
        return None  # unreadable: the cleaner reports it


def _warn_if_cut_short(path: Path, key: str, console: Console | None) -> None:
    try:
        text = read_book(path)
    except OSError:
        return
    if has_start_but_no_end(text):
        _say(
            console,
            f"[yellow]warning[/]: {key} has no end-of-book marker, so the download may have "
            "been cut short; it is kept (fetch it again with --force if the book ends early)",
        )


def raw_books() -> list[Path]:
    """The downloaded books, leaving out files that are an HTML page or empty."""
    return [p for p in sorted(paths.raw_dir("gutenberg").glob("pg*.txt")) if not _bad_raw(p)]


def ingest_local(
    directory: Path, *, force: bool = False, console: Console | None = None
) -> GutenbergReport:
    """Clean every ``.txt`` book in ``directory`` (e.g. ``pg2701-moby-dick.txt``).

    Files named after a Project Gutenberg id (``pg<ID>...``, ``<ID>-0.txt``) keep that id; any
    other text file is cleaned under a name made from its file name.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise StoryError(f"not a directory: {directory}")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() == ".txt" and p.is_file())
    if not files:
        raise StoryError(f"no .txt books in {directory}")
    report = GutenbergReport()
    for i, path in enumerate(files, 1):
        if console is not None:
            console.print(f"[dim]{i}/{len(files)}[/] {path.name}", highlight=False)
        _clean_one(path, book_key(path), force, report)
    _raise_if_nothing(report, f"in {directory}")
    return report


def book_key(path: Path) -> str:
    """``pg2701-moby-dick.txt`` and ``2701-0.txt`` → ``pg2701``; other names → a safe slug."""
    name = path.stem
    match = re.match(r"^pg(\d+)(?:\b|[-_])", name + "-") or re.match(r"^(\d+)(?:-\d)?$", name)
    if match:
        return f"pg{int(match.group(1))}"
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    return slug or "book"


def cleaned_books() -> list[Path]:
    """Every cleaned book, in a stable order."""
    directory = paths.clean_dir("gutenberg")
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob("*.txt") if p.is_file())


def read_book(path: Path) -> str:
    """Decode a raw book: UTF-8 as published, else the Windows/Latin-1 editions of old files."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _clean_one(source: Path, key: str, force: bool, report: GutenbergReport) -> None:
    target = paths.clean_dir("gutenberg") / f"{key}.txt"
    manifest = read_manifest()
    entry = manifest["books"].get(key, {})
    try:
        if _is_binary(source):
            report.binary.append(str(source))
            _forget_output(key, source, manifest)
            return
        if target.exists() and entry.get("version") == CLEANER_VERSION and not force:
            report.skipped.append(key)
            return
        cleaned = clean_gutenberg(read_book(source))
    except OSError as exc:
        report.failed.append(f"{key}: cannot read {source}: {exc.strerror or exc}")
        return
    if len(cleaned) < 200:
        report.failed.append(f"{key}: almost no text left after cleaning {source.name}")
        return
    atomic_write_text(target, cleaned)
    size = len(cleaned.encode("utf-8"))
    report.cleaned.append(key)
    report.clean_bytes += size
    # Per-book cleaner version: a better cleaner re-cleans old output by itself.
    manifest["books"][key] = {"version": CLEANER_VERSION, "source": source.name, "bytes": size}
    _write_manifest(manifest)


def _is_binary(source: Path) -> bool:
    """Checked on every run, even for books already cleaned, so that a binary file cleaned by
    mistake in the past is caught too."""
    with open(source, "rb") as handle:
        return looks_binary(handle.read(64 * 1024))


def _forget_output(key: str, source: Path, manifest: dict) -> None:
    """Remove what an earlier run cleaned from ``source`` so that it never reaches the shards."""
    if manifest["books"].get(key, {}).get("source") != source.name:
        return  # the cleaned book under this key came from another file
    (paths.clean_dir("gutenberg") / f"{key}.txt").unlink(missing_ok=True)
    del manifest["books"][key]
    _write_manifest(manifest)


def _write_manifest(manifest: dict) -> None:
    atomic_write_text(
        paths.clean_dir("gutenberg") / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True)
    )


def read_manifest() -> dict:
    """``{"books": {key: {"version", "source", "bytes"}}}`` for every cleaned book."""
    path = paths.clean_dir("gutenberg") / MANIFEST
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        data = {}
    if not isinstance(data.get("books"), dict):
        data["books"] = {}
    return data


def _raise_if_nothing(report: GutenbergReport, where: str) -> None:
    """A run that leaves no book to train on is an error, not an empty success."""
    problems = report.problems()
    if problems and not (report.cleaned or report.skipped):
        raise StoryError(f"no usable book {where} ({problems[0]})")


def _say(console: Console | None, message: str) -> None:
    if console is not None:
        console.print(message, highlight=False, soft_wrap=True)  # each message one line
