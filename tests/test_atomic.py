"""Atomic writes: a kill at any moment leaves the old version or the new one, never a mix or
nothing."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from storytui import atomic
from storytui.atomic import atomic_directory, atomic_write_bytes, restore_replaced
from storytui.checkpoint import list_checkpoints
from storytui.errors import StoryError
from tests.conftest import make_tiny_checkpoint

WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from storytui.atomic import atomic_directory, atomic_write_bytes
    target, kind = Path(sys.argv[1]), sys.argv[2]
    generation = 0
    print("ready", flush=True)
    while True:
        generation += 1
        body = str(generation).encode() * 200_000
        if kind == "file":
            atomic_write_bytes(target, body)
        else:
            with atomic_directory(target) as tmp:
                (tmp / "a").write_bytes(body)
                (tmp / "b").write_bytes(body)
    """
)


def _kill_repeatedly(target: Path, kind: str, kills: int = 12) -> list[bytes]:
    """SIGKILL a process that rewrites ``target`` without pause; what each kill left."""
    rng = random.Random(0)
    seen = []
    for _ in range(kills):
        process = subprocess.Popen(
            [sys.executable, "-c", WRITER, str(target), kind], stdout=subprocess.PIPE
        )
        assert process.stdout.readline() == b"ready\n"
        time.sleep(rng.uniform(0.05, 0.3))
        process.send_signal(signal.SIGKILL)
        process.wait()
        if kind == "file":
            seen.append(target.read_bytes())
        else:
            a, b = (target / "a").read_bytes(), (target / "b").read_bytes()
            assert a == b, "the two files of one version"
            assert sorted(p.name for p in target.iterdir()) == ["a", "b"]
            seen.append(a)
    return seen


def _is_whole_version(body: bytes) -> bool:
    digits = body[: len(body) // 200_000]
    return bool(digits) and digits.isdigit() and body == digits * 200_000


def test_a_killed_file_write_leaves_a_whole_version(tmp_path: Path) -> None:
    target = tmp_path / "story.txt"
    target.write_bytes(b"7" * 200_000)
    for body in _kill_repeatedly(target, "file"):
        assert _is_whole_version(body)


def test_a_killed_directory_write_leaves_a_whole_directory(tmp_path: Path) -> None:
    target = tmp_path / "models" / "mine"
    with atomic_directory(target) as tmp:
        (tmp / "a").write_bytes(b"7" * 200_000)
        (tmp / "b").write_bytes(b"7" * 200_000)
    for body in _kill_repeatedly(target, "directory"):
        assert _is_whole_version(body)
    restore_replaced(target.parent)  # leftovers of the killed writers are cleared
    assert [p.name for p in target.parent.iterdir()] == ["mine"]


def test_the_next_write_clears_temp_files_that_killed_writes_left(tmp_path: Path) -> None:
    target = tmp_path / "story.txt"
    target.write_bytes(b"7" * 200_000)
    killed = [p.name for p in tmp_path.iterdir()]
    for _ in range(40):  # until a kill falls inside a write and leaves its temp file behind
        _kill_repeatedly(target, "file", kills=1)
        killed = [p.name for p in tmp_path.iterdir() if p.name != "story.txt"]
        if killed:
            break
    assert killed, "no kill landed mid-write"
    under_way = tmp_path / f".story.txt.{os.getpid()}.abc123.tmp"  # this process's, in a thread
    under_way.write_bytes(b"half")
    other = tmp_path / ".notes.txt.999999999.abc123.tmp"  # another file's
    other.write_bytes(b"half")
    atomic_write_bytes(target, b"new")
    assert target.read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["story.txt", under_way.name, other.name]
    )


def test_a_temp_folder_of_a_running_writer_is_kept(tmp_path: Path) -> None:
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        running = tmp_path / f".mine.tmp-{sleeper.pid}-abc123"
        gone = tmp_path / ".mine.tmp-999999999-abc123"
        for folder in (running, gone):
            folder.mkdir()
            (folder / "model.safetensors").write_bytes(b"half")
        restore_replaced(tmp_path)
        assert [p.name for p in tmp_path.iterdir()] == [running.name]
    finally:
        sleeper.kill()
        sleeper.wait()


def test_replacing_a_directory_swaps_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "mine"
    for version in (b"old", b"new"):
        with atomic_directory(target) as tmp:
            (tmp / "weights").write_bytes(version)
    assert (target / "weights").read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]
    if sys.platform.startswith("linux"):
        a, b = tmp_path / "a", tmp_path / "b"
        a.mkdir()
        b.mkdir()
        (a / "x").write_text("a")
        assert atomic.exchange_paths(a, b)
        assert (b / "x").read_text() == "a" and not (a / "x").exists()


