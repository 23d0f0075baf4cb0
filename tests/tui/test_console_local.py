"""``--local N``: child peers on 127.0.0.1 that join the console's private swarm and stop with it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest
from model_helpers import loopback_config, unique_network

from netcore.config.settings import Config
from netcore.node import Node
from tui import app as console_app
from tui import run as console_run
from tui.local_peers import LocalPeers


def gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def wait_gone(pids: list[int], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if all(gone(pid) for pid in pids):
            return True
        time.sleep(0.05)
    return all(gone(pid) for pid in pids)


def node_cmdline(pid: int) -> list[str]:
    try:
        return psutil.Process(pid).cmdline()
    except psutil.NoSuchProcess:
        return []


async def test_local_peer_joins_the_swarm_and_stops_by_pid(tmp_path: Path) -> None:
    network = unique_network("tui-local")
    local = LocalPeers(1, network, base_dir=tmp_path / "local")
    observer = Node(loopback_config(tmp_path, "observer", network))
    local.start()
    pids = local.pids
    try:
        assert len(pids) == 1 and psutil.pid_exists(pids[0])
        await observer.start()
        found = await observer.wait_for_peers(1, timeout=20)
        assert [p.name for p in found] == ["local-1"]
        assert found[0].endpoint.startswith("tcp://127.0.0.1:")
        # Once the launcher has exec'd, the child is exactly the documented command line.
        cmd = node_cmdline(pids[0])
        assert cmd[1:5] == ["-m", "netcore.cli", "node", "--json"]
        assert cmd[cmd.index("--interface") + 1] == "127.0.0.1"
        assert cmd[cmd.index("--network") + 1] == network
    finally:
        local.stop()
        await observer.stop()
    assert wait_gone(pids), "local peers still running after stop()"
    local.stop()  # idempotent


def run_console_with(
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    fake_run: Any,
    seen: dict[str, Any],
    local: int = 1,
) -> int:
    """run_console with App.run replaced by ``fake_run`` (no terminal needed)."""

    def run(self: console_app.P2PConsole, *args: Any, **kwargs: Any) -> None:
        seen["config"] = self.node.config  # type: ignore[attr-defined]
        assert self.local_peers is not None
        seen["pids"] = list(self.local_peers.pids)
        seen["network"] = self.local_peers.network
        seen["base_dir"] = self.local_peers.base_dir
        fake_run(self, seen)

    monkeypatch.setattr(console_app.P2PConsole, "run", run)
    config = Config(interfaces=(), network="default", data_dir=tmp_path / "console", name="c")
    return console_run.run_console(config, local=local)


def test_run_console_starts_local_peers_and_stops_them(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fake_run(app: console_app.P2PConsole, seen: dict[str, Any]) -> None:
        # The child is up (the launcher exec'd into the node) while the console "runs".
        deadline = time.monotonic() + 10
        while "netcore.cli" not in node_cmdline(seen["pids"][0]) and time.monotonic() < deadline:
            time.sleep(0.05)
        seen["cmdline"] = node_cmdline(seen["pids"][0])

    seen: dict[str, Any] = {}
    assert run_console_with(monkeypatch, tmp_path, fake_run, seen) == 0
    config = seen["config"]
    assert config.interfaces == ("127.0.0.1",), "the console's node is forced onto loopback"
    assert config.network == seen["network"] and config.network.startswith("local-")
    assert "netcore.cli" in seen["cmdline"] and "--name" in seen["cmdline"]
    assert wait_gone(seen["pids"])
    assert not seen["base_dir"].exists(), "the private data dirs are removed"


def test_run_console_stops_local_peers_when_the_app_crashes(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def fake_run(app: console_app.P2PConsole, seen: dict[str, Any]) -> None:
        raise RuntimeError("boom")

    seen: dict[str, Any] = {}
    with pytest.raises(RuntimeError, match="boom"):
        run_console_with(monkeypatch, tmp_path, fake_run, seen)
    assert len(seen["pids"]) == 1
    assert wait_gone(seen["pids"]), "a crash of the console left its local peers running"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="PR_SET_PDEATHSIG is Linux-only")
def test_local_peers_die_with_a_killed_console(tmp_path: Path) -> None:
    """Even SIGKILL of the console (no cleanup runs) takes its local peers down."""
    network = unique_network("tui-orphan")
    script = (
        "import sys, time\n"
        "from pathlib import Path\n"
        "from tui.local_peers import LocalPeers\n"
        f"local = LocalPeers(1, {network!r}, base_dir=Path({str(tmp_path / 'local')!r}))\n"
        "local.start()\n"
        "print(local.pids[0], flush=True)\n"
        "time.sleep(60)\n"
    )
    parent = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    child_pid = 0
    try:
        assert parent.stdout is not None
        child_pid = int(parent.stdout.readline())
        deadline = time.monotonic() + 10
        while "netcore.cli" not in node_cmdline(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert "netcore.cli" in node_cmdline(child_pid)
    finally:
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait(5)
    try:
        assert wait_gone([child_pid]), "the orphaned local peer kept running"
    finally:
        if not gone(child_pid):
            os.kill(child_pid, signal.SIGKILL)
