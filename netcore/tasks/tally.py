"""Counting the reports of a run of tasks into the summary `submit` prints."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from netcore.tasks.batch import TaskReport


def percentile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    return float(np.percentile(np.asarray(values), q))


@dataclass
class Tally:
    """Reports of tasks: counts of tasks and samples, latencies, workers, errors, accuracy."""

    latencies: list[float] = field(default_factory=list)
    workers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    ok: int = 0
    failed: int = 0
    samples_ok: int = 0
    correct: int = 0
    judged: int = 0

    def add(self, report: TaskReport) -> None:
        outcome = report.outcome
        self.latencies.append(outcome.latency_s * 1000)
        if outcome.ok:
            self.ok += 1
            self.samples_ok += report.count
            self.workers[outcome.worker or "?"] += 1
            right, judged = report.judged()
            self.correct += right
            self.judged += judged
        else:
            self.failed += 1
            self.errors[outcome.error_code] += 1

    def summary(self, tasks: int, samples: int, batch: int, elapsed: float) -> dict[str, Any]:
        """``tasks`` and ``samples`` are the run's plan; ``ok`` + ``failed`` those reported.
        The batch keys (``batch``, ``samples_ok``, ``throughput_sps``) only when batch > 1."""
        done = self.ok + self.failed
        summary: dict[str, Any] = {
            "tasks": tasks,
            "samples": samples,
            "ok": self.ok,
            "failed": self.failed,
            "accuracy": round(self.correct / self.judged, 4) if self.judged else None,
            "latency_ms": {
                "p50": round(percentile(self.latencies, 50), 3),
                "p99": round(percentile(self.latencies, 99), 3),
            },
            "throughput_tps": round(done / elapsed, 1) if elapsed > 0 and done else 0.0,
            "workers": dict(self.workers),
            "errors": dict(self.errors),
        }
        if batch > 1:
            summary["batch"] = batch
            summary["samples_ok"] = self.samples_ok
            summary["throughput_sps"] = round(self.samples_ok / elapsed, 1) if elapsed > 0 else 0.0
        return summary
