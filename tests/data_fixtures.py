"""Test helpers for the data sources: a local HTTP server with scripted failures, and small
fixture books and WritingPrompts archives written on the spot (nothing from the real data)."""

from __future__ import annotations

import contextlib
import io
import socket
import tarfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Route:
    """What the server answers for one path.

    ``drop_first``: the first N answers send the headers (full length) and half the body, then
    hang up. ``fail_first``: the first N answers are 503. ``ignore_range``: always the whole
    body with 200, as servers without Range support do. ``content_type``: a Content-Type
    header. ``no_length``: no Content-Length; the body ends when the server hangs up.
    """

    body: bytes
    drop_first: int = 0
    fail_first: int = 0
    ignore_range: bool = False
    status: int = 200
    hits: int = 0
    content_type: str | None = None
    no_length: bool = False


@dataclass
class FixtureServer:
    base_url: str
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[tuple[str, str | None]] = field(default_factory=list)  # (path, Range)

    def add(self, path: str, body: bytes, **behaviour) -> str:
        self.routes[path] = Route(body, **behaviour)
        return self.base_url + path


def _handler(server_state: FixtureServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            range_header = self.headers.get("Range")
            server_state.requests.append((self.path, range_header))
            route = server_state.routes.get(self.path)
            if route is None or route.status == 404:
                self._send_plain(404, b"not found")
                return
            route.hits += 1
            if route.hits <= route.fail_first:
                self._send_plain(503, b"busy")
                return
            body, status, extra = route.body, 200, {}
            if range_header and not route.ignore_range:
                start = int(range_header.split("=")[1].split("-")[0])
                if start >= len(route.body):
                    self._send_plain(416, b"", {"Content-Range": f"bytes */{len(route.body)}"})
                    return
                body, status = route.body[start:], 206
                extra = {"Content-Range": f"bytes {start}-{len(route.body) - 1}/{len(route.body)}"}
            self.send_response(status)
            if route.content_type:
                self.send_header("Content-Type", route.content_type)
            if route.no_length:
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(body)
                self.close_connection = True
                return
            self.send_header("Content-Length", str(len(body)))
            for key, value in extra.items():
                self.send_header(key, value)
            self.end_headers()
            if route.hits <= route.fail_first + route.drop_first:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            self.wfile.write(body)

        def _send_plain(self, status: int, body: bytes, headers: dict | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


@contextlib.contextmanager
def fixture_server() -> Iterator[FixtureServer]:
    """A real HTTP server on 127.0.0.1 (port chosen by the OS) while the block runs."""
    state = FixtureServer(base_url="")
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(state))
    state.base_url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


# --- fixture texts -------------------------------------------------------------------------

BOOK_BODY = """\
CHAPTER I. The Harbour

It was a grey morning when the ship came in, and the whole town went
down to the harbour to see it. Nobody had expected it so early in the
year.

"Who is aboard?" asked the old woman at the gate.

CHAPTER II. The Stranger

The stranger walked up the hill without a word to anyone, and the
children followed him all the way to the inn.
"""


def gutenberg_book(title: str = "The Harbour", body: str = BOOK_BODY, crlf: bool = True) -> str:
    """A small book in the modern Project Gutenberg layout: header, body, licence footer."""
    text = (
        f"\ufeffThe Project Gutenberg EBook of {title}, by A. Writer\n\n"
        "This eBook is for the use of anyone anywhere at no cost.\n\n"
        f"Title: {title}\n\nAuthor: A. Writer\n\n"
        f"*** START OF THIS PROJECT GUTENBERG EBOOK {title.upper()} ***\n\n\n\n"
        "Produced by A. Volunteer\n\n\n\n"
        f"{body}\n\n"
        f"End of the Project Gutenberg EBook of {title}, by A. Writer\n\n"
        f"*** END OF THIS PROJECT GUTENBERG EBOOK {title.upper()} ***\n\n"
        "***** This file should be named 99.txt *****\n"
        "Section 1. General Terms of Use and Redistributing Project Gutenberg-tm\n"
    )
    return text.replace("\n", "\r\n") if crlf else text


def fan_archive(path: Path, splits: dict[str, list[tuple[str, str]]]) -> Path:
    """A ``writingPrompts.tar.gz`` laid out like the Fan et al. release."""
    with tarfile.open(path, "w:gz") as tar:
        for split, pairs in splits.items():
            for suffix, column in (("wp_source", 0), ("wp_target", 1)):
                data = "".join(pair[column] + "\n" for pair in pairs).encode("utf-8")
                info = tarfile.TarInfo(f"writingPrompts/{split}.{suffix}")
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return path
