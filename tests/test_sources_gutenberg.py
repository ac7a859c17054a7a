"""The Gutenberg cleaner on small fixture texts, and fetching/importing books end to end."""

from __future__ import annotations

import json
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest

from storytui import paths
from storytui.errors import StoryError
from tests.data_fixtures import FixtureServer, fixture_server, gutenberg_book
from trainer.sources import gutenberg, normalize_punctuation
from trainer.sources.gutenberg import (
    BOOKS_FILE,
    book_key,
    clean_gutenberg,
    default_book_ids,
    download_gutenberg,
    ingest_local,
    parse_ids,
    read_ids_file,
)

# --- header, footer, licence ---------------------------------------------------------------


@pytest.fixture
def http_server() -> Iterator[FixtureServer]:
    with fixture_server() as server:
        yield server


def test_modern_header_and_footer_are_removed():
    cleaned = clean_gutenberg(gutenberg_book())
    assert cleaned.startswith("CHAPTER I. The Harbour\n\nIt was a grey morning")
    assert cleaned.rstrip().endswith("all the way to the inn.")
    for noise in ("Project Gutenberg", "Produced by", "START OF", "END OF", "Title:", "\r"):
        assert noise not in cleaned
    assert "\ufeff" not in cleaned


def test_the_instead_of_this_and_no_spaces_in_markers():
    text = (
        "Title: Bleak\n\n***START OF THE PROJECT GUTENBERG EBOOK BLEAK***\n\n"
        "The fog was everywhere, up the river and down the river, where it rolled\n"
        "among the tiers of shipping.\n\n"
        "***END OF THE PROJECT GUTENBERG EBOOK BLEAK***\n\nlicence text\n"
    )
    assert clean_gutenberg(text) == (
        "The fog was everywhere, up the river and down the river, where it rolled "
        "among the tiers of shipping.\n"
    )


def test_start_marker_wrapped_over_two_lines():
    text = (
        "*** START OF THIS PROJECT GUTENBERG EBOOK\nTHE STRANGE CASE OF A LONG TITLE ***\n\n"
        "Mr. Utterson the lawyer was a man of a rugged countenance.\n\n"
        "*** END OF THIS PROJECT GUTENBERG EBOOK\nTHE STRANGE CASE ***\n"
    )
    assert clean_gutenberg(text) == "Mr. Utterson the lawyer was a man of a rugged countenance.\n"


def test_old_small_print_style():
    text = (
        "*Project Gutenberg Etext of Five Children and It, by E. Nesbit*\n\n"
        "Please take a look at the important information in this header.\n\n"
        "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\n"
        'Why is this "Small Print!" statement here?  You know: lawyers.\n\n'
        "*END*THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.29.93*END*\n\n\n"
        "The house was three miles from the station, but before the dusty\n"
        "hired fly had rattled along for five minutes the children began.\n\n\n"
        "*Project Gutenberg Etext of Five Children and It, by E. Nesbit*\n"
    )
    assert clean_gutenberg(text) == (
        "The house was three miles from the station, but before the dusty hired fly had "
        "rattled along for five minutes the children began.\n"
    )


def test_old_style_with_end_of_the_etext_footer():
    text = (
        "The Project Gutenberg Etext of Heidi by Johanna Spyri\n\n"
        "***START**THE SMALL PRINT!**FOR PUBLIC DOMAIN ETEXTS**START***\nlawyers\n\n"
        "*END THE SMALL PRINT! FOR PUBLIC DOMAIN ETEXTS*Ver.04.07.00*END*\n\n"
        "Then at last the grandmother spoke.\n\n\n"
        "End of The Project Gutenberg Etext of Heidi\nby Johanna Spyri\n"
    )
    assert clean_gutenberg(text) == "Then at last the grandmother spoke.\n"


def test_crlf_and_lone_cr_are_normalised():
    text = (
        "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\r\n\r\n"
        "A hard-wrapped line of prose that runs on for quite a long way,\r"
        "then ends.\r\n\r\nNext.\r\n"
    )
    assert clean_gutenberg(text) == (
        "A hard-wrapped line of prose that runs on for quite a long way, then ends.\n\nNext.\n"
    )


