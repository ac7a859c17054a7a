"""Downloads that survive flaky networks: resume with HTTP Range, retry with backoff, rename last.

Training data is hundreds of megabytes fetched over home connections; a dropped connection at
90% must cost one more request, not a restart, and a half-written file must never look complete.
"""

from __future__ import annotations

import contextlib
import errno
import http.client
import os
import re
import socket
import string
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

from storytui.errors import StoryError

USER_AGENT = "storytui-data/0.1 (+https://github.com/storytui)"
CHUNK = 1 << 16
_FATAL_STATUS = {400, 401, 403, 404, 405, 410, 451}
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_TOTAL_ONLY = re.compile(r"bytes\s+\*/(\d+)")


_DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
_HTML_TYPES = ("text/html", "application/xhtml+xml")
_HTML_STARTS = (b"<!doctype html", b"<html")


class _Retry(Exception):
    """One attempt failed in a way that another attempt may fix."""


class _NoSuchHost(_Retry):
    """The resolver knows no such host: a mistyped name, or no network (DNS down answers the
    same way), so it is tried once more, not six times."""


class UnknownHost(StoryError):
    """The URL's host cannot be found, twice: every other file from that host would fail the
    same way, so a run of many files stops."""


class LocalWriteError(StoryError):
    """This machine cannot store the download (disk full, no permission): no retry, and no
    other file of the same run, can get past it."""


def check_url(url: str, option: str = "URL") -> str:
    """``url`` when it is an ``http://``, ``https://`` or ``file://`` URL; else one-line error."""
    hint = "use an http://, https:// or file:// URL"
    if not url.strip():
        raise StoryError(f"{option}: empty URL ({hint})")
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in url):
        raise StoryError(f"{option}: {url!r} contains spaces or control characters ({hint})")
    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
    except ValueError as exc:
        raise StoryError(f"{option}: not a valid URL: {url!r} ({exc})") from None
    scheme = parts.scheme.lower()
    if scheme in ("http", "https") and parts.hostname:
        return url
    if scheme == "file" and parts.netloc in ("", "localhost") and parts.path:
        return url
    raise StoryError(f"{option}: not a URL this can fetch: {url!r} ({hint})")


def check_url_pattern(pattern: str, fields: tuple[str, ...], option: str = "--url-pattern") -> str:
    """``pattern`` when it is a format string with ``{id}`` and no placeholder but ``fields``."""
    allowed = " and ".join("{" + name + "}" for name in fields)
    try:
        used = [name for _, name, _, _ in string.Formatter().parse(pattern) if name is not None]
    except ValueError as exc:
        raise StoryError(
            f"{option}: {exc} in {pattern!r} (placeholders are {allowed}; write {{{{ and }}}} "
            "for a literal brace)"
        ) from None
    for name in used:
        if name not in fields:
            shown = "{" + name + "}"
            raise StoryError(f"{option}: unknown placeholder {shown} (only {allowed})")
    if "id" not in used:
        raise StoryError(f"{option}: {pattern!r} has no {{id}}, so every book would be one file")
    try:
        pattern.format(**{name: 1 if name == "id" else "x" for name in fields})
    except (ValueError, TypeError) as exc:
        raise StoryError(f"{option}: {exc} in {pattern!r}") from None
    return pattern


def bad_download(path: Path) -> str | None:
    """Why a downloaded file is clearly not what was asked for, as in "the file ...": "is empty"
    or "is an HTML page" (an error or login page sent with status 200); ``None`` when it may
    be fine."""
    with open(path, "rb") as handle:
        head = handle.read(1024)
    if not head:
        return "is empty"
    if head.lstrip(b"\xef\xbb\xbf \t\r\n").lower().startswith(_HTML_STARTS):
        return "is an HTML page"
    return None


