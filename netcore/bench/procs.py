"""The processes ``p2pai bench`` starts: ``p2pai node`` children on 127.0.0.1, each stopped by
its pid; a private network name per run and a free loopback port."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

LOOPBACK = "127.0.0.1"


def unique_network(tag: str) -> str:
    return f"bench-{tag}-{secrets.token_hex(4)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


def reap_process(proc: subprocess.Popen[Any], timeout: float) -> None:
    """Wait for ``proc``; SIGKILL it by its pid after ``timeout`` seconds."""
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()


class NodeProc:
    """A ``p2pai node`` child process; with ``events`` its ``--json`` lines are read by a thread."""

    def __init__(
        self,
        network: str,
        data_dir: Path,
        name: str,
        events: bool = True,
        extra: tuple[str, ...] = (),
    ) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netcore.cli", "node", *(["--json"] if events else []),
             "--interface", LOOPBACK, "--network", network, "--data-dir", str(data_dir),
             "--name", name, "--log-level", "warning", *extra],
            stdout=subprocess.PIPE if events else subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.pid = self.proc.pid
        self.history: list[dict[str, Any]] = []
        self._new: queue.Queue[None] = queue.Queue()
        self.peer_up: dict[str, float] = {}
        """peer_id -> wall time of its first ``peer_up``."""
        self.ready: dict[str, Any] | None = None
        if events:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "peer_up":
                self.peer_up.setdefault(event.get("peer_id", ""), event["t"])
            elif kind == "ready":
                self.ready = event
            self.history.append(event)
            self._new.put(None)

    def wait(self, kind: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        """The first event of ``kind`` matching ``match`` (already seen or still to come)."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            while checked < len(self.history):
                event = self.history[checked]
                checked += 1
                if event.get("event") == kind and all(event.get(k) == v for k, v in match.items()):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                raise TimeoutError(f"{self.name}: no {kind} {match}")
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=min(remaining, 0.2))

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        self.ready = self.wait("ready", timeout)
        return self.ready

    @property
    def peer_id(self) -> str:
        assert self.ready is not None
        return str(self.ready["peer_id"])

    def terminate(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def reap(self, timeout: float = 10.0) -> None:
        reap_process(self.proc, timeout)

    def stop(self) -> None:
        self.terminate()
        self.reap()


def stop_all(procs: Iterable[NodeProc]) -> None:
    """SIGTERM every process by pid, then wait for each (SIGKILL after 10 s)."""
    procs = list(procs)
    for p in procs:
        p.terminate()
    for p in procs:
        p.reap()