def test_text_without_any_header_is_still_cleaned():
    text = "A plain story with no licence at all, hard-wrapped like the others,\nhere.\n"
    assert clean_gutenberg(text) == (
        "A plain story with no licence at all, hard-wrapped like the others, here.\n"
    )


# --- body ---------------------------------------------------------------------------------


def test_hard_wrapped_paragraphs_become_one_line_each():
    cleaned = clean_gutenberg(gutenberg_book(crlf=False))
    paragraphs = cleaned.strip().split("\n\n")
    assert paragraphs[1] == (
        "It was a grey morning when the ship came in, and the whole town went down to the "
        "harbour to see it. Nobody had expected it so early in the year."
    )
    assert '"Who is aboard?" asked the old woman at the gate.' in paragraphs
    assert all("\n" not in p for p in paragraphs)


def test_verse_keeps_its_line_breaks_and_indented_prose_is_joined():
    text = (
        "   Caught from some unhappy master whom unmerciful Disaster\n"
        "   Followed fast and followed faster till his songs one burden bore--\n"
        "         Of \u201cnever--never more!\u201d\n\n"
        "  The pale Usher--threadbare in coat, heart, body, and brain; I see him\n"
        "  now. He was ever dusting his old lexicons and grammars, with a queer\n"
        "  handkerchief.\n\n"
        "My Lamb, you are so very small,\n"
        "You have not learned to read at all.\n"
    )
    paragraphs = clean_gutenberg(text).strip().split("\n\n")
    assert paragraphs[0].split("\n") == [
        "Caught from some unhappy master whom unmerciful Disaster",
        "Followed fast and followed faster till his songs one burden bore\u2014",
        'Of "never\u2014never more!"',
    ]
    assert paragraphs[1].startswith("The pale Usher\u2014threadbare in coat")
    assert "\n" not in paragraphs[1]
    assert paragraphs[2] == "My Lamb, you are so very small,\nYou have not learned to read at all."


def test_quotes_dashes_and_ellipses_follow_one_convention():
    assert normalize_punctuation("\u201cIt\u2019s\u2026 \u2018odd\u2019\u201d--he said") == (
        "\"It's... 'odd'\"\u2014he said"
    )
    assert normalize_punctuation("pages 10\u201312 \u2013 or so") == "pages 10-12 \u2014 or so"
    assert "\u00a0" not in normalize_punctuation("a\u00a0b")


def test_italics_illustrations_footnotes_and_scene_breaks():
    text = (
        "She did _not_ want to go down to the harbour that morning, and _may\nfall_ in love.\n\n"
        "[Illustration: The ship comes in,\nwith all sails set]\n\n"
        "He left.[Footnote 1: A note.]\n\n"
        "      *       *       *       *       *\n\n"
        "-----------\n\n"
        "Mr. ____ came in the year 17__.\n"
    )
    assert clean_gutenberg(text) == (
        "She did not want to go down to the harbour that morning, and may fall in love.\n\n"
        "He left.\n\n* * *\n\n"
        "Mr. ____ came in the year 17__.\n"
    )


def test_table_of_contents_is_removed_up_to_the_first_chapter():
    text = (
        "*** START OF THIS PROJECT GUTENBERG EBOOK MOBY ***\n\n"
        "MOBY-DICK\n\nCONTENTS\n\nETYMOLOGY.\n\nCHAPTER 1. Loomings.\n\n"
        "CHAPTER 2. The Carpet-Bag.\n\nCHAPTER 26. Knights and Squires.\n\n"
        "CHAPTER 27. Knights and Squires.\n\n"
        "CHAPTER 73. Stubb and Flask kill a Right Whale; and Then Have a Talk\nover Him.\n\n"
        "ETYMOLOGY.\n\n"
        "The pale Usher was ever dusting his old lexicons and grammars, with a queer\n"
        "handkerchief, mockingly embellished with all the gay flags of the world.\n"
    )
    paragraphs = clean_gutenberg(text).strip().split("\n\n")
    assert paragraphs[:2] == ["MOBY-DICK", "ETYMOLOGY."]
    assert paragraphs[2].startswith("The pale Usher")
    assert not any("Loomings" in p or "CONTENTS" in p for p in paragraphs)


