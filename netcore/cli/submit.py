"""``p2pai submit``: join as a client, dispatch tasks, print results or a JSON summary."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np

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
from netcore.cli.submit_output import (
    JsonReports,
    TextReports,
    WorkerNames,
    resume_command,
    summary_lines,
)
from netcore.models.inputs import InputError, read_samples
from netcore.models.locate import UnknownModel, find_workers, peer_signature
from netcore.models.plugins import load_registry
from netcore.models.registry import TensorSpec
from netcore.models.signature import SignatureMismatch, fit_samples


@click.command()
@common_options
@click.option("--model", default="digits", show_default=True, help="Model name.")
@click.option(
    "--count",
    type=click.IntRange(1, 1_000_000_000),
    default=None,
    help="Samples to run [default: each sample once].",
)
@click.option(
    "--batch",
    type=click.IntRange(1, 1_000_000),
    default=1,
    show_default=True,
    help="Samples per task (the model's first input dimension must be N).",
)
@click.option(
    "--input",
    "input_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Samples as .npy (one sample a row) or .npz (x, and y labels), checked against the "
    "model's inputs [default: the bundled held-out digits].",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 10_000),
    default=32,
    show_default=True,
    help="Tasks in flight at once.",
)
@worker_wait_options(
    task_timeout=5.0,
    task_timeout_help="Seconds one attempt of a task may take before it is retried elsewhere.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON summary object.")
@click.option(
    "--redundancy",
    type=click.IntRange(1, 9),
    default=1,
    show_default=True,
    help="Verified results: run each task on K distinct workers, accept the majority answer.",
)
@click.option(
    "--vote",
    type=click.Choice(["digest", "label", "cosine"]),
    default="digest",
    show_default=True,
    help="Compare results bit for bit (digest), by class label (float outputs may "
    "differ between hardware) or float outputs by cosine >= 0.999 (embeddings).",
)
@click.option(
    "--spot-check",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Blind checks: re-run this share of the results (real inputs, picked after they "
    "arrive) on our own copy of the model, or another host; a mismatch quarantines the "
    "worker. New workers are checked on every result until they pass 3. With labelled "
    "samples, as many known-answer tasks too.",
)
@trust_option
@click.option(
    "--resume",
    is_flag=True,
    help="Finish the tasks of interrupted runs (a submit that was killed) from the "
    "journal, instead of sending new ones.",
)
@click.option(
    "--no-journal",
    is_flag=True,
    help="Do not journal the tasks (no --resume possible for this run).",
)
def submit(
    interfaces: tuple[str, ...],
    port: int,
    network: str,
    data_dir: Path | None,
    name: str | None,
    log_level: str | None,
    model: str,
    count: int | None,
    batch: int,
    input_file: Path | None,
    concurrency: int,
    wait_peers: int,
    timeout: float,
    task_timeout: float,
    as_json: bool,
    redundancy: int,
    vote: str,
    spot_check: float,
    trust: str | None,
    resume: bool = False,
    no_journal: bool = False,
) -> None:
    """Join as a client-only node, dispatch tasks to the swarm, print the results.

    Every task is journaled (SQLite, in the data dir) before it is sent and its outcome before
    it is printed: a submit that is killed can be finished with --resume, each outcome reported
    once. `p2pai tasks` lists the history.
    """
    setup_logging(log_level or "warning")
    config = client_config(
        interfaces,
        port,
        network,
        data_dir,
        name,
        with_models=True,
        task_timeout=task_timeout,
        **({"trust": trust} if trust else {}),
    )
    # A vote needs a quorum of voters (K // 2 + 1); tasks wait for more (netcore.tasks.verify).
    wait_peers = max(wait_peers, redundancy // 2 + 1)
    # Inputs are read and checked against the model's signature before connecting
    # (netcore.models.inputs, netcore.models.signature); a model held only by peers is
    # checked once they advertise it, below.
    local_models = load_registry(config)
    local_spec = local_models.find(model)
    try:
        loaded = read_samples(input_file, model=model)
        samples, labels = loaded.x, loaded.y
        if local_spec is not None and not resume:
            samples = fit_input_samples(model, samples, local_spec.inputs, input_file)
    except InputError as exc:
        raise CliError(str(exc)) from None
    total = count or len(samples)

    journal = None
    runs: list[Any] = []
    if resume or not no_journal:
        from netcore.tasks.journal import Journal, JournalError

        try:
            journal = Journal(config.data_dir)
        except JournalError as exc:
            raise CliError(str(exc)) from None
    if resume:
        from netcore.tasks.resume import interrupted_runs

        assert journal is not None
        runs = interrupted_runs(journal)
        if not runs:
            journal.close()
            raise CliError(f"nothing to resume: no interrupted run in {journal.path}")
        model = runs[0].model
    resume_hint = resume_command(click.get_current_context()) if journal is not None else None
    plans = [journal.plan_of(r.run_id) for r in runs] if journal is not None else []
    batched = batch > 1 or any(plan is not None and plan.batch > 1 for plan in plans)

    async def main() -> int:
        from netcore.node import Node
        from netcore.tasks.verify import build_verifier

        nonlocal samples
        stop = asyncio.Event()
        caught = catch_interrupts(stop)
        async with Node(config) as client:
            # A model we hold can go to any worker: one without it fetches it from us.
            spec = client.registry.find(model)
            holds = spec is not None
            try:
                found = await until_stopped(
                    find_workers(
                        client, wait_peers, timeout, model, client.registry.names(), holds
                    ),
                    stop,
                )
            except UnknownModel as exc:
                raise CliError(str(exc)) from None
            if found is None:
                click.echo("p2pai: interrupted before any task was sent", err=True)
                return caught.exit_code
            if len(found) < wait_peers:
                seen = len(client.usable_peers(kind=None))
                raise CliError(
                    f"found {len(found)} of {wait_peers} worker(s) with model {model!r} on network "
                    f"{network!r} after {timeout:g}s ({seen} peer(s) in all); {LAN_HINTS}"
                )
            if not holds and not resume:
                signature = peer_signature(found, model)
                if signature is None:
                    note_line(f"cannot check the samples: no peer advertises the inputs of {model}")
                else:
                    samples = fit_input_samples(model, samples, signature, input_file)
            names = list(spec.labels) if spec is not None else []
            workers = WorkerNames(lambda: client.peers)
            reporter: Any = (
                JsonReports(names, workers) if as_json else TextReports(names, workers, batched)
            )
            # --redundancy / --spot-check: a Verifier submits in the client's place (netcore.tasks.verify).
            submitter = build_verifier(
                client, model, redundancy, vote, spot_check, samples, labels, wait_s=timeout
            )
            journaled: Any = submitter
            if journal is not None and not resume:
                from netcore.tasks.journal import RunPlan
                from netcore.tasks.journaled import JournaledSubmitter

                plan = RunPlan(
                    str(input_file.resolve()) if input_file else "",
                    total,
                    batch,
                    -(-total // batch),
                )
                known = labels if labels is not None and batch == 1 else None
                journaled = JournaledSubmitter(
                    submitter,
                    journal,
                    model,
                    plan=plan,
                    expected=(lambda i: int(known[i % len(known)])) if known is not None else None,
                    labels=names,
                )
            try:
                if resume:
                    from netcore.tasks.resume import resume_runs

                    assert journal is not None
                    try:
                        summary = await resume_runs(
                            submitter, journal, runs, concurrency, on_report=reporter, stop=stop
                        )
                    except JournalError as exc:
                        raise CliError(str(exc)) from None
                else:
                    from netcore.tasks.batch import run_batches

                    summary = await run_batches(
                        journaled,
                        model,
                        samples,
                        labels,
                        total,
                        batch,
                        concurrency,
                        on_report=reporter,
                        stop=stop,
                    )
            finally:
                if journaled is not submitter:
                    journaled.close()
                if submitter is not client:
                    await submitter.aclose()
            if submitter is not client:
                summary["verify"] = submitter.stats.to_json()
            summary["worker_names"] = workers.seen()
        interrupted = bool(summary.get("interrupted"))
        if interrupted and resume_hint:
            summary["resume"] = resume_hint
        if as_json:
            reporter.close(summary)
        else:
            for line in summary_lines(summary, workers):
                click.echo(line)
            if "verify" in summary:
                from netcore.tasks.verify import verify_summary

                click.echo(verify_summary(summary["verify"], redundancy, vote))
        if interrupted:
            left = summary["tasks"] - summary["ok"] - summary["failed"]
            then = f"resume with: {resume_hint}" if resume_hint else "not journaled (--no-journal)"
            click.echo(
                f"p2pai: interrupted: {left} of {summary['tasks']} tasks not done; {then}", err=True
            )
            return caught.exit_code
        return 1 if summary["failed"] else 0

    sys.exit(run_async(main()))


def fit_input_samples(
    model: str, samples: np.ndarray, signature: list[TensorSpec], source: Path | None
) -> np.ndarray:
    """``samples`` fitted to the model's signature; a reshape is said on stderr, a mismatch
    is one line (netcore.models.signature)."""
    try:
        fitted, notes = fit_samples(model, samples, signature)
    except SignatureMismatch as exc:
        raise CliError(f"--input {source}: {exc}" if source else str(exc)) from None
    for note in notes:
        note_line(note)
    return fitted


async def run_tasks(
    client: Any,
    model: str,
    samples: np.ndarray,
    labels: np.ndarray | None,
    total: int,
    concurrency: int,
    on_outcome: Callable[[int, Any, int | None], None] | None = None,
    task_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Dispatch ``total`` single-sample tasks (cycling over ``samples``) and summarise them;
    ``on_outcome(number, outcome, expected)`` hears of each, in task order (numbered from 1)."""
    from netcore.tasks.batch import TaskReport, run_batches

    def on_report(report: TaskReport) -> None:
        assert on_outcome is not None
        expected = report.expected[0] if report.expected else None
        on_outcome(report.number, report.outcome, expected)

    return await run_batches(
        client,
        model,
        samples,
        labels,
        total,
        1,
        concurrency,
        on_report=on_report if on_outcome is not None else None,
        task_options=task_options,
    )
