"""The resumable downloader against a real local HTTP server with scripted failures."""

from __future__ import annotations

import io
import os
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator

import pytest
from rich.console import Console

from storytui.errors import StoryError
from tests.data_fixtures import FixtureServer, fixture_server
from trainer.sources.http import UnknownHost, download

PAYLOAD = os.urandom(300_000)


@pytest.fixture
def http_server() -> Iterator[FixtureServer]:
    with fixture_server() as server:
        yield server


def test_plain_download_writes_exact_bytes_and_no_part_file(http_server, tmp_path):
    url = http_server.add("/file.bin", PAYLOAD)
    dest = download(url, tmp_path / "file.bin", backoff=0)
    assert dest.read_bytes() == PAYLOAD
    assert not (tmp_path / "file.bin.part").exists()


def test_dropped_connection_resumes_with_range(http_server, tmp_path):
    url = http_server.add("/big.bin", PAYLOAD, drop_first=2)
    dest = download(url, tmp_path / "big.bin", backoff=0)
    assert dest.read_bytes() == PAYLOAD
    ranges = [r for path, r in http_server.requests if path == "/big.bin"]
    assert ranges[0] is None
    # Each retry asks for the rest of the file, starting where the partial file ends.
    assert ranges[1] == f"bytes={len(PAYLOAD) // 2}-"
    assert len(ranges) == 3 and all(r and r.startswith("bytes=") for r in ranges[1:])


def test_partial_file_from_an_earlier_run_is_resumed(http_server, tmp_path):
    url = http_server.add("/resume.bin", PAYLOAD)
    (tmp_path / "resume.bin.part").write_bytes(PAYLOAD[:1000])
    download(url, tmp_path / "resume.bin", backoff=0)
    assert (tmp_path / "resume.bin").read_bytes() == PAYLOAD
    assert http_server.requests == [("/resume.bin", "bytes=1000-")]


def test_server_that_ignores_range_restarts_cleanly(http_server, tmp_path):
    url = http_server.add("/norange.bin", PAYLOAD, drop_first=1, ignore_range=True)
    dest = download(url, tmp_path / "norange.bin", backoff=0)
    assert dest.read_bytes() == PAYLOAD  # not the first half twice


def test_stale_partial_larger_than_file_is_discarded(http_server, tmp_path):
    url = http_server.add("/small.bin", b"abc")
    (tmp_path / "small.bin.part").write_bytes(b"0123456789")
    assert download(url, tmp_path / "small.bin", backoff=0).read_bytes() == b"abc"


def test_server_errors_are_retried_with_backoff(http_server, tmp_path):
    url = http_server.add("/busy.bin", PAYLOAD, fail_first=2)
    waits: list[float] = []
    download(url, tmp_path / "busy.bin", backoff=0.5, sleep=waits.append)
    assert (tmp_path / "busy.bin").read_bytes() == PAYLOAD
    assert waits == [0.5, 1.0]  # exponential


def test_missing_file_is_a_one_line_error(http_server, tmp_path):
    with pytest.raises(StoryError) as info:
        download(http_server.base_url + "/nope.txt", tmp_path / "nope.txt", backoff=0)
    message = str(info.value)
    assert "not found" in message and "/nope.txt" in message and "\n" not in message
    assert len(http_server.requests) == 1  # a 404 is not retried
    assert not (tmp_path / "nope.txt").exists()


def test_gives_up_after_retries_with_one_line_error(http_server, tmp_path):
    url = http_server.add("/down.bin", PAYLOAD, fail_first=100)
    with pytest.raises(StoryError) as info:
        download(url, tmp_path / "down.bin", retries=2, backoff=0)
    assert "after 3 tries" in str(info.value) and "\n" not in str(info.value)
    assert len(http_server.requests) == 3
    assert not (tmp_path / "down.bin").exists()


def test_unreachable_host_is_a_story_error(tmp_path):
    with socket_port() as port:
        url = f"http://127.0.0.1:{port}/x"
    with pytest.raises(StoryError):
        download(url, tmp_path / "x", retries=1, backoff=0, timeout=2)


def test_progress_bar_renders_to_the_given_console(http_server, tmp_path):
    url = http_server.add("/shown.bin", PAYLOAD)
    console = Console(file=io.StringIO(), force_terminal=True, width=100)
    download(url, tmp_path / "shown.bin", progress=console, backoff=0)
    assert (tmp_path / "shown.bin").read_bytes() == PAYLOAD


class socket_port:
    """A free local port with nothing listening on it (closed before use)."""

    def __enter__(self) -> int:
        import socket

        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        return self.sock.getsockname()[1]

    def __exit__(self, *exc) -> None:
        self.sock.close()


# --- what is refused rather than saved ------------------------------------------------------

HTML_PAGE = b"<!DOCTYPE html><html><body><h1>Temporarily unavailable</h1></body></html>"


@pytest.mark.parametrize(
    ("body", "behaviour", "reason"),
    [
        (HTML_PAGE, {"content_type": "text/html; charset=utf-8"}, "HTML page"),
        (b"\n  <HTML><body>blocked</body></html>", {}, "HTML page"),  # no Content-Type
        (b"\xef\xbb\xbf<!doctype html>x", {"content_type": "text/plain"}, "HTML page"),
        (b"", {}, "is empty"),
    ],
)
def test_an_html_page_or_an_empty_body_is_refused_and_not_saved(
    http_server, tmp_path, body, behaviour, reason
):
    url = http_server.add("/book.txt", body, **behaviour)
    with pytest.raises(StoryError) as info:
        download(url, tmp_path / "book.txt", backoff=0)
    assert reason in str(info.value) and "\n" not in str(info.value)
    assert len(http_server.requests) == 1  # not retried
    assert list(tmp_path.iterdir()) == []  # neither the file nor a .part