@pytest.mark.parametrize("exchange", [True, False])
def test_a_directory_another_writer_finished_first_is_replaced(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, exchange: bool
) -> None:
    """Two writers of one new directory (two training processes building the same shards):
    the other's rename lands between this one's look and its own rename."""
    target = tmp_path / "shards"
    if not exchange:
        monkeypatch.setattr(atomic, "exchange_paths", lambda a, b: False)
    real_replace = os.replace
    raced = []

    def other_writer_first(src, dst):
        if Path(dst) == target and not raced:
            raced.append(dst)
            other = tmp_path / "theirs"
            other.mkdir()
            (other / "tokens").write_bytes(b"theirs")
            real_replace(other, target)
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", other_writer_first)
    with atomic_directory(target) as tmp:
        (tmp / "tokens").write_bytes(b"mine")
    assert (target / "tokens").read_bytes() == b"mine"
    assert [p.name for p in tmp_path.iterdir()] == ["shards"]


def test_a_kill_between_the_fallback_renames_is_undone(
    storytui_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = storytui_home / "models" / "mine"
    make_tiny_checkpoint(model, seed=0)
    before = (model / "model.safetensors").read_bytes()
    monkeypatch.setattr(atomic, "exchange_paths", lambda a, b: False)  # a system without it
    real_replace = os.replace
    calls = []

    def killed_at_the_second_rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies between the two renames
        real_replace(src, dst)

    monkeypatch.setattr(atomic.os, "replace", killed_at_the_second_rename)
    with pytest.raises(KeyboardInterrupt):
        make_tiny_checkpoint(model, seed=1)
    monkeypatch.setattr(atomic.os, "replace", real_replace)
    assert not model.exists()  # only the hidden old copy is left
    assert [e.name for e in list_checkpoints(include_bundled=False)] == ["mine"]
    assert (model / "model.safetensors").read_bytes() == before
    assert [p.name for p in model.parent.iterdir()] == ["mine"]


def test_a_replacement_still_under_way_is_left_alone(tmp_path: Path) -> None:
    busy = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        old = tmp_path / f".mine.old-{busy.pid}"
        old.mkdir()
        restore_replaced(tmp_path)
        assert old.exists() and not (tmp_path / "mine").exists()
    finally:
        busy.kill()
        busy.wait()
    restore_replaced(tmp_path)
    assert (tmp_path / "mine").is_dir() and not old.exists()


def test_a_symlinked_story_is_written_through(tmp_path: Path) -> None:
    real = tmp_path / "real.txt"
    real.write_bytes(b"old")
    link = tmp_path / "link.txt"
    link.symlink_to(real)
    atomic_write_bytes(link, b"new")
    assert link.is_symlink() and real.read_bytes() == b"new"


@pytest.mark.parametrize("kind", ["file", "directory"])
def test_a_folder_that_cannot_hold_the_file_is_one_story_error(tmp_path: Path, kind) -> None:
    """A parent that is a file (refused even to root, like a read-only folder to a user) makes
    the temp file impossible: that is the writer's error to show, not an OSError traceback."""
    blocker = tmp_path / "notes.txt"
    blocker.write_text("keep me")
    target = blocker / "story.txt"
    with pytest.raises(
        StoryError, match=r"^cannot write .*notes\.txt/story\.txt: .*notes\.txt is not a folder$"
    ):
        if kind == "file":
            atomic_write_bytes(target, b"text")
        else:
            with atomic_directory(target):
                pass
    assert blocker.read_text() == "keep me"


def test_a_folder_the_writer_may_not_write_to_is_one_story_error(tmp_path: Path, monkeypatch):
    """A read-only folder (EACCES from the temp file; root is never refused, so the refusal is
    simulated where the temp file is made)."""

    def refuse(*_args, **_kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", refuse)
    with pytest.raises(StoryError, match=r"^cannot write .*story\.txt: Permission denied$"):
        atomic_write_bytes(tmp_path / "story.txt", b"text")
    assert not (tmp_path / "story.txt").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root may give a file to another user")
def test_a_replaced_file_keeps_its_owner_and_group(tmp_path: Path) -> None:
    story = tmp_path / "story.txt"
    story.write_bytes(b"old")
    os.chown(story, 65534, 65534)  # nobody's, edited by root
    story.chmod(0o640)
    atomic_write_bytes(story, b"new")
    stat = story.stat()
    assert (stat.st_uid, stat.st_gid, stat.st_mode & 0o777) == (65534, 65534, 0o640)
