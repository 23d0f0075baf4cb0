"""``p2pai tasks``: the requester's task history from its journal."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click

from netcore.config.settings import default_data_dir
from netcore.tasks.journal import FILE_NAME, Journal, JournalError
from netcore.tasks.results import SampleResult, label_name, predictions, sample_results

SHOWN = 5
"""Labels of a batched task's samples the RESULT column shows."""


class _RunLabels:
    """Each run's class names, read once."""

    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self._known: dict[str, list[str]] = {}

    def __call__(self, run_id: str) -> list[str]:
        if run_id not in self._known:
            self._known[run_id] = self.journal.labels_of(run_id)
        return self._known[run_id]


def _samples(journal: Journal, row: dict[str, Any], names: _RunLabels) -> list[SampleResult]:
    """A done task's per-sample results, from its journaled outputs (none for tasks that a
    journal before schema 2 recorded: those kept the first sample's label only)."""
    found = journal.results_of(row["task_id"]) if row["state"] == "done" else None
    if found is None:
        return []
    preds = predictions(found.outputs, found.label_output, found.samples)
    first = found.first if found.first is not None else row["seq"] - 1
    expected = [row["expected"]] if found.samples == 1 else None
    return sample_results(preds, first, None, names(row["run_id"]), expected)


@click.command("tasks")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="P2PAI_DATA_DIR",
    default=None,
    help="The data dir whose history to show (env P2PAI_DATA_DIR).",
)
@click.option(
    "--state",
    type=click.Choice(["pending", "done", "failed"]),
    default=None,
    help="Only tasks in this state.",
)
@click.option("--model", default=None, help="Only tasks for this model.")
@click.option("--run", "run_id", default=None, help="Only tasks of this run.")
@click.option(
    "--limit",
    type=click.IntRange(1, 1_000_000),
    default=50,
    show_default=True,
    help="Newest tasks to show.",
)
@click.option("--runs", "show_runs", is_flag=True, help="List runs (one `submit` each) instead.")
@click.option(
    "--samples",
    "show_samples",
    is_flag=True,
    help="Also each sample's result (every sample of a batched task); in JSON as `results`.",
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def tasks(
    data_dir: Path | None,
    state: str | None,
    model: str | None,
    run_id: str | None,
    limit: int,
    show_runs: bool,
    as_json: bool,
    show_samples: bool = False,
) -> None:
    """List submitted tasks and their outcomes, newest first (from the journal).

    Tasks are numbered from 1 in their run (`#`), as `submit` prints them; labels are the
    model's class names when it gave them (`models add --labels`).
    """
    from netcore.cli.common import CliError

    base = data_dir or default_data_dir()
    # `submit` keeps its journal with the client identity; a console's node keeps its own.
    candidates = [base / "client" / FILE_NAME, base / FILE_NAME]
    found = [p for p in candidates if p.exists()]
    if not found:
        raise CliError(f"no task journal under {base} (tasks are journaled by `p2pai submit`)")
    try:
        journal = Journal(found[0].parent)
    except JournalError as exc:
        raise CliError(str(exc)) from None
    try:
        if show_runs:
            runs = journal.runs()
            if as_json:
                click.echo(
                    json.dumps(
                        [
                            {
                                "run_id": r.run_id,
                                "created": r.created,
                                "model": r.model,
                                "total": r.total,
                                "pending": r.pending,
                                "done": r.done,
                                "failed": r.failed,
                                "running": r.pending > 0 and r.owner_alive,
                            }
                            for r in runs
                        ]
                    )
                )
                return
            click.echo(
                f"{'RUN':<12}  {'STARTED':<19}  {'MODEL':<10} {'TOTAL':>7} {'DONE':>7} "
                f"{'FAILED':>7} {'PENDING':>7}"
            )
            for r in runs:
                started = dt.datetime.fromtimestamp(r.created).strftime("%Y-%m-%d %H:%M:%S")
                note = (
                    "  (running)"
                    if r.pending and r.owner_alive
                    else ("  (interrupted: p2pai submit --resume)" if r.pending else "")
                )
                click.echo(
                    f"{r.run_id:<12}  {started:<19}  {r.model[:10]:<10} {r.total:>7} "
                    f"{r.done:>7} {r.failed:>7} {r.pending:>7}{note}"
                )
            return
        rows = journal.history(state=state, model=model, run_id=run_id, limit=limit)
        names = _RunLabels(journal)
        if as_json:
            for row in rows:
                row["label_name"] = label_name(row["label"], names(row["run_id"]))
                if show_samples:
                    row["results"] = [s.to_json() for s in _samples(journal, row, names)]
            click.echo(json.dumps(rows))
            return
        if not rows:
            click.echo("no tasks match")
            return
        click.echo(
            f"{'#':>6}  {'TASK':<16}  {'RUN':<12}  {'MODEL':<10} {'STATE':<8} {'WORKER':<10} "
            f"{'LATENCY':>10}  RESULT"
        )
        for row in rows:
            latency = f"{row['latency_ms']:.2f} ms" if row["latency_ms"] is not None else "-"
            samples = _samples(journal, row, names) if row["state"] == "done" else []
            if row["state"] == "failed":
                result = f"{row['error_code']}: {row['error'] or ''}"[:60]
            elif len(samples) > 1:
                shown = ", ".join(str(s.label) for s in samples[:SHOWN])
                result = f"{len(samples)} samples: {shown}{', …' if len(samples) > SHOWN else ''}"
            elif row["label"] is not None:
                conf = f" ({row['confidence']:.1%})" if row["confidence"] is not None else ""
                result = f"{label_name(row['label'], names(row['run_id']))}{conf}"
            else:
                result = "-"
            click.echo(
                f"{row['seq']:>6}  {row['task_id']:<16}  {row['run_id']:<12}  {row['model'][:10]:<10} "
                f"{row['state']:<8} {(row['worker'] or '-')[:10]:<10} {latency:>10}  {result}"
            )
            if show_samples and len(samples) > 1:
                for s in samples:
                    conf = f" ({s.confidence:.1%})" if s.confidence is not None else ""
                    what = f"{s.label}{conf}" if s.cls is not None else json.dumps(s.outputs)
                    click.echo(f"{'':8}sample {s.sample:<6} {what}")
    finally:
        journal.close()
