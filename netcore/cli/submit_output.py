"""What ``p2pai submit`` prints: each task and each of its samples, the summary, and after an
interruption the command that resumes the run.

Text: one line a task (``#1  <task id>  7 (97.3%)  on w1  1.98 ms  ok``), and under a batched
task one line a sample. ``--json``: one object, ``{"results": [one object a sample, ...],
...the summary}``, written as the results come so that a huge run never holds them all.
Labels are the model's class names when it has them (``models add --labels``), with the class
index beside them in JSON (``label``, ``class``). Workers are shown by their names.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource

from netcore.tasks.batch import TaskReport
from netcore.tasks.results import SampleResult, label_name

SHOWN_VALUES = 4
"""Values of each output a sample line shows, for a model without classes."""


class WorkerNames:
    """Peer ids as the names peers gave in their hello (as ``p2pai peers`` shows them); a
    name that two peers share gets the peer id's first 8 characters beside it."""

    def __init__(self, peers: Callable[[], Iterable[Any]]) -> None:
        self.peers = peers
        """The node's peer table now (objects with ``peer_id`` and ``name``)."""
        self._known: dict[str, str] = {}

    def __call__(self, peer_id: str | None) -> str:
        if not peer_id:
            return "?"
        name = self._known.get(peer_id)
        if name is None:
            table = list(self.peers())
            mine = next((p.name for p in table if p.peer_id == peer_id and p.name), None)
            if mine is None:
                return peer_id[:8]  # not greeted (yet): asked again next time
            twins = sum(1 for p in table if p.name == mine)
            name = f"{mine} ({peer_id[:8]})" if twins > 1 else mine
            self._known[peer_id] = name
        return name

    def seen(self) -> dict[str, str]:
        """The names given so far, by peer id."""
        return dict(self._known)


def _label_text(s: SampleResult) -> str:
    if s.cls is not None:
        conf = f" ({s.confidence:.1%})" if s.confidence is not None else ""
        return f"{s.label}{conf}"
    if s.outputs:
        parts = []
        for name, values in s.outputs.items():
            shown = ", ".join(
                f"{v:.4g}" if isinstance(v, float) else str(v) for v in values[:SHOWN_VALUES]
            )
            more = ", …" if len(values) > SHOWN_VALUES else ""
            parts.append(f"{name}=[{shown}{more}]")
        return "  ".join(parts)
    return "-"


def _mark(s: SampleResult, names: Sequence[str]) -> str:
    if s.right is None:
        return ""
    return "  ok" if s.right else f"  WRONG (expected {label_name(s.expected, names)})"


class TextReports:
    """Each task (and each sample of a batched one) as lines, in task order."""

    def __init__(self, names: Sequence[str], workers: WorkerNames, batched: bool) -> None:
        self.names = names
        self.workers = workers
        self.batched = batched

    def __call__(self, report: TaskReport) -> None:
        for line in self.lines(report):
            click.echo(line)

    def lines(self, report: TaskReport) -> list[str]:
        o = report.outcome
        head = f"#{report.number:<5} {o.task_id}"
        if not o.ok:
            what = f"  ({report.count} samples)" if self.batched else ""
            return [f"{head}  FAILED {o.error_code}: {o.error}{what}"]
        where = f"on {self.workers(o.worker)}  {o.latency_s * 1000:.2f} ms"
        samples = report.samples(self.names)
        if not self.batched and len(samples) == 1:
            return [f"{head}  {_label_text(samples[0])}  {where}{_mark(samples[0], self.names)}"]
        right, judged = report.judged()
        mark = f"  {right}/{judged} right" if judged else ""
        lines = [f"{head}  {report.count} samples  {where}{mark}"]
        lines += [
            f"{'':7}sample {s.sample:<6} {_label_text(s)}{_mark(s, self.names)}" for s in samples
        ]
        return lines


