"""The real binary in a real terminal (tmux): two local peers appear, a key runs a task, q
quits, and every process it started is gone afterwards."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from uuid import uuid4

import psutil
import pytest
from model_helpers import unique_network

TMUX = shutil.which("tmux")
pytestmark = pytest.mark.skipif(TMUX is None, reason="tmux is not installed")
RESULT = re.compile(r"done\s+[\d.]+ m?s\s+\d \d+%")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_console_under_tmux(tmp_path: Path) -> None:
    assert TMUX is not None
    socket = f"p2pai-test-{uuid4().hex[:8]}"
    session = "console"
    network = unique_network("tmux")
    binary = Path(sys.executable).parent / "p2pai"
    command = (
        f"env TERM=xterm-256color {binary} console --interface 127.0.0.1 --local 2 "
        f"--network {network} --data-dir {tmp_path / 'console'} --name tmux-console"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("P2PAI_", "TMUX"))}
    env["TERM"] = "xterm-256color"

    def tmux(*args: str) -> subprocess.CompletedProcess[str]:
        assert TMUX is not None
        return subprocess.run(
            [TMUX, "-L", socket, *args],
            capture_output=True,
            text=True,
            timeout=10,
            env=env,
            check=False,
        )

    def screen() -> str:
        return tmux("capture-pane", "-p", "-t", session).stdout

    def wait_screen(condition: Callable[[str], object], timeout: float, what: str) -> str:
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = screen()
            if condition(text):
                return text
            time.sleep(0.1)
        raise AssertionError(f"timed out waiting for {what}; the screen was:\n{text}")

    pids: list[int] = []
    try:
        started = tmux("new-session", "-d", "-s", session, "-x", "160", "-y", "45", command)
        assert started.returncode == 0, started.stderr
        pane_pid = int(tmux("list-panes", "-t", session, "-F", "#{pane_pid}").stdout.split()[0])
        wait_screen(lambda s: "local-1" in s and "local-2" in s, 20, "two local peers")
        family = [psutil.Process(pane_pid), *psutil.Process(pane_pid).children(recursive=True)]
        pids = [p.pid for p in family]
        cmdlines = [" ".join(p.cmdline()) for p in family if alive(p.pid)]
        assert sum("netcore.cli node" in c and network in c for c in cmdlines) == 2, cmdlines
        assert any("p2pai console" in c for c in cmdlines), cmdlines

        tmux("send-keys", "-t", session, "d")
        wait_screen(RESULT.search, 15, "a finished task with its digit")

        tmux("send-keys", "-t", session, "q")
        deadline = time.monotonic() + 15
        while any(alive(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert [pid for pid in pids if alive(pid)] == [], "processes left after q"
    finally:
        tmux("kill-server")
        for pid in pids:
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
