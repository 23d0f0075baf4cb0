"""``--local N``: headless ``p2pai node`` children on 127.0.0.1 in a private swarm.

The console starts them, shows them like any peer, and stops them when it quits, also on
errors: SIGTERM by PID, then SIGKILL after a grace period. On Linux each child also asks the
kernel for SIGTERM should the console die without cleaning up (``PR_SET_PDEATHSIG``), set in
a tiny launcher that then ``exec``s the real command line.

Trust: the children run in the console's ``--trust`` mode, and the console and its children
trust each other for the session only, whatever the mode. Each child's identity is made here,
before it starts, so the console knows its key; the child is told the console's keys and its
siblings' with ``--trust-key`` and the console adds the children's to its own
``Config.trusted_keys``. Nothing goes into any ``trusted.json``: when the session ends the
keys are trusted nowhere (and the children's identities, in a private temporary dir, are
deleted with it).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from netcore.net.identity import load_or_create

log = logging.getLogger("p2pai.console.local")

GRACE_S = 2.0

_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "except Exception:\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(0)  # the console is already gone\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)


@dataclass(slots=True)
class LocalPeer:
    index: int
    name: str
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    log_file: IO[bytes] | None = None
    reported_exit: bool = False

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None


class LocalPeers:
    """Start and stop ``count`` local peers; usable as a context manager."""

    def __init__(
        self,
        count: int,
        network: str,
        base_dir: Path | None = None,
        interface: str = "127.0.0.1",
        log_level: str = "info",
        trust: str = "open",
        trusted_keys: tuple[str, ...] = (),
        model_quota: int | None = None,
    ) -> None:
        self.count = count
        self.network = network
        self.interface = interface
        self.log_level = log_level
        self.trust = trust
        self.trusted_keys = tuple(trusted_keys)
        """The console's keys: every child trusts them (and its siblings)."""
        self.model_quota = model_quota
        self._own_dir = base_dir is None
        self.base_dir = base_dir or Path(tempfile.mkdtemp(prefix="p2pai-local-"))
        self.peers = [
            LocalPeer(
                index=k,
                name=f"local-{k}",
                data_dir=self.base_dir / f"peer{k}",
                log_path=self.base_dir / f"peer{k}.log",
            )
            for k in range(1, count + 1)
        ]
        self._stopped = False

    def identity_keys(self) -> list[str]:
        """The children's public keys, their identities created now if need be."""
        return [load_or_create(peer.data_dir, peer.name).public_text for peer in self.peers]

    def command(self, peer: LocalPeer) -> list[str]:
        """The child's command line (what ``ps`` shows once the launcher has exec'd)."""
        trusted = list(dict.fromkeys([*self.trusted_keys, *self.identity_keys()]))
        extra = [arg for key in trusted for arg in ("--trust-key", key)]
        if self.model_quota is not None:
            extra += ["--model-quota", str(self.model_quota)]
        return [
            sys.executable,
            "-m",
            "netcore.cli",
            "node",
            "--json",
            "--interface",
            self.interface,
            "--network",
            self.network,
            "--data-dir",
            str(peer.data_dir),
            "--name",
            peer.name,
            "--log-level",
            self.log_level,
            "--trust",
            self.trust,
            *extra,
        ]

    def start(self) -> None:
        """Spawn every peer (returns at once; they join the swarm within a second or two)."""
        for peer in self.peers:
            peer.data_dir.mkdir(parents=True, exist_ok=True)
            argv = self.command(peer)
            if sys.platform.startswith("linux"):
                argv = [sys.executable, "-c", _LAUNCHER, str(os.getpid()), *argv[1:]]
            peer.log_file = open(peer.log_path, "ab")  # noqa: SIM115 (closed in stop())
            try:
                peer.process = subprocess.Popen(
                    argv,
                    stdin=subprocess.DEVNULL,
                    stdout=peer.log_file,
                    stderr=subprocess.STDOUT,
                    # Its own session: a Ctrl+C meant for the console does not reach it; the
                    # console stops it itself, gracefully.
                    start_new_session=True,
                    env={**os.environ, "PYTHONUNBUFFERED": "1"},
                )
            except OSError:
                self.stop()
                raise
            log.info("started local peer %s (pid %d)", peer.name, peer.process.pid)

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.peers if p.pid is not None]

    def exited(self) -> list[tuple[LocalPeer, int, str]]:
        """Peers that exited on their own since the last call: (peer, code, last log line)."""
        found = []
        for peer in self.peers:
            if peer.process is None or peer.reported_exit or self._stopped:
                continue
            code = peer.process.poll()
            if code is not None:
                peer.reported_exit = True
                found.append((peer, code, self._last_line(peer)))
        return found

    @staticmethod
    def _last_line(peer: LocalPeer) -> str:
        with contextlib.suppress(OSError):
            lines = peer.log_path.read_text(errors="replace").strip().splitlines()
            if lines:
                return lines[-1][-200:]
        return ""

    def stop(self, grace: float = GRACE_S) -> None:
        """SIGTERM every child by PID, SIGKILL what is left after ``grace`` s; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        running = [p for p in self.peers if p.process is not None and p.process.poll() is None]
        for peer in running:
            assert peer.process is not None
            with contextlib.suppress(ProcessLookupError):
                os.kill(peer.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for peer in running:
            assert peer.process is not None
            try:
                peer.process.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(peer.process.pid, signal.SIGKILL)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    peer.process.wait(timeout=2.0)
        for peer in self.peers:
            if peer.log_file is not None:
                peer.log_file.close()
                peer.log_file = None
        if self._own_dir:
            shutil.rmtree(self.base_dir, ignore_errors=True)

    def __enter__(self) -> LocalPeers:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
