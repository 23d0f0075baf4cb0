"""``p2pai map MODEL INPUT... -o OUTPUT``: a folder, files or a table in, a results file out.

Everything that would stop the job (an unknown model, an empty folder, a file the model does
not take, an output we cannot write) is one line and exit 2 before the node starts. Then the
job runs (netcore.jobs): inputs streamed, journaled in ``<data-dir>/client/jobs.db``, batched
into tasks over the swarm, written in input order to a temporary file renamed to OUTPUT at
the end. Ctrl-C stops it and says how to finish (the same command again), exit 130.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import sys
from pathlib import Path
from typing import Any

import click

from netcore.cli.common import (
    LAN_HINTS,
    CliError,
    client_config,
    common_options,
    note_line,
    run_async,
    setup_logging,
    trust_option,
    worker_wait_options,
)
from netcore.cli.interrupts import catch_interrupts, until_stopped
from netcore.cli.map_output import ProgressBar, summary_json, summary_lines
from netcore.cli.submit_output import WorkerNames
from netcore.jobs.launch import DEFAULT_BATCH


class UsageLine(CliError):
    """A job that cannot start: one line, exit 2 (a usage error)."""

    exit_code = 2


@click.command("map")
@common_options
@click.argument("model")
@click.argument("inputs", nargs=-1, required=True)
@click.option(
    "-o", "--output", type=click.Path(path_type=Path), required=True,
    help="Results file: .jsonl, .csv or .parquet (its extension picks the format).",
)  # fmt: skip
@click.option(
    "--column", "columns", multiple=True,
    help="The table column(s) an input is made of (repeatable, or NAME,NAME): a text column, "
    "or the columns of numbers of a row [default: the manifest's, else all].",
)  # fmt: skip
@click.option(
    "--batch", type=click.IntRange(1, 1_000_000), default=DEFAULT_BATCH, show_default=True,
    help="Rows a task carries at most (many inputs ride on one task).",
)  # fmt: skip
@worker_wait_options(
    task_timeout=10.0,
    task_timeout_help="Seconds one attempt of a task may take before it is retried elsewhere.",
)
@click.option(
    "--redundancy", type=click.IntRange(1, 9), default=1, show_default=True,
    help="Verified results: run each task on K distinct workers, accept the majority answer "
    "(compared the way the model's kind says).",
)  # fmt: skip
@click.option(
    "--spot-check", type=click.FloatRange(0, 1), default=0.0, show_default=True,
    help="Blind checks: re-run this share of the results on our own copy of the model or "
    "another host; a mismatch quarantines the worker.",
)  # fmt: skip
@trust_option
@click.option("--fresh", is_flag=True, help="Compute everything again (ignore the journal).")
@click.option("--invert", is_flag=True, help="Images: dark ink on a light ground.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object at the end.")
def map_command(
    interfaces: tuple[str, ...],
    port: int,
    network: str,
    data_dir: Path | None,
    name: str | None,
    log_level: str | None,
    model: str,
    inputs: tuple[str, ...],
    output: Path,
    columns: tuple[str, ...],
    batch: int,
    wait_peers: int,
    timeout: float,
    task_timeout: float,
    redundancy: int,
    spot_check: float,
    trust: str | None,
    fresh: bool,
    invert: bool,
    as_json: bool,
) -> None:
    """Run MODEL over every INPUT, one record each, into OUTPUT.

    INPUT is a folder (walked recursively: the files the model takes), files or globs, or a
    table (.csv, .parquet, .jsonl with --column; .npy, .npz rows). Every input is journaled:
    the same command again after a crash, Ctrl-C or kill finishes the job without computing
    what was done (--fresh starts over). Exit 0 when every input succeeded, 1 when some failed
    (their records say why), 2 when the job cannot start.
    """
    from netcore.jobs.journal import JobJournal, JobJournalError
    from netcore.jobs.plan import PlanError, plan_job
    from netcore.jobs.records import columns as record_columns
    from netcore.jobs.writers import WriterError, open_writer
    from netcore.models.plugins import load_registry

    setup_logging(log_level or "warning")
    config = client_config(
        interfaces, port, network, data_dir, name, with_models=True, task_timeout=task_timeout,
        **({"trust": trust} if trust else {}),
    )  # fmt: skip
    wait_peers = max(wait_peers, redundancy // 2 + 1)
    registry = load_registry(config)
    spec = registry.find(model)
    if spec is None:
        known = ", ".join(registry.names()) or "none"
        raise UsageLine(
            f"unknown model '{model}' (here: {known}); map runs models this machine holds: "
            "`p2pai models add FILE` or a model plugin"
        )
    picked = tuple(c.strip() for item in columns for c in item.split(",") if c.strip())
    try:
        plan = plan_job(spec, inputs, picked, {"invert": True} if invert else {})
    except PlanError as exc:
        raise UsageLine(str(exc)) from None
    kind = plan.kind
    for note in plan.inputs.notes:
        note_line(note)
    try:
        writer = open_writer(output, record_columns(kind))
    except WriterError as exc:
        raise UsageLine(str(exc)) from None
    try:
        journal = JobJournal(config.data_dir)
    except JobJournalError as exc:
        writer.abort()
        raise CliError(str(exc)) from None
    command = rerun_command()
    total = plan.inputs.count()

    async def main() -> int:
        from netcore.jobs.launch import JobOptions, run_job
        from netcore.node import Node

        stop = asyncio.Event()
        caught = catch_interrupts(stop)
        async with Node(config) as client:
            found = await until_stopped(
                find_any_workers(client, wait_peers, timeout, kind.models[0]), stop
            )
            if found is None:
                click.echo("p2pai: interrupted before any task was sent", err=True)
                return caught.exit_code
            if len(found) < wait_peers:
                seen = len(client.usable_peers(kind=None))
                raise CliError(
                    f"found {len(found)} of {wait_peers} worker(s) on network {network!r} after "
                    f"{timeout:g}s ({seen} peer(s) in all); {LAN_HINTS}"
                )
            workers = WorkerNames(lambda: client.peers)
            bar = ProgressBar() if sys.stderr.isatty() else None
            options = JobOptions(batch, redundancy, spot_check, fresh, timeout)
            try:
                run = await run_job(
                    client, plan, writer, journal, options=options, workers=len(found),
                    command=command, output=str(output), worker_name=workers,
                    on_progress=bar, stop=stop,
                )  # fmt: skip
            finally:
                if bar is not None:
                    bar.close()
            for note in run.notes:
                note_line(note)
            stats, job_id = run.stats, run.job_id
            summary = summary_json(
                stats, run.batch, run.rows_per_task, str(output), run.bytes_sent, workers.seen()
            )
            if run.verify is not None:
                summary["verify"] = run.verify
        if stats.interrupted:
            writer.abort()
            summary["resume"] = command
            journal.finish_job(job_id, "interrupted", summary)
            emit(summary, as_json)
            done = stats.ok + stats.failed
            click.echo(
                f"p2pai: interrupted: {done} of {total if total is not None else '?'} inputs "
                f"done, kept in the journal {journal.path}; {output} was not written. Finish "
                f"with the same command: {command}",
                err=True,
            )
            return caught.exit_code
        writer.commit()
        journal.finish_job(job_id, "done", summary)
        emit(summary, as_json)
        return 1 if stats.failed else 0

    try:
        code = run_async(main())
    except (WriterError, JobJournalError) as exc:
        writer.abort()
        raise CliError(str(exc)) from None
    except BaseException:
        writer.abort()
        raise
    finally:
        journal.close()
    sys.exit(code)


def emit(summary: dict[str, Any], as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(summary))
        return
    for line in summary_lines(summary):
        click.echo(line)
    if not summary.get("interrupted"):
        click.echo(f"written: {summary['output']} ({summary['records']} records)")


async def find_any_workers(client: Any, count: int, timeout: float, model: str) -> list[Any]:
    """Workers to send to: we hold the model, so any worker (one without it fetches it)."""
    from netcore.models.locate import find_workers

    return await find_workers(client, count, timeout, model, client.registry.names(), True)


def rerun_command() -> str:
    """This command line again (``--fresh`` left out: the rerun finishes, it does not start
    over)."""
    args = [a for a in sys.argv[1:] if a != "--fresh"]
    return shlex.join(["p2pai", *args])