def test_contents_block_of_short_lines_with_page_numbers():
    text = (
        "CONTENTS\n\n"
        "I       Up the Mountain            1\n"
        "II      At Home with Grandfather   14\n"
        "III     Out with the Goats         26\n\n"
        "I. UP THE MOUNTAIN\n\n"
        "From the old and pleasantly situated village of Mayenfeld, a footpath winds\n"
        "through green and shady meadows to the foot of the mountains.\n"
    )
    assert clean_gutenberg(text) == (
        "I. UP THE MOUNTAIN\n\nFrom the old and pleasantly situated village of Mayenfeld, a "
        "footpath winds through green and shady meadows to the foot of the mountains.\n"
    )


def test_contents_never_swallows_dialogue():
    text = (
        "CONTENTS\n\n  ONE  PLAYING PILGRIMS\n  TWO  A MERRY CHRISTMAS\n\n"
        "CHAPTER ONE\n\nPLAYING PILGRIMS\n\n"
        '"Christmas won\'t be Christmas without any presents," grumbled Jo, lying\n'
        "on the rug.\n\n"
        '"It\'s so dreadful to be poor!" sighed Meg, looking down at her old\n'
        "dress.\n"
    )
    paragraphs = clean_gutenberg(text).strip().split("\n\n")
    assert paragraphs[0] == "PLAYING PILGRIMS"
    assert paragraphs[1].startswith("\"Christmas won't be Christmas")
    assert paragraphs[2].startswith("\"It's so dreadful")


def test_transcriber_notes_are_removed():
    text = (
        "*** START OF THIS PROJECT GUTENBERG EBOOK X ***\n\n"
        "Original Transcriber\u2019s Notes:\n\n"
        "This text is a combination of etexts, one from the now-defunct ERIS project.\n\n"
        "Call me Ishmael. Some years ago, never mind how long precisely, having little\n"
        "or no money in my purse, I thought I would sail about a little.\n\n"
        "[Transcriber's Note: 'bread-fruit' has been substituted.]\n\n"
        + "The story went on and on and on.\n\n" * 30
        + "Transcriber\u2019s Notes:\n\nPage 79, period added.\n"
    )
    cleaned = clean_gutenberg(text)
    assert cleaned.startswith("Call me Ishmael.")
    assert "ranscriber" not in cleaned and "ERIS" not in cleaned and "Page 79" not in cleaned


# --- id lists ------------------------------------------------------------------------------


def test_bundled_book_list_starts_with_moby_dick_and_is_commented():
    ids = default_book_ids()
    assert ids[0] == 2701
    assert len(ids) >= 50 and len(set(ids)) == len(ids)
    lines = [line for line in BOOKS_FILE.read_text().splitlines() if line and line[0].isdigit()]
    assert all("#" in line and line.split("#", 1)[1].strip() for line in lines)


def test_parse_ids_and_ids_file(tmp_path):
    assert parse_ids("2701, 1342 11") == [2701, 1342, 11]
    with pytest.raises(StoryError):
        parse_ids("2701,moby")
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("# my list\n84  # Frankenstein\n\n345\n")
    assert read_ids_file(ids_file) == [84, 345]
    ids_file.write_text("84\nDracula\n")
    with pytest.raises(StoryError, match=":2:"):
        read_ids_file(ids_file)


def test_book_keys_from_file_names(tmp_path):
    assert book_key(tmp_path / "pg2701-moby-dick.txt") == "pg2701"
    assert book_key(tmp_path / "2701-0.txt") == "pg2701"
    assert book_key(tmp_path / "pg11.txt") == "pg11"
    assert book_key(tmp_path / "My Own Novel.txt") == "my-own-novel"


# --- fetching and importing ----------------------------------------------------------------


