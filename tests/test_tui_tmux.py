"""The real app in a real terminal: tmux runs ``storytui FILE``, the test types and reads the pane."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.tui_pilot import expected_continuation, use_sampling

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")


class Pane:
    """One detached tmux session on a private server socket."""

    def __init__(self, command: list[str], env: dict[str, str], width: int = 100, height: int = 30):
        self.socket = f"storytui-test-{os.getpid()}-{time.monotonic_ns()}"
        exports = [f"{key}={value}" for key, value in env.items()]
        # without COLUMNS and LINES, which a test run may leave in the environment (80x24): a
        # terminal app takes them over the pane's real size and ignores its resizes
        self.tmux(
            "new-session", "-d", "-s", "app", "-x", str(width), "-y", str(height),
            "env", "-u", "COLUMNS", "-u", "LINES", *exports, *command,
        )  # fmt: skip
        self.socket_path = Path(self.tmux("display-message", "-p", "#{socket_path}").strip())

    def tmux(self, *args: str) -> str:
        result = subprocess.run(
            [TMUX, "-L", self.socket, *args], capture_output=True, text=True, timeout=10
        )
        if result.returncode != 0 and args[0] not in ("has-session", "kill-server"):
            raise AssertionError(f"tmux {args[0]} failed: {result.stderr.strip()}")
        return result.stdout

    def text(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", "app")

    def keys(self, *keys: str, literal: bool = False) -> None:
        self.tmux("send-keys", "-t", "app", *(["-l"] if literal else []), *keys)

    def wait_for(self, needle: str, timeout: float = 60) -> float:
        started = time.monotonic()
        while needle not in self.text():
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{needle!r} never appeared; the pane shows:\n{self.text()}")
            time.sleep(0.05)
        return time.monotonic() - started

    def running(self) -> bool:
        done = subprocess.run(
            [TMUX, "-L", self.socket, "has-session", "-t", "app"], capture_output=True
        )
        return done.returncode == 0

    def quit(self, timeout: float = 20) -> None:
        """ctrl+q, then wait for the app (and so the session) to end."""
        self.keys("C-q")
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not self.running(), f"the app did not quit; the pane shows:\n{self.text()}"

    def close(self) -> None:
        self.tmux("kill-server")
        self.socket_path.unlink(missing_ok=True)


def test_type_continue_save_and_quit_in_a_real_terminal(tiny_checkpoint, storytui_home, tmp_path):
    settings = use_sampling(seed=17, max_new_tokens=16)
    opening = "Once upon a time"
    expected = expected_continuation(opening, settings)
    story = tmp_path / "tale.txt"
    env = {
        "STORYTUI_HOME": str(storytui_home),
        "STORYTUI_BUNDLED_MODEL": os.environ["STORYTUI_BUNDLED_MODEL"],
        "TERM": "xterm-256color",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    pane = Pane([sys.executable, "-m", "storytui.cli", str(story)], env)
    try:
        started = time.monotonic()
        pane.wait_for("words")  # the status bar: the editor is up
        interactive = time.monotonic() - started
        pane.keys(opening, literal=True)
        pane.wait_for(opening)
        pane.wait_for("tiny-test · ready")
        ready = time.monotonic() - started
        pane.keys("F5")
        pane.wait_for("^r Retry")  # the footer offers a retry once the continuation is done
        visible = "".join(pane.text().split())
        assert "".join(expected.split())[:12] in visible
        pane.keys("C-s")
        pane.wait_for("tale.txt · saved")
        pane.quit()
    finally:
        pane.close()
    assert story.read_text() == opening + expected
    print(f"\nlaunch to editor {interactive:.2f}s, to model ready {ready:.2f}s")


def test_find_and_replace_keys_reach_the_app_in_a_real_terminal(storytui_home, tmp_path):
    """ctrl+f, the arrows and alt+a as a terminal sends them (alt as ESC + key)."""
    story = tmp_path / "tale.txt"
    story.write_text("The keeper slept.\nThe Keeper woke.\n")
    env = {
        "STORYTUI_HOME": str(storytui_home),
        "STORYTUI_BUNDLED_MODEL": str(storytui_home / "no-bundled-model"),
        "TERM": "xterm-256color",
        "PYTHONPATH": str(Path(__file__).resolve().parents[1]),
    }
    pane = Pane([sys.executable, "-m", "storytui.cli", str(story)], env)
    try:
        pane.wait_for("words")
        pane.keys("C-f")
        pane.keys("keeper", literal=True)
        pane.wait_for("1 of 2")
        pane.keys("Down")
        pane.wait_for("2 of 2")
        pane.keys("C-f")
        pane.keys("guard", literal=True)
        pane.keys("M-a")
        pane.wait_for("replaced 2 matches")
        pane.wait_for("tale.txt · modified")
        pane.keys("Escape")
        pane.keys("C-s")
        pane.wait_for("tale.txt · saved")
        pane.quit()
    finally:
        pane.close()
    assert story.read_text() == "The guard slept.\nThe guard woke.\n"