def sample_json(
    report: TaskReport, names: Sequence[str], workers: WorkerNames
) -> list[dict[str, Any]]:
    """One object a sample of the task: its result, or the task's failure."""
    o = report.outcome
    task: dict[str, Any] = {"task": report.number, "task_id": o.task_id, "ok": bool(o.ok)}
    if not o.ok:
        failed = {**task, "error_code": o.error_code, "error": o.error}
        rows = report.rows
        return [
            {
                **failed,
                "sample": report.first + i + 1,
                **({"row": rows[i]} if rows is not None else {}),
            }
            for i in range(report.count)
        ]
    task.update(
        worker=o.worker,
        worker_name=workers(o.worker),
        latency_ms=round(o.latency_s * 1000, 3),
    )
    return [{**task, **s.to_json()} for s in report.samples(names)]


class JsonReports:
    """``--json``: the per-sample results as the results list of one JSON object on one line,
    streamed; :meth:`close` adds the summary's keys and ends the object (and the line)."""

    def __init__(self, names: Sequence[str], workers: WorkerNames) -> None:
        self.names = names
        self.workers = workers
        self._count = 0

    def __call__(self, report: TaskReport) -> None:
        items = sample_json(report, self.names, self.workers)
        if items:
            self._write(json.dumps(items)[1:-1])  # one encoder call a task: many samples

    def _write(self, text: str) -> None:
        click.echo(('{"results": [' if self._count == 0 else ", ") + text, nl=False)
        self._count += 1

    def close(self, summary: dict[str, Any]) -> None:
        rest = json.dumps(summary)[1:]  # the summary's keys, after the results
        if self._count == 0:
            click.echo('{"results": []' + (", " + rest if rest != "}" else "}"))
        else:
            click.echo("]" + (", " + rest if rest != "}" else "}"))


def summary_lines(summary: dict[str, Any], workers: WorkerNames) -> list[str]:
    """The summary as text: totals, the workers by name, samples for a batched run."""
    acc = summary.get("accuracy")
    done = summary["ok"] + summary["failed"]
    lines = [""]
    if summary.get("interrupted"):
        lines.append(f"interrupted after {done} of {summary['tasks']} tasks")
    lines.append(
        f"{summary['ok']}/{done if summary.get('interrupted') else summary['tasks']} ok, "
        f"{summary['failed']} failed"
        + (f", accuracy {acc:.1%}" if acc is not None else "")
        + f", p50 {summary['latency_ms']['p50']:.2f} ms, p99 {summary['latency_ms']['p99']:.2f} ms, "
        f"{summary['throughput_tps']:.0f} tasks/s"
    )
    named = ", ".join(f"{workers(k)}: {v}" for k, v in summary["workers"].items())
    lines.append(f"workers: {named or '-'}")
    if summary.get("batch", 1) > 1:
        lines.append(
            f"samples: {summary['samples_ok']}/{summary['samples']} ok in tasks of "
            f"{summary['batch']}, {summary['throughput_sps']:.0f} samples/s"
        )
    return lines


RESUME_SKIPS = {"model", "count", "batch", "input_file", "as_json", "resume", "no_journal"}
"""Options a resume takes from the journal (or that are the caller's choice again)."""


def resume_command(ctx: click.Context) -> str:
    """``p2pai submit --resume`` with the options of this command line it needs again
    (network, data dir, interfaces, trust, ...), given on the command line or from P2PAI_*."""
    parts = ["p2pai", "submit", "--resume"]
    for param in ctx.command.params:
        name = param.name
        if not isinstance(param, click.Option) or name is None or name in RESUME_SKIPS:
            continue
        source = ctx.get_parameter_source(name)
        if source not in (ParameterSource.COMMANDLINE, ParameterSource.ENVIRONMENT):
            continue
        value = ctx.params.get(name)
        flag = max(param.opts, key=len)
        if param.is_flag:
            if value:
                parts.append(flag)
            elif param.secondary_opts:
                parts.append(max(param.secondary_opts, key=len))
            continue
        for item in (value or ()) if param.multiple else (value,):
            if item is None:
                continue
            text = str(Path(item).resolve()) if isinstance(item, Path) else str(item)
            parts += [flag, text]
    return " ".join(shlex.quote(p) for p in parts)
