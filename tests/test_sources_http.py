"""The resumable downloader against a real local HTTP server with scripted failures."""

from __future__ import annotations

import io
import os
from collections.abc import Iterator

import pytest
from rich.console import Console

from storytui.errors import StoryError
from tests.data_fixtures import FixtureServer, fixture_server
from trainer.sources.http import download

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
