"""Counting the outcomes of a run of tasks into the summary `submit` prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return float(np.percentile(np.asarray(values), q))


@dataclass
class Tally:
    """Outcomes of single-sample tasks: counts, latencies, workers, errors, accuracy."""

    latencies: list[float] = field(default_factory=list)
    workers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    failed: int = 0
    correct: int = 0
    judged: int = 0

    def add(self, outcome: Any, expected: int | None) -> None:
        self.latencies.append(outcome.latency_s * 1000)
        if outcome.ok:
            self.ok += 1
            self.workers[outcome.worker or "?"] += 1
            if expected is not None and outcome.label is not None:
                self.judged += 1
                self.correct += int(outcome.label == expected)
        else:
            self.failed += 1
            self.errors[outcome.error_code] += 1

    def summary(self, tasks: int, elapsed: float) -> dict[str, Any]:
        return {
            "tasks": tasks,
            "samples": tasks,
            "ok": self.ok,
            "failed": self.failed,
            "accuracy": round(self.correct / self.judged, 4) if self.judged else None,
            "latency_ms": {
                "p50": round(percentile(self.latencies, 50), 3),
                "p99": round(percentile(self.latencies, 99), 3),
            },
            "throughput_tps": round(tasks / elapsed, 1) if elapsed > 0 and tasks else 0.0,
            "workers": dict(self.workers),
            "errors": dict(self.errors),
        }
