"""``p2pai submit``: join as a client, dispatch tasks, print results or a JSON summary."""

from __future__ import annotations

import asyncio
import json
import sys
import time
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
from netcore.models.inputs import InputError, read_samples
from netcore.models.locate import UnknownModel, find_workers, peer_signature
from netcore.models.plugins import load_registry
from netcore.models.registry import TensorSpec
from netcore.models.signature import SignatureMismatch, fit_samples
from netcore.tasks.tally import Tally


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
    type=click.Choice(["digest", "label"]),
    default="digest",
    show_default=True,
    help="Compare results bit for bit (digest) or by class label (float outputs may "
    "differ between hardware).",
)
@click.option(
    "--spot-check",
    type=click.FloatRange(0, 1),
    default=0.0,
    show_default=True,
    help="Also send this share of known-answer tasks (labelled held-out samples) and "
    "score workers on them.",
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
    wait_peers = max(wait_peers, redundancy)
    # Inputs are read and checked against the model's signature before connecting
    # (netcore.models.inputs, netcore.models.signature); a model held only by peers is
    # checked once they advertise it, below.
    local_models = load_registry(config)
    local_spec = local_models.find(model)
    try:
        loaded = read_samples(input_file)
        samples, labels = loaded.x, loaded.y
        if local_spec is not None and not resume:
            samples = fit_input_samples(model, samples, local_spec.inputs, input_file)
    except InputError as exc:
        raise CliError(str(exc)) from None
    total = count or len(samples)
    if spot_check > 0 and labels is None:
        raise CliError(
            "--spot-check needs labelled samples: an .npz with x and y (the bundled digits have labels)"
        )

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

    async def main() -> int:
        from netcore.node import Node
        from netcore.tasks.verify import build_verifier

        nonlocal samples
        async with Node(config) as client:
            # A model we hold can go to any worker: one without it fetches it from us.
            holds = client.registry.find(model) is not None
            try:
                found = await find_workers(
                    client, wait_peers, timeout, model, client.registry.names(), holds
                )
            except UnknownModel as exc:
                raise CliError(str(exc)) from None
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
            # --redundancy / --spot-check: a Verifier submits in the client's place (netcore.tasks.verify).
            submitter = build_verifier(client, model, redundancy, vote, spot_check, samples, labels)
            journaled: Any = submitter
            if journal is not None and not resume:
                from netcore.tasks.journal import JournaledSubmitter, RunPlan

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
                )
            try:
                if resume:
                    from netcore.tasks.resume import resume_runs

                    assert journal is not None
                    try:
                        summary = await resume_runs(
                            submitter,
                            journal,
                            runs,
                            concurrency,
                            on_outcome=None if as_json else print_outcome,
                        )
                    except JournalError as exc:
                        raise CliError(str(exc)) from None
                elif batch > 1:
                    from netcore.tasks.batch import print_batch_outcome, run_batches

                    summary = await run_batches(
                        journaled,
                        model,
                        samples,
                        labels,
                        total,
                        batch,
                        concurrency,
                        on_outcome=None if as_json else print_batch_outcome,
                    )
                else:
                    summary = await run_tasks(
                        journaled,
                        model,
                        samples,
                        labels,
                        total,
                        concurrency,
                        on_outcome=None if as_json else print_outcome,
                    )
            finally:
                if journaled is not submitter:
                    journaled.close()
                if submitter is not client:
                    await submitter.aclose()
            if submitter is not client:
                summary["verify"] = submitter.stats.to_json()
        if as_json:
            click.echo(json.dumps(summary))
        else:
            print_summary(summary)
            if "verify" in summary:
                from netcore.tasks.verify import verify_summary

                click.echo(verify_summary(summary["verify"], redundancy, vote))
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


def print_outcome(index: int, outcome: Any, expected: int | None) -> None:
    if outcome.ok:
        label = outcome.label
        mark = ""
        if expected is not None and label is not None:
            mark = "  ok" if label == expected else f"  WRONG (expected {expected})"
        conf = f" ({outcome.confidence:.0%})" if outcome.confidence is not None else ""
        click.echo(
            f"#{index:<5} {outcome.task_id}  {label}{conf}  on {str(outcome.worker)[:8]}  "
            f"{outcome.latency_s * 1000:.2f} ms{mark}"
        )
    else:
        click.echo(f"#{index:<5} {outcome.task_id}  FAILED {outcome.error_code}: {outcome.error}")


def print_summary(summary: dict[str, Any]) -> None:
    acc = summary.get("accuracy")
    click.echo(
        f"\n{summary['ok']}/{summary['tasks']} ok, {summary['failed']} failed"
        + (f", accuracy {acc:.1%}" if acc is not None else "")
        + f", p50 {summary['latency_ms']['p50']:.2f} ms, p99 {summary['latency_ms']['p99']:.2f} ms, "
        f"{summary['throughput_tps']:.0f} tasks/s"
    )
    workers = ", ".join(f"{k[:8]}: {v}" for k, v in summary["workers"].items())
    click.echo(f"workers: {workers or '-'}")
    if summary.get("batch", 1) > 1:
        click.echo(
            f"samples: {summary['samples_ok']}/{summary['samples']} ok in tasks of {summary['batch']}, "
            f"{summary['throughput_sps']:.0f} samples/s"
        )


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
    """Dispatch ``total`` tasks (cycling over ``samples``) and summarise their outcomes."""
    tally = Tally()
    next_index = 0
    options = task_options or {}

    async def lane() -> None:
        nonlocal next_index
        while next_index < total:
            index = next_index
            next_index += 1
            row = index % len(samples)
            outcome = await client.submit(model, samples[row : row + 1], **options)
            expected = int(labels[row]) if labels is not None else None
            tally.add(outcome, expected)
            if on_outcome is not None:
                on_outcome(index, outcome, expected)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(min(concurrency, total))))
    return tally.summary(total, time.perf_counter() - started)
