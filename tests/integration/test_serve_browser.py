"""``p2pai serve`` in a real headless Chromium, driven over the DevTools protocol.

The page connects, the console renders (its peers table shows the worker), a key press
dispatches a task that a real worker node executes, nothing is loaded from outside this
machine, and stopping the server ends the session's process, which leaves the swarm.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path

import psutil
import pytest
from conftest import LOOPBACK, NodeProc, child_env, cli_argv, stop_pid
from reach_helpers import Cdp, Chromium, find_chromium

pytestmark = pytest.mark.integration


def start_serve(tmp_path: Path, network: str) -> tuple[subprocess.Popen[str], str]:
    log = open(tmp_path / "serve.stderr", "w")  # noqa: SIM115  (closed by the test's finally)
    proc = subprocess.Popen(
        [*cli_argv(), "serve", "--host", LOOPBACK, "--port", "0", "--interface", LOOPBACK,
         "--network", network, "--name", "webtest", "--data-dir", str(tmp_path / "serve")],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=log, text=True,
        env=child_env(), cwd=tmp_path,
    )  # fmt: skip
    log.close()
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=read, daemon=True).start()
    try:
        first = lines.get(timeout=30)
    except queue.Empty:
        stop_pid(proc)
        raise AssertionError(
            f"serve printed nothing: {(tmp_path / 'serve.stderr').read_text()}"
        ) from None
    assert "serving the console on http://127.0.0.1:" in first, first
    url = first.split(" on ", 1)[1].split()[0]
    return proc, url


def test_console_in_a_browser(
    start_node: Callable[..., NodeProc], network: str, tmp_path: Path
) -> None:
    executable = find_chromium()
    if executable is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's `chromium`)")
    worker = start_node("worker")
    serve, url = start_serve(tmp_path, network)
    chromium = Chromium(executable, tmp_path / "profile", tmp_path / "chromium.log")
    sessions: list[psutil.Process] = []
    try:
        chromium.start()
        asyncio.run(drive(chromium.port, url, worker, tmp_path, serve, sessions))
        # The session node reached the swarm as a peer of the worker.
        joined = worker.wait_for("peer_up", lambda e: e["name"] == "webtest-web1", timeout=5)

        # Stopping the server ends every session: the console leaves gracefully.
        os.kill(serve.pid, signal.SIGTERM)
        assert serve.wait(30) == 0, (tmp_path / "serve.stderr").read_text()
        for child in sessions:
            with contextlib.suppress(psutil.NoSuchProcess):
                assert not child.is_running() or child.status() == psutil.STATUS_ZOMBIE
        left = worker.wait_for("peer_down", lambda e: e["peer_id"] == joined["peer_id"], timeout=15)
        assert left["reason"] in ("bye", "goodbye"), left
    finally:
        chromium.stop()
        stop_pid(serve)
        for child in sessions:
            with contextlib.suppress(psutil.NoSuchProcess):
                child.kill()
        if serve.stdout is not None:
            serve.stdout.close()


async def drive(
    devtools_port: int,
    url: str,
    worker: NodeProc,
    tmp_path: Path,
    serve: subprocess.Popen[str],
    sessions: list[psutil.Process],
) -> None:
    cdp = await Cdp().open(devtools_port)
    try:
        await cdp.call("Network.enable")
        await cdp.call("Page.enable")
        await cdp.call("Page.navigate", url=url)
        # The page connects and the console renders: its panes and, soon, the worker peer.
        assert await cdp.wait_output("Peers", 60), "the console never rendered"
        assert await cdp.wait_output("worker", 30), "the worker never appeared in the console"
        body_class = await cdp.evaluate("document.body.className")
        assert "-first-byte" in str(body_class), body_class
        sessions.extend(psutil.Process(serve.pid).children(recursive=True))
        assert sessions, "no session process"

        # A key press dispatches a task, which the worker runs.
        await cdp.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        await cdp.press("d")
        served = await asyncio.to_thread(worker.wait_for, "task_served", None, 30.0)
        assert served["ok"] is True, served
        assert await cdp.wait_output("1 done", 15), "the console did not show the task done"
        await cdp.screenshot(tmp_path / "console.png")

        # Nothing came from outside this machine: every request went to the server.
        base = url.rstrip("/")
        outside = [u for u in cdp.requested_urls()
                   if not (u.startswith(base) or u.startswith(base.replace("http", "ws", 1))
                           or u.startswith(("data:", "about:", "blob:")))]  # fmt: skip
        assert not outside, outside
    finally:
        await cdp.close()
