"""What ``p2pai bench`` measures with: percentiles, a process's CPU time and RSS, its log line."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def pct(values: Iterable[float], q: float) -> float | None:
    data = list(values)
    return round(float(np.percentile(data, q)), 3) if data else None


def summary(values: Iterable[float]) -> dict[str, Any]:
    data = list(values)
    return {"p50": pct(data, 50), "p99": pct(data, 99), "n": len(data)}


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None