def test_a_body_without_content_length_is_saved_whole(http_server, tmp_path):
    url = http_server.add("/nolen.bin", PAYLOAD, no_length=True)
    assert download(url, tmp_path / "nolen.bin", backoff=0).read_bytes() == PAYLOAD


class _FullDisk:
    """A file whose writes fail with ENOSPC once ``room`` bytes are in (the real file keeps
    what fitted, as on a full disk)."""

    def __init__(self, handle, room: int) -> None:
        self.handle, self.room = handle, room

    def write(self, data: bytes) -> int:
        import errno

        if len(data) > self.room:
            self.handle.write(data[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(data)
        return self.handle.write(data)

    def __getattr__(self, name):
        return getattr(self.handle, name)


def test_a_full_disk_stops_at_once_and_removes_the_partial_file(http_server, tmp_path, monkeypatch):
    import builtins

    from trainer.sources import http

    def full_open(path, mode="r", *args, **kwargs):
        return _FullDisk(builtins.open(path, mode, *args, **kwargs), room=100_000)

    monkeypatch.setattr(http, "open", full_open, raising=False)
    url = http_server.add("/big.bin", PAYLOAD)
    waits: list[float] = []
    with pytest.raises(http.LocalWriteError) as info:
        download(url, tmp_path / "big.bin", backoff=1, sleep=waits.append)
    message = str(info.value)
    assert message.startswith("disk full while downloading") and "\n" not in message
    assert "partial file was removed" in message
    assert len(http_server.requests) == 1 and waits == []  # no retry, no wait
    assert list(tmp_path.iterdir()) == []


def test_a_missing_local_file_is_not_retried(tmp_path):
    waits: list[float] = []
    url = (tmp_path / "absent.txt").as_uri()
    with pytest.raises(StoryError) as info:
        download(url, tmp_path / "out.txt", backoff=1, sleep=waits.append)
    assert "absent.txt" in str(info.value) and waits == []


def test_a_local_file_url_downloads(tmp_path):
    source = tmp_path / "source.bin"
    source.write_bytes(PAYLOAD)
    assert download(source.as_uri(), tmp_path / "copy.bin").read_bytes() == PAYLOAD


# --- URL and pattern checks -----------------------------------------------------------------


@pytest.mark.parametrize(
    "url", ["http://example.org", "https://h.example/x/y", "file:///tmp/books", "HTTP://H:8080/"]
)
def test_urls_that_can_be_fetched_pass(url):
    from trainer.sources.http import check_url

    assert check_url(url, "--mirror") == url


@pytest.mark.parametrize(
    "url", ["notaurl", "", " ", "ftp://x/y", "http://", "file://remote/x", "http://h:abc/",
            "http://a b/", "//host/path", "www.gutenberg.org"],
)  # fmt: skip
def test_anything_else_is_one_line_naming_the_option(url):
    from trainer.sources.http import check_url

    with pytest.raises(StoryError) as info:
        check_url(url, "--mirror")
    message = str(info.value)
    assert message.startswith("--mirror: ") and "\n" not in message


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        ("{mirror}/{foo}", "unknown placeholder {foo}"),
        ("{mirror}/{id", "expected '}'"),
        ("{0}", "unknown placeholder {0}"),
        ("{}", "unknown placeholder {}"),
        ("{id.real}", "unknown placeholder {id.real}"),
        ("{mirror}/x.txt", "has no {id}"),
        ("", "has no {id}"),
        ("{mirror:d}/{id}", "Unknown format code"),
    ],
)
def test_bad_url_patterns_are_one_line(pattern, expected):
    from trainer.sources.http import check_url_pattern

    with pytest.raises(StoryError) as info:
        check_url_pattern(pattern, ("mirror", "id"))
    message = str(info.value)
    assert message.startswith("--url-pattern: ") and expected in message and "\n" not in message


def test_good_url_patterns_pass():
    from trainer.sources.http import check_url_pattern

    for pattern in ("{mirror}/cache/epub/{id}/pg{id}.txt", "{mirror}/{id:05d}.txt", "x/{{{id}}}"):
        assert check_url_pattern(pattern, ("mirror", "id")) == pattern


def _no_such_name(*args, **kwargs):
    raise urllib.error.URLError(socket.gaierror(socket.EAI_NONAME, "Name or service not known"))


def test_a_host_that_cannot_be_found_is_tried_once_more_then_named(tmp_path, monkeypatch):
    """A mistyped host used to be tried six times with waits between (31 s per file); offline,
    the resolver answers the same way, so one more try after a second, then one line."""
    monkeypatch.setattr(urllib.request, "urlopen", _no_such_name)
    waits: list[float] = []
    with pytest.raises(UnknownHost) as info:
        download("https://gutenberg.orgg/x.txt", tmp_path / "x", sleep=waits.append)
    assert str(info.value) == (
        "download failed: https://gutenberg.orgg/x.txt (cannot find the host "
        "'gutenberg.orgg': a mistyped URL, or no network)"
    )
    assert waits == [1.0] and not list(tmp_path.iterdir())


def test_each_wait_between_tries_is_shown(http_server, tmp_path):
    url = http_server.add("/busy.bin", PAYLOAD, fail_first=2)
    console = Console(file=io.StringIO(), width=200)
    download(url, tmp_path / "busy.bin", backoff=0.5, sleep=lambda s: None, progress=console)
    shown = console.file.getvalue()
    assert f"{url}: HTTP 503 Service Unavailable; trying again in 0.5s (1 of 5)" in shown
    assert "trying again in 1s (2 of 5)" in shown
