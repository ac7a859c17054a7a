"""Writes that survive a kill at any moment: temp file in the same directory, fsync, rename."""

from __future__ import annotations

import contextlib
import ctypes
import errno
import glob
import os
import re
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

from storytui.errors import StoryError

_TEMP_SUFFIX = ".tmp"
_OLD_DIRECTORY = re.compile(r"\.(?P<name>.+)\.old-(?P<pid>\d+)")  # a replaced dir, until removed
# a directory being written: ``.<name>.tmp-<pid>-<random>``
_TEMP_DIRECTORY = re.compile(r"\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[^.]+")
_AT_FDCWD = -100
_RENAME_EXCHANGE = 2  # renameat2 flag: swap two paths in one step


def ordinary_mode(directory: bool = False) -> int:
    """The permissions a new file (or directory) gets from the umask: what ``mkstemp`` and
    ``mkdtemp``, which make theirs private, and writers such as safetensors (0600) leave out."""
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def process_exists(pid: int) -> bool:
    """Whether process ``pid`` is running (as any user)."""
    if not 0 < pid < 2**31:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, run by another user
        return True
    except OSError:
        return False
    return True


def _disk_error(path: Path, exc: OSError) -> StoryError:
    if exc.errno == errno.ENOSPC:
        return StoryError(f"disk full while writing {path}; nothing was changed")
    return StoryError(f"cannot write {path}: {exc.strerror or exc}")


def _make_parent(path: Path) -> None:
    """Create the folders ``path`` goes in, or say in one line why they cannot be."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
        if blocker is not None:
            raise StoryError(f"cannot write {path}: {blocker} is not a folder") from exc
        raise _disk_error(path, exc) from exc


def _copy_owner_and_mode(source: Path, target: str) -> None:
    """The replaced file's permissions, and its owner and group where this process may set
    them (root editing another user's story must not leave it root's)."""
    shutil.copymode(source, target)
    stat = source.stat()
    with contextlib.suppress(OSError):
        os.chown(target, stat.st_uid, stat.st_gid)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so that readers see either the old or the new file.

    A symlink is written through: its target is replaced and the link stays a link.
    """
    path = Path(os.path.realpath(path))
    _make_parent(path)
    try:  # a folder the writer cannot write to is their error to see, not a traceback
        fd, tmp = tempfile.mkstemp(
            prefix=f".{path.name}.{os.getpid()}.", suffix=_TEMP_SUFFIX, dir=path.parent
        )
    except OSError as exc:
        raise _disk_error(path, exc) from exc
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(OSError):
            if path.exists():
                _copy_owner_and_mode(path, tmp)
            else:  # mkstemp makes files private; a new story gets the usual permissions
                os.chmod(tmp, ordinary_mode())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
        _clear_killed_writes(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise _disk_error(path, exc) from exc
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _clear_killed_writes(path: Path) -> None:
    """Delete the temp files that writers of ``path`` killed mid-write left beside it (their
    process is gone, so the rename never came): otherwise every kill leaves a hidden copy."""
    own = re.compile(rf"\.{re.escape(path.name)}\.(?P<pid>\d+)\.[^.]+{re.escape(_TEMP_SUFFIX)}")
    for temp in temp_files(path.parent, glob.escape(path.name)):
        match = own.fullmatch(temp.name)
        if match is not None and _writer_is_gone(int(match["pid"])):
            with contextlib.suppress(OSError):
                temp.unlink()


def temp_files(directory: Path, names: str = "*") -> list[Path]:
    """The temp files ``atomic_write_bytes`` writes beside files matching the glob ``names``:
    only a write under way, or one that was killed, leaves one there."""
    return list(Path(directory).glob(f".{names}.*{_TEMP_SUFFIX}"))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


@contextlib.contextmanager
def atomic_directory(final: Path) -> Iterator[Path]:
    """Yield a temp directory beside ``final``; on success it takes ``final``'s place at once.

    A kill mid-write leaves only a hidden ``.<name>.tmp-*`` directory, never a half checkpoint,
    and ``final`` is never missing: on Linux the two directories swap in one ``renameat2``
    (``RENAME_EXCHANGE``). Where that is unavailable the old one is first renamed aside to
    ``.<name>.old-<pid>``; ``restore_replaced`` puts it back if a kill fell between the renames.
    """
    final = Path(final)
    _make_parent(final)
    try:
        restore_replaced(final.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.tmp-{os.getpid()}-", dir=final.parent))
    except OSError as exc:
        raise _disk_error(final, exc) from exc
    os.chmod(tmp, ordinary_mode(directory=True))  # a checkpoint is an ordinary directory
    file_mode = ordinary_mode()
    try:
        yield tmp
        for child in tmp.iterdir():
            with open(child, "rb") as handle:
                os.fchmod(handle.fileno(), file_mode)
                os.fsync(handle.fileno())
        _replace_directory(tmp, final)
        _fsync_dir(final.parent)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise _disk_error(final, exc) from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _replace_directory(new: Path, final: Path) -> None:
    """Put directory ``new`` where ``final`` is (or is not yet) and delete the old one.

    Another writer may put its own ``final`` there between the look and the rename (two
    training processes building the same shards): then ours replaces theirs, as if it had
    come second.
    """
    if not final.exists():
        try:
            os.replace(new, final)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or not final.is_dir():
                raise
    if exchange_paths(new, final):
        shutil.rmtree(new, ignore_errors=True)  # ``new`` now holds the old directory
    else:
        old = final.with_name(f".{final.name}.old-{os.getpid()}")
        os.replace(final, old)
        os.replace(new, final)
        shutil.rmtree(old, ignore_errors=True)


def exchange_paths(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step; False where the system or file system cannot."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):  # a libc older than glibc 2.28 or musl 1.2.5
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    renameat2.argtypes += [ctypes.c_uint]
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(code, os.strerror(code), str(b))


def restore_replaced(parent: Path) -> None:
    """Undo what a kill interrupted: a ``.<name>.old-<pid>`` directory whose ``<name>`` is
    missing goes back, one left after its replacement finished is deleted, and so is a
    half-written ``.<name>.tmp-<pid>-*`` one (a checkpoint's worth of disk each)."""
    try:
        children = list(Path(parent).iterdir())
    except OSError:
        return
    for child in children:
        unfinished = _TEMP_DIRECTORY.fullmatch(child.name)
        if unfinished is not None and child.is_dir() and _writer_is_gone(int(unfinished["pid"])):
            shutil.rmtree(child, ignore_errors=True)
            continue
        match = _OLD_DIRECTORY.fullmatch(child.name)
        if match is None or not child.is_dir() or _is_running(int(match["pid"])):
            continue
        final = child.with_name(match["name"])
        with contextlib.suppress(OSError):
            if final.exists():
                shutil.rmtree(child)
            else:
                os.replace(child, final)


def _is_running(pid: int) -> bool:
    """Whether another process ``pid`` exists (so its replacement may still be under way)."""
    return pid != os.getpid() and process_exists(pid)


def _writer_is_gone(pid: int) -> bool:
    """Whether the process that named a temp file or folder after itself has ended (this
    process's own may be a write under way in another thread)."""
    return pid != os.getpid() and not process_exists(pid)


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
