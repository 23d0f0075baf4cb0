"""What ``p2pai map`` prints: a progress bar on stderr (a terminal only), the summary."""

from __future__ import annotations

import sys
import time
from typing import IO, Any

from netcore.jobs.batcher import BatchStats
from netcore.jobs.engine import JobProgress, JobStats
from netcore.tasks.tally import percentile

BAR_WIDTH = 24
REDRAW_S = 0.1


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(seconds + 0.5)
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"


class ProgressBar:
    """``  4200/20000  21% [#####.........]  1530/s  ETA 0:11  2 failed`` redrawn in place."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        self.stream = stream or sys.stderr
        self._last = 0.0
        self._drawn = False

    def __call__(self, p: JobProgress) -> None:
        now = time.monotonic()
        if now - self._last < REDRAW_S and p.done != p.total:
            return
        self._last = now
        self.stream.write("\r" + line_of(p) + "\033[K")
        self.stream.flush()
        self._drawn = True

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\r\033[K")
            self.stream.flush()
            self._drawn = False


def line_of(p: JobProgress) -> str:
    if p.total:
        share = min(1.0, p.done / p.total)
        filled = int(share * BAR_WIDTH)
        bar = "#" * filled + "." * (BAR_WIDTH - filled)
        head = f"{p.done}/{p.total} {share:4.0%} [{bar}]"
    else:
        head = f"{p.done} done"
    tail = f"  {p.rate:,.0f}/s  ETA {clock(p.eta_s)}"
    if p.failed:
        tail += f"  {p.failed} failed"
    return head + tail


def summary_json(
    stats: JobStats,
    batch: BatchStats,
    rows_per_task: int,
    output: str,
    bytes_sent: int,
    worker_names: dict[str, str],
) -> dict[str, Any]:
    """``map --json``: the fields of ``submit --json`` (``ok``/``failed`` count inputs here;
    ``tasks``, ``samples`` what went out) with the job's own."""
    elapsed = stats.elapsed_s
    summary: dict[str, Any] = {
        "tasks": batch.tasks,
        "samples": batch.rows,
        "ok": stats.ok,
        "failed": stats.failed,
        "accuracy": None,
        "latency_ms": {
            "p50": round(percentile(batch.latencies_ms, 50), 3),
            "p99": round(percentile(batch.latencies_ms, 99), 3),
        },
        "throughput_tps": round(batch.tasks / elapsed, 1) if elapsed > 0 else 0.0,
        "workers": dict(batch.workers),
        "errors": dict(batch.errors),
        "batch": rows_per_task,
        "samples_ok": batch.rows_ok,
        "throughput_sps": round(batch.rows_ok / elapsed, 1) if elapsed > 0 else 0.0,
        "tasks_ok": batch.ok,
        "tasks_failed": batch.failed,
        "worker_names": worker_names,
        "output": output,
        "bytes_sent": bytes_sent,
    }
    summary.update(stats.to_json())
    if stats.interrupted:
        summary["interrupted"] = True
    return summary


def summary_lines(summary: dict[str, Any]) -> list[str]:
    """The summary as a few lines of text."""
    done = summary["ok"] + summary["failed"]
    elapsed = summary["elapsed_s"]
    lines = [
        f"{done} of {summary['inputs']} inputs: {summary['ok']} ok, {summary['failed']} failed; "
        f"{summary['from_journal']} from the journal, {summary['computed']} computed"
        + (f" ({summary['recomputed']} again)" if summary["recomputed"] else "")
        + f", in {elapsed:.1f} s ({summary['throughput_ips']:,.0f} inputs/s)"
    ]
    if summary["tasks"]:
        names = summary["worker_names"]
        on = ", ".join(f"{names.get(k, k[:8])}: {v}" for k, v in summary["workers"].items())
        lines.append(
            f"{summary['tasks']} tasks of up to {summary['batch']} rows"
            + (f" on {on}" if on else "")
            + f"; p50 {summary['latency_ms']['p50']:.1f} ms, p99 "
            f"{summary['latency_ms']['p99']:.1f} ms; {summary['bytes_sent'] / 1e6:.2f} MB sent"
        )
    if summary["errors"]:
        lines.append("task errors: " + ", ".join(f"{k}: {v}" for k, v in summary["errors"].items()))
    for error in summary["first_errors"]:
        lines.append(f"failed: {error}")
    if summary["failed"] > len(summary["first_errors"]):
        lines.append(f"... {summary['failed']} failed inputs in all; their records say why")
    return lines