def test_download_fetches_cleans_and_skips_what_is_done(http_server, monkeypatch):
    http_server.add("/cache/epub/2701/pg2701.txt", gutenberg_book("Moby").encode())
    http_server.add("/cache/epub/11/pg11.txt", gutenberg_book("Alice").encode())
    sleeps: list[float] = []
    monkeypatch.setattr(gutenberg.time, "sleep", sleeps.append)

    report = download_gutenberg([2701, 11, 404], mirror=http_server.base_url, delay=1.5)
    assert report.fetched == [2701, 11]
    assert report.cleaned == ["pg2701", "pg11"]
    assert len(report.failed) == 1 and "pg404" in report.failed[0]
    assert sleeps == [1.5, 1.5]  # polite pause between requests, none before the first
    assert (paths.raw_dir("gutenberg") / "pg2701.txt").exists()
    cleaned = (paths.clean_dir("gutenberg") / "pg2701.txt").read_text()
    assert cleaned.startswith("CHAPTER I. The Harbour")

    requests_before = len(http_server.requests)
    again = download_gutenberg([2701, 11], mirror=http_server.base_url, delay=1.5)
    assert again.fetched == [] and again.skipped == ["pg2701", "pg11"]
    assert len(http_server.requests) == requests_before


def test_url_pattern_is_overridable(http_server):
    http_server.add("/books/7.txt", gutenberg_book("Seven").encode())
    report = download_gutenberg(
        [7], mirror=http_server.base_url, url_pattern="{mirror}/books/{id}.txt", delay=0
    )
    assert report.cleaned == ["pg7"]


def test_download_where_every_book_fails_is_an_error(http_server):
    with pytest.raises(StoryError, match="no usable book downloaded"):
        download_gutenberg([1, 2], mirror=http_server.base_url, delay=0)