def download(
    url: str,
    dest: Path,
    *,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 30.0,
    progress: Console | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Fetch ``url`` into ``dest`` and return ``dest``; ``dest`` appears only when complete.

    Bytes go to ``dest.part`` first. Each retry resumes from the end of the partial file with a
    Range request (restarting cleanly if the server ignores Range). Only attempts that add no
    bytes count against ``retries``; the wait between them doubles from ``backoff`` seconds.
    An HTML page or an empty body is refused, not saved. A file that cannot be written (disk
    full: the partial file is removed) raises ``LocalWriteError`` at once, without retrying.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    failures = 0
    bar = _Bar(progress, dest.name)
    try:
        while True:
            before = part.stat().st_size if part.exists() else 0
            try:
                if _attempt(url, part, timeout, bar):
                    break
                reason = "connection closed early"
            except _Retry as exc:
                reason = str(exc)
                if isinstance(exc, _NoSuchHost) and failures >= 1:
                    raise UnknownHost(f"download failed: {url} ({reason})") from exc
            after = part.stat().st_size if part.exists() else 0
            if after <= before:
                failures += 1
            if failures > retries:
                raise StoryError(f"download failed after {failures} tries: {url} ({reason})")
            if after <= before:
                wait = backoff * 2 ** (failures - 1)
                bar.note(f"{url}: {reason}; trying again in {wait:g}s ({failures} of {retries})")
                sleep(wait)
    finally:
        bar.close()
    os.replace(part, dest)
    _fsync_dir(dest.parent)
    return dest


def _attempt(url: str, part: Path, timeout: float, bar: _Bar) -> bool:
    """One request; True when ``part`` now holds the whole body."""
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        return _handle_http_error(url, exc, part, have)
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        if url.lower().startswith("file:"):  # a local file does not appear by waiting
            raise StoryError(f"download failed: {url} ({_reason(exc)})") from exc
        if _no_such_host(exc):
            host = urllib.parse.urlsplit(url).hostname
            raise _NoSuchHost(
                f"cannot find the host {host!r}: a mistyped URL, or no network"
            ) from exc
        raise _Retry(_reason(exc)) from exc
    with response:
        status = response.status or 200  # file:// answers have no status
        content_type = response.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if content_type in _HTML_TYPES:
            raise StoryError(f"download failed: {url} (the server sent an HTML page, not the file)")
        offset, total = _plan(response, status, have)
        if offset == 0 and have:
            part.unlink(missing_ok=True)  # server ignored Range: start over
        bar.start(total, offset)
        _write_body(response, part, offset > 0, url, bar)
    size = part.stat().st_size
    if total is not None and size < total:
        return False
    if total is not None and size > total:
        part.unlink()
        raise _Retry(f"received {size} bytes, expected {total}")
    if why := bad_download(part):
        part.unlink()
        raise StoryError(f"download failed: {url} (what the server sent {why})")
    return True


def _write_body(response, part: Path, append: bool, url: str, bar: _Bar) -> None:
    """Copy the body into ``part``: a failed read may be retried, a failed write may not."""
    try:
        out = open(part, "ab" if append else "wb")  # noqa: SIM115 - closed below, whatever fails
    except OSError as exc:
        raise _write_error(exc, part, url) from exc
    try:
        while True:
            try:
                chunk = response.read(CHUNK)
            except (OSError, http.client.HTTPException) as exc:
                raise _Retry(_reason(exc)) from exc
            if not chunk:
                break
            out.write(chunk)
            bar.advance(len(chunk))
        out.flush()
        os.fsync(out.fileno())
    except OSError as exc:
        with contextlib.suppress(OSError):
            out.close()
        raise _write_error(exc, part, url) from exc
    finally:  # after a failed read: what was written stays for the retry to resume
        with contextlib.suppress(OSError):
            out.close()


def _write_error(exc: OSError, part: Path, url: str) -> LocalWriteError:
    if exc.errno in _DISK_FULL:
        part.unlink(missing_ok=True)
        return LocalWriteError(
            f"disk full while downloading {url} to {part.parent}; the partial file was removed"
        )
    return LocalWriteError(f"cannot write {part}: {exc.strerror or exc}")


def _plan(response: http.client.HTTPResponse, status: int, have: int) -> tuple[int, int | None]:
    """Where this response's body starts in the file, and the file's full size if known."""
    length = response.headers.get("Content-Length")
    length_n = int(length) if length and length.isdigit() else None
    if status == 206:
        match = _CONTENT_RANGE.match(response.headers.get("Content-Range", ""))
        if not match or int(match.group(1)) != have:
            raise _Retry("server sent a range that does not continue the partial file")
        total = match.group(3)
        if total != "*":
            return have, int(total)
        return have, None if length_n is None else have + length_n
    return 0, length_n


def _handle_http_error(url: str, exc: urllib.error.HTTPError, part: Path, have: int) -> bool:
    if exc.code == 416 and have:
        # Range past the end: either the partial file is already whole, or it is stale.
        match = _TOTAL_ONLY.match(exc.headers.get("Content-Range", "") if exc.headers else "")
        if match and int(match.group(1)) == have:
            return True
        part.unlink(missing_ok=True)
        raise _Retry("server rejected the resume range; restarting") from exc
    if exc.code in _FATAL_STATUS:
        what = "not found" if exc.code in (404, 410) else f"HTTP {exc.code} {exc.reason}"
        raise StoryError(f"download failed: {url} ({what})") from exc
    raise _Retry(f"HTTP {exc.code} {exc.reason}") from exc


def _no_such_host(exc: BaseException) -> bool:
    """The resolver's "no such name" (not its "try again", which a flaky network gives)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, socket.gaierror) and reason.errno == socket.EAI_NONAME


def _reason(exc: BaseException) -> str:
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        return str(exc.reason)
    if isinstance(exc, TimeoutError):
        return "timed out"
    if isinstance(exc, http.client.IncompleteRead):
        return "connection closed early"
    return str(exc) or type(exc).__name__


class _Bar:
    """A rich progress bar (bytes, rate, ETA) when a console is given, else nothing."""

    def __init__(self, console: Console | None, label: str) -> None:
        self._progress: Progress | None = None
        self._task: TaskID | None = None
        if console is not None:
            self._progress = Progress(
                TextColumn("[bold]{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            self._task = self._progress.add_task(label, total=None)
            self._progress.start()

    def start(self, total: int | None, completed: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.update(self._task, total=total, completed=completed)

    def advance(self, n: int) -> None:
        if self._progress is not None and self._task is not None:
            self._progress.advance(self._task, n)

    def note(self, message: str) -> None:
        """A line above the bar: a wait between tries is never silent."""
        if self._progress is not None:
            self._progress.console.print(Text(message, style="yellow"))

    def close(self) -> None:
        if self._progress is not None:
            self._progress.stop()


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
