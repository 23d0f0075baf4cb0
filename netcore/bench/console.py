"""``p2pai bench``'s console section, run as ``python -m tui.bench`` in a child process: netcore
never imports the console (tui imports netcore, not the other way round)."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from netcore.bench.procs import reap_process


async def bench_console(workdir: Path, bursts: int, key_presses: int) -> dict[str, Any]:
    """The figures of :func:`tui.bench.bench_console` (events handled per second under bursts,
    key latency while a stream runs), measured by a child process with this interpreter and
    environment; ``{"skipped": ...}`` if the console is not installed. A child that fails
    raises ``RuntimeError`` with its exit status and the end of its stderr."""
    if importlib.util.find_spec("tui") is None:
        return {"skipped": "tui not importable: No module named 'tui'"}
    command = [sys.executable, "-m", "tui.bench", "--workdir", str(workdir),
               "--bursts", str(bursts), "--key-presses", str(key_presses)]  # fmt: skip
    proc = subprocess.Popen(
        command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        out, err = await asyncio.to_thread(proc.communicate)
    finally:
        _stop(proc)
    lines = out.strip().splitlines()
    if proc.returncode != 0 or not lines:
        tail = " | ".join(err.strip().splitlines()[-5:])
        raise RuntimeError(f"console: python -m tui.bench exited with {proc.returncode}: {tail}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def _stop(proc: subprocess.Popen[str]) -> None:
    """SIGTERM by pid if still running (on errors and cancellation), SIGKILL after 10 s."""
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.kill(proc.pid, signal.SIGTERM)
    reap_process(proc, 10)
