"""Adversaries as real processes beside honest ``p2pai node``s, and a fresh ``p2pai submit``.

Honest workers bind distinct loopback addresses (127.0.0.2, .3, .4: distinct hosts as the
transport sees them); the adversaries run :mod:`liar` (``tests/liar.py``) on 127.0.0.1, several
identities in one process where it is a farm. Every process is started here and stopped by
its own PID. Used by ``tests/integration/test_adversaries.py`` and
``benchmarks/adversary_bench.py`` (which prints the figures quoted in docs/trust.md).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
LIAR = ROOT / "tests" / "liar.py"
HONEST_HOSTS = ("127.0.0.2", "127.0.0.3", "127.0.0.4")
ADVERSARY_HOST = "127.0.0.1"
READY_S = 60.0


def child_env(code: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("P2PAI_")}
    env["PYTHONUNBUFFERED"] = "1"
    env["PYTHONPATH"] = str(code or ROOT)
    return env


class Proc:
    """One child process whose stdout JSON lines are collected."""

    def __init__(self, argv: list[str], env: dict[str, str], log: Path, cwd: Path = ROOT) -> None:
        self.argv = argv
        self.lines: list[dict[str, Any]] = []
        self._cond = threading.Condition()
        with open(log, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=err, env=env,
                cwd=cwd,
            )  # fmt: skip
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            with contextlib.suppress(ValueError):
                line = json.loads(raw)
                if isinstance(line, dict):
                    with self._cond:
                        self.lines.append(line)
                        self._cond.notify_all()

    def wait_event(self, event: str, timeout: float = READY_S) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in self.lines:
                    if line.get("event") == event:
                        return line
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    raise RuntimeError(f"no {event!r} from {self.argv[:4]} (rc {self.proc.poll()})")
                self._cond.wait(min(left, 0.5))

    def stop(self, grace: float = 10.0) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(grace)


class Scene:
    """Honest workers and adversaries on one private network; :meth:`close` stops them all."""

    def __init__(self, base: Path, code: Path | None = None) -> None:
        self.base = base
        self.code = code
        """Where the honest nodes' and the requester's netcore comes from (default: here)."""
        self.network = f"adv-{uuid.uuid4().hex[:10]}"
        self.procs: list[Proc] = []
        self.bad: set[str] = set()
        """Peer ids of the adversaries."""
        (base / "logs").mkdir(parents=True, exist_ok=True)

    def honest(self, name: str, host: str) -> str:
        argv = [sys.executable, "-m", "netcore.cli", "node", "--json", "--interface", host,
                "--network", self.network, "--data-dir", str(self.base / name), "--name", name]  # fmt: skip
        proc = Proc(argv, child_env(self.code), self.base / "logs" / f"{name}.stderr",
                    self.code or ROOT)  # fmt: skip
        self.procs.append(proc)
        return str(proc.wait_event("ready")["peer_id"])

    def adversary(
        self, name: str, mode: str, identities: int = 1, capacity: int = 0,
        host: str = ADVERSARY_HOST,
    ) -> Proc:  # fmt: skip
        argv = [sys.executable, str(LIAR), "--mode", mode, "--network", self.network,
                "--data-dir", str(self.base / name), "--interface", host, "--name", name,
                "--identities", str(identities), "--capacity", str(capacity)]  # fmt: skip
        proc = Proc(argv, child_env(), self.base / "logs" / f"{name}.stderr")
        self.procs.append(proc)
        ready = proc.wait_event("ready")
        self.bad.update(ready.get("peer_ids") or [ready["peer_id"]])
        return proc

    def three_honest(self) -> None:
        for i, host in enumerate(HONEST_HOSTS):
            self.honest(f"honest-{i + 1}", host)

    def submit(self, requester: str, *args: str, timeout: float = 600.0) -> dict[str, Any]:
        """``p2pai submit --json`` from 127.0.0.1 with the data dir ``requester``; its summary."""
        argv = [sys.executable, "-m", "netcore.cli", "submit", "--json", "--interface",
                "127.0.0.1", "--network", self.network, "--data-dir",
                str(self.base / requester), "--model", "digits", "--timeout", "60", *args]  # fmt: skip
        done = subprocess.run(
            argv, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout,
            env=child_env(self.code), check=False, cwd=self.code or ROOT,
        )  # fmt: skip
        try:
            summary: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            raise RuntimeError(
                f"submit printed no summary (rc {done.returncode}): {done.stderr[-2000:]}"
            ) from None
        summary["returncode"] = done.returncode
        return summary

    def figures(self, summary: dict[str, Any]) -> dict[str, Any]:
        """Accepted accuracy, failures and the share of results the adversaries served."""
        results = summary.get("results", [])
        ok = [r for r in results if r.get("ok")]
        served = sum(1 for r in ok if r.get("worker") in self.bad)
        right = sum(1 for r in ok if r.get("expected") is not None and r.get("right"))
        judged = sum(1 for r in ok if r.get("expected") is not None)
        return {
            "tasks": summary.get("tasks"),
            "failed": summary.get("failed"),
            "accuracy": round(right / judged, 4) if judged else None,
            "served_by_adversaries": served,
            "served_share": round(served / len(ok), 4) if ok else None,
            "verify": summary.get("verify", {}),
        }

    def close(self) -> None:
        for proc in reversed(self.procs):
            proc.stop()


@contextlib.contextmanager
def scene(base: Path, code: Path | None = None) -> Iterator[Scene]:
    group = Scene(base, code)
    try:
        yield group
    finally:
        group.close()


def unseen_inputs(path: Path) -> Path:
    """The held-out digits, each value nudged by 0.01: real inputs with the same labels whose
    bytes are not the bundled samples (an evader cannot take them for checks)."""
    sys.path.insert(0, str(ROOT))
    from netcore.models.registry import load_samples

    x, y = load_samples()
    np.savez(path, x=(x.astype(np.float32) + np.float32(0.01)), y=y)
    return path