def test_ingest_local_cleans_once_and_force_recleans(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    (books / "pg2701-moby-dick.txt").write_text(gutenberg_book("Moby"), encoding="utf-8")
    old_edition = gutenberg_book("Five", body="The caf\u00e9 was shut. " * 20).lstrip("\ufeff")
    (books / "pg778-five-children.txt").write_bytes(old_edition.encode("cp1252"))
    (books / "notes.md").write_text("not a book")

    report = ingest_local(books)
    assert sorted(report.cleaned) == ["pg2701", "pg778"]
    target = paths.clean_dir("gutenberg") / "pg2701.txt"
    assert target.read_text().startswith("CHAPTER I. The Harbour")
    assert "caf\u00e9" in (paths.clean_dir("gutenberg") / "pg778.txt").read_text()
    manifest = json.loads((paths.clean_dir("gutenberg") / "manifest.json").read_text())
    assert manifest["books"]["pg2701"]["version"] == gutenberg.CLEANER_VERSION

    target.write_text("stale")
    assert ingest_local(books).skipped == ["pg2701", "pg778"]
    assert target.read_text() == "stale"
    assert sorted(ingest_local(books, force=True).cleaned) == ["pg2701", "pg778"]
    assert target.read_text().startswith("CHAPTER I.")


def test_a_newer_cleaner_recleans_old_output(tmp_path, monkeypatch):
    books = tmp_path / "books"
    books.mkdir()
    (books / "pg1-a.txt").write_text(gutenberg_book("A"))
    ingest_local(books)
    monkeypatch.setattr(gutenberg, "CLEANER_VERSION", gutenberg.CLEANER_VERSION + 1)
    assert ingest_local(books).cleaned == ["pg1"]


BINARY = b"\x7fELF\x02\x01\x01" + b"\x00" * 2000 + b"text-looking tail " * 200


def test_ingest_local_skips_binary_files_and_still_imports_the_rest(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    (books / "pg2701-moby-dick.txt").write_text(gutenberg_book("Moby"), encoding="utf-8")
    latin = gutenberg_book("Five", body="The caf\u00e9 was shut. " * 20).lstrip("\ufeff")
    (books / "pg778-five.txt").write_bytes(latin.encode("latin-1"))
    (books / "bin.txt").write_bytes(BINARY)

    report = ingest_local(books)
    assert sorted(report.cleaned) == ["pg2701", "pg778"]
    assert report.binary == [str(books / "bin.txt")] and report.failed == []
    assert report.problems() == [f"{books / 'bin.txt'} looks like a binary file, not text"]
    assert "caf\u00e9" in (paths.clean_dir("gutenberg") / "pg778.txt").read_text()
    assert not (paths.clean_dir("gutenberg") / "bin.txt").exists()
    assert "bin" not in gutenberg.read_manifest()["books"]


def test_binary_output_of_an_earlier_run_is_removed(tmp_path):
    books = tmp_path / "books"
    books.mkdir()
    (books / "bin.txt").write_bytes(BINARY)
    (books / "pg1-a.txt").write_text(gutenberg_book("A"))
    stale = paths.clean_dir("gutenberg") / "bin.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("\x7fELF\x00\x00")
    manifest = {"books": {"bin": {"version": gutenberg.CLEANER_VERSION, "source": "bin.txt"}}}
    (stale.parent / "manifest.json").write_text(json.dumps(manifest))

    report = ingest_local(books)
    assert report.skipped == [] and report.binary == [str(books / "bin.txt")]
    assert not stale.exists()
    assert list(gutenberg.read_manifest()["books"]) == ["pg1"]


def test_a_folder_of_only_binary_files_is_an_error(tmp_path):
    (tmp_path / "bin.txt").write_bytes(BINARY)
    with pytest.raises(StoryError, match=r"no usable book in .*bin\.txt looks like a binary"):
        ingest_local(tmp_path)
    assert gutenberg.cleaned_books() == []


def test_download_skips_a_binary_book(http_server):
    http_server.add("/cache/epub/1/pg1.txt", BINARY)
    http_server.add("/cache/epub/2/pg2.txt", gutenberg_book("Two").encode())
    report = download_gutenberg([1, 2], mirror=http_server.base_url, delay=0)
    assert report.cleaned == ["pg2"]
    assert report.binary == [str(paths.raw_dir("gutenberg") / "pg1.txt")]
    with pytest.raises(StoryError, match=r"no usable book downloaded .*binary"):
        download_gutenberg([1], mirror=http_server.base_url, delay=0)


def test_ingest_local_errors(tmp_path):
    with pytest.raises(StoryError, match="not a directory"):
        ingest_local(tmp_path / "missing")
    with pytest.raises(StoryError, match=r"no \.txt books"):
        ingest_local(tmp_path)


def test_a_dash_at_the_end_of_a_wrapped_line_joins_without_a_space():
    text = (
        "we were all going direct to Heaven, we were all going direct the other way--\n"
        "in short, the period was so far like the present period.\n"
    )
    assert clean_gutenberg(text) == (
        "we were all going direct to Heaven, we were all going direct the other way\u2014in "
        "short, the period was so far like the present period.\n"
    )


# --- downloads that are not books -----------------------------------------------------------

HTML_PAGE = b"<!DOCTYPE html><html><body><p>Sorry, this page is unavailable.</p></body></html>"


def test_an_html_page_is_refused_not_saved_and_not_counted(http_server):
    from trainer.data_cli import _gutenberg_status

    http_server.add("/cache/epub/41/pg41.txt", HTML_PAGE, content_type="text/html")
    with pytest.raises(StoryError) as info:
        download_gutenberg([41], mirror=http_server.base_url, delay=0)
    assert "HTML page" in str(info.value) and "\n" not in str(info.value)
    assert list(paths.raw_dir("gutenberg").glob("pg41*")) == []
    assert _gutenberg_status() == ["Gutenberg: 0 downloaded, 0 cleaned books (0.0 MB)"]


def test_an_html_page_saved_by_an_earlier_run_is_fetched_again(http_server):
    from trainer.data_cli import _gutenberg_status

    raw = paths.raw_dir("gutenberg") / "pg41.txt"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(HTML_PAGE)
    assert _gutenberg_status()[0].startswith("Gutenberg: 0 downloaded")
    http_server.add("/cache/epub/41/pg41.txt", gutenberg_book("Hollow").encode())
    report = download_gutenberg([41], mirror=http_server.base_url, delay=0)
    assert report.fetched == [41] and report.cleaned == ["pg41"]
    assert raw.read_bytes() == gutenberg_book("Hollow").encode()
    assert _gutenberg_status()[0].startswith("Gutenberg: 1 downloaded")


def test_a_big_html_page_cleaned_by_an_earlier_run_is_replaced_by_the_book(http_server, tmp_path):
    page = b"<html><body>" + b"<p>Access is blocked in your country. Lorem ipsum.</p>\n" * 200
    earlier = tmp_path / "earlier"  # what an earlier version downloaded and cleaned
    earlier.mkdir()
    (earlier / "pg41.txt").write_bytes(page)
    ingest_local(earlier)
    assert "blocked" in (paths.clean_dir("gutenberg") / "pg41.txt").read_text()
    raw = paths.raw_dir("gutenberg") / "pg41.txt"
    raw.parent.mkdir(parents=True)
    raw.write_bytes(page)
    http_server.add("/cache/epub/41/pg41.txt", gutenberg_book("Hollow").encode())
    download_gutenberg([41], mirror=http_server.base_url, delay=0)
    cleaned = (paths.clean_dir("gutenberg") / "pg41.txt").read_text()
    assert cleaned.startswith("CHAPTER I. The Harbour") and "blocked" not in cleaned


def test_a_book_cut_short_without_content_length_is_kept_with_one_warning(http_server):
    import io

    from rich.console import Console

    whole = gutenberg_book("Hollow").encode()
    cut = whole[: whole.index(b"End of the Project")]
    http_server.add("/cache/epub/41/pg41.txt", cut, no_length=True)
    console = Console(file=io.StringIO(), width=200)
    report = download_gutenberg([41], mirror=http_server.base_url, delay=0, console=console)
    warnings = [line for line in console.file.getvalue().splitlines() if "warning" in line]
    assert len(warnings) == 1 and "may have been cut short" in warnings[0]
    assert report.cleaned == ["pg41"]  # the cleaner keeps a book without its footer
    assert (paths.clean_dir("gutenberg") / "pg41.txt").read_text().startswith("CHAPTER I.")


def test_a_whole_book_gets_no_warning(http_server):
    import io

    from rich.console import Console

    http_server.add("/cache/epub/41/pg41.txt", gutenberg_book("Hollow").encode(), no_length=True)
    console = Console(file=io.StringIO(), width=200)
    download_gutenberg([41], mirror=http_server.base_url, delay=0, console=console)
    assert "warning" not in console.file.getvalue()


def test_a_full_disk_stops_the_whole_run_at_once(http_server, monkeypatch):
    import errno

    from trainer.sources import http

    def no_space(path, mode="r", *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(http, "open", no_space, raising=False)
    http_server.add("/cache/epub/1/pg1.txt", gutenberg_book("One").encode())
    http_server.add("/cache/epub/2/pg2.txt", gutenberg_book("Two").encode())
    with pytest.raises(StoryError, match=r"^disk full while downloading"):
        download_gutenberg([1, 2], mirror=http_server.base_url, delay=0)
    assert [path for path, _ in http_server.requests] == ["/cache/epub/1/pg1.txt"]
    assert list(paths.raw_dir("gutenberg").iterdir()) == []


@pytest.mark.parametrize(
    ("mirror", "pattern", "expected"),
    [
        ("notaurl", gutenberg.DEFAULT_URL_PATTERN, "--mirror: "),
        ("", gutenberg.DEFAULT_URL_PATTERN, "--mirror: empty URL"),
        ("http://h", "{mirror}/{foo}", "--url-pattern: unknown placeholder {foo}"),
        ("http://h", "{mirror}/x.txt", "--url-pattern: '{mirror}/x.txt' has no {id}"),
        ("http://h", "pg{id}.txt", "--url-pattern: 'pg{id}.txt' does not make"),
    ],
)
def test_a_bad_mirror_or_pattern_fails_before_any_fetch(mirror, pattern, expected):
    with pytest.raises(StoryError) as info:
        download_gutenberg([41], mirror=mirror, url_pattern=pattern, delay=0)
    assert str(info.value).startswith(expected) and "\n" not in str(info.value)
    assert not paths.raw_dir("gutenberg").exists()


def test_a_mirror_that_does_not_exist_stops_the_run_at_the_first_book(monkeypatch):
    """Every other book would fail the same way: one line, not a wait per book."""
    asked: list[str] = []

    def no_such_name(request, *args, **kwargs):
        asked.append(request.full_url)
        raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "not known"))

    monkeypatch.setattr(urllib.request, "urlopen", no_such_name)
    with pytest.raises(StoryError) as info:
        download_gutenberg([1, 2, 3], mirror="https://mirror.invalid", delay=0)
    assert "cannot find the host 'mirror.invalid': a mistyped URL, or no network" in str(info.value)
    assert len(asked) == 2  # one book, tried twice
