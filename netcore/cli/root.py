"""``p2pai``: the command line. Every failure the user can cause ends in one clear line."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click
import numpy as np

from netcore.config.file import (
    config_extras,
    current_log_format,
    group_config_option,
    reach_options,
)
from netcore.config.settings import Config, default_data_dir, default_name
from netcore.models.registry import ModelError, load_samples
from netcore.observe.events import Event, event_kinds
from netcore.observe.logs import configure as configure_logging
from netcore.tasks.tally import Tally

log = logging.getLogger("p2pai")

LAN_HINTS = (
    "check: the same --network name on every node? the same subnet? a firewall blocking "
    "UDP 5353 (mDNS) or the node's TCP port? multicast filtered by the Wi-Fi or switch?"
)

trust_option = click.option(
    "--trust", type=click.Choice(["open", "allowlist"]), default=None,
    help="open: any key may connect (still encrypted); allowlist: only keys trusted with "
    "`p2pai keys trust` connect and work for us [default: open; env P2PAI_TRUST].",
)  # fmt: skip
"""Not defaulted here, so that P2PAI_TRUST and the config file apply (netcore.trust.keys)."""


class CliError(click.ClickException):
    """One line on stderr, exit 1, no traceback."""

    def show(self, file: Any = None) -> None:
        click.echo(f"p2pai: error: {self.format_message()}", err=True)


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` in the ``--log-format`` of the running command."""
    configure_logging(level, current_log_format())


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every node-hosting command shares."""
    options = [
        click.option(
            "--interface",
            "interfaces",
            multiple=True,
            envvar="P2PAI_INTERFACE",
            help="IPv4 address to serve on (repeatable; env P2PAI_INTERFACE). "
            "Default: every non-loopback interface that is up (the LAN).",
        ),
        click.option(
            "--port",
            type=click.IntRange(0, 65535),
            default=0,
            show_default=True,
            help="TCP port of the node's ROUTER; 0 picks a free one.",
        ),
        click.option(
            "--network",
            envvar="P2PAI_NETWORK",
            default="default",
            show_default=True,
            help="Swarm name; nodes only see peers with the same name (env P2PAI_NETWORK).",
        ),
        click.option(
            "--data-dir",
            type=click.Path(path_type=Path),
            envvar="P2PAI_DATA_DIR",
            default=None,
            help=f"Keys, models and history (env P2PAI_DATA_DIR) [default: {default_data_dir()}]",
        ),
        click.option("--name", default=None, help="Display name [default: the host name]."),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            default=None,
            help="Log level on stderr.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return reach_options(func)  # --config, --peer, --mdns, --metrics-*, --log-format


def worker_wait_options(
    task_timeout: float, task_timeout_help: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--wait-peers, --timeout and --task-timeout, for commands that send tasks."""
    options = [
        click.option(
            "--wait-peers",
            type=click.IntRange(1, 10_000),
            default=1,
            show_default=True,
            help="Workers to wait for before dispatching.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 3600),
            default=10.0,
            show_default=True,
            help="Seconds to wait for --wait-peers workers.",
        ),
        click.option(
            "--task-timeout",
            type=click.FloatRange(0.01, 3600),
            default=task_timeout,
            show_default=True,
            help=task_timeout_help,
        ),
    ]

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def make_config(
    interfaces: tuple[str, ...],
    port: int,
    network: str,
    data_dir: Path | None,
    name: str | None,
    **extra: Any,
) -> Config:
    env_split: list[str] = []
    for item in interfaces:
        env_split.extend(part for part in item.replace(",", " ").split() if part)
    return Config(
        interfaces=tuple(env_split),
        port=port,
        network=network,
        data_dir=data_dir or default_data_dir(),
        name=name or default_name(),
        **{**config_extras(), **extra},  # the config file and P2PAI_* for the rest
    )


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` with SIGINT/SIGTERM cancelling it cleanly."""
    from netcore.node import NodeStartError

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopping = False

        def on_signal() -> None:
            nonlocal stopping
            if not stopping:
                stopping = True
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal)
        try:
            return await main
        except asyncio.CancelledError:
            return 130 if not stopping else 0

    try:
        return asyncio.run(runner())
    except NodeStartError as exc:
        raise CliError(str(exc)) from None
    except ModelError as exc:
        raise CliError(str(exc)) from None


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="p2p-ai-agents", prog_name="p2pai")
@group_config_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """p2pai: a peer-to-peer AI inference network for the machines you already have.

    Nodes find each other on the LAN by mDNS, talk over encrypted ZeroMQ (CURVE), and run
    ONNX models with onnxruntime. Start with `p2pai demo`, or `p2pai node` on each machine.
    """
    if ctx.invoked_subcommand is None:
        console = cli.commands["console"]
        # Parse an empty command line so that P2PAI_* variables and defaults apply.
        with console.make_context("console", [], parent=ctx) as sub:
            console.invoke(sub)


# --- node ----------------------------------------------------------------------------------


def event_line(event: Event) -> str:
    return json.dumps(event.to_json(), separators=(",", ":"))


@cli.command()
@common_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object a line per event on stdout."
)
@click.option(
    "--capacity",
    type=click.IntRange(0, 1024),
    default=0,
    help="Tasks run at once [default: one per CPU core].",
)
@click.option(
    "--queue-limit",
    type=click.IntRange(0, 100_000),
    default=256,
    show_default=True,
    help="Tasks waiting beyond capacity before 'overloaded'.",
)
@click.option("--client-only", is_flag=True, help="Run no tasks (empty caps); only submit.")
@click.option(
    "--provider",
    envvar="P2PAI_PROVIDER",
    default="",
    help="onnxruntime execution provider: cuda, rocm, coreml, directml or cpu "
    "(env P2PAI_PROVIDER) [default: the best available].",
)
@trust_option
def node(
    interfaces: tuple[str, ...],
    port: int,
    network: str,
    data_dir: Path | None,
    name: str | None,
    log_level: str | None,
    as_json: bool,
    capacity: int,
    queue_limit: int,
    client_only: bool,
    provider: str,
    trust: str | None,
) -> None:
    """Run a headless node (a Raspberry Pi, a server) until SIGINT/SIGTERM.

    Logs go to stderr; with --json, stdout carries one event a line.
    """
    setup_logging(log_level or "info")
    config = make_config(
        interfaces,
        port,
        network,
        data_dir,
        name,
        capacity=capacity,
        queue_limit=queue_limit,
        caps=() if client_only else ("infer",),
        provider=provider,
        **({"trust": trust} if trust else {}),
    )

    async def main() -> int:
        from netcore.node import Node, NodeStartError

        node_ = Node(config)
        # Only what is printed is queued: a pong's peer_updated would wake this loop for
        # nothing once a second per peer.
        printed = event_kinds() - {"peer_updated", "task_retry", "log"} if as_json else ()
        events = node_.events(kinds=printed)
        try:
            await node_.start()
        except NodeStartError as exc:
            if as_json:
                click.echo(json.dumps({"event": "error", "t": time.time(), "message": str(exc)}))
            raise
        try:
            async for event in events:
                click.echo(event_line(event))
        finally:
            await asyncio.shield(node_.stop())
        return 0

    sys.exit(run_async(main()))


# --- submit --------------------------------------------------------------------------------


@cli.command()
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
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Samples as .npy [N, features] (or .npz with x, y) [default: the bundled held-out digits].",
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
    base_dir = data_dir or default_data_dir()
    config = make_config(
        interfaces,
        port,
        network,
        base_dir / "client",
        name,
        caps=(),
        task_timeout=task_timeout,
        models_dirs=(base_dir / "models",),
        base_dir=base_dir,
        **({"trust": trust} if trust else {}),
    )
    wait_peers = max(wait_peers, redundancy)
    if input_file is not None and not input_file.exists():
        raise CliError(f"--input {input_file}: no such file")
    try:
        samples, labels = load_samples(input_file)
    except ModelError as exc:
        raise CliError(str(exc)) from None
    if samples.ndim != 2 or len(samples) == 0:
        raise CliError(
            f"--input: expected a 2-D array [N, features], got shape {list(samples.shape)}"
        )
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

        async with Node(config) as client:
            # A model we hold can go to any worker: one without it fetches it from us.
            holds = client.registry.find(model) is not None
            found = await client.wait_for_peers(wait_peers, timeout, model=None if holds else model)
            if len(found) < wait_peers:
                seen = len(client.usable_peers(kind=None))
                raise CliError(
                    f"found {len(found)} of {wait_peers} worker(s) with model {model!r} on network "
                    f"{network!r} after {timeout:g}s ({seen} peer(s) in all); {LAN_HINTS}"
                )
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


# --- peers ---------------------------------------------------------------------------------


@cli.command()
@common_options
@click.option(
    "--timeout",
    type=click.FloatRange(0.1, 600),
    default=2.0,
    show_default=True,
    help="Seconds to browse.",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def peers(
    interfaces: tuple[str, ...],
    port: int,
    network: str,
    data_dir: Path | None,
    name: str | None,
    log_level: str | None,
    timeout: float,
    as_json: bool,
) -> None:
    """Browse the swarm, ping each peer, print a table and exit."""
    setup_logging(log_level or "warning")
    base_dir = data_dir or default_data_dir()
    config = make_config(
        interfaces,
        port,
        network,
        base_dir / "client",
        name,
        caps=(),
        advertise=False,
        base_dir=base_dir,
    )

    async def main() -> int:
        from netcore.node import Node

        async with Node(config) as client:
            await asyncio.sleep(timeout)
            reputation = client.trust.reputation  # this machine's record of each peer
            found = client.usable_peers(kind=None)
            rtts = await asyncio.gather(*(client.ping(p.peer_id) for p in found))
            rows: list[dict[str, Any]] = []
            for peer, rtt in zip(found, rtts, strict=True):
                rows.append(
                    {
                        "peer_id": peer.peer_id,
                        "name": peer.name,
                        "endpoint": peer.endpoint,
                        "caps": peer.caps,
                        "models": sorted({str(m.get("name")) for m in peer.models}),
                        "rtt_ms": round(rtt * 1000, 3) if rtt is not None else None,
                        "capacity": peer.capacity,
                        "source": peer.source,
                        "score": round(reputation.score(peer.key), 3),
                        "quarantined": reputation.quarantined(peer.key),
                        "trusted": client.trust.trusted(peer.key),
                    }
                )
        if as_json:
            click.echo(json.dumps(rows))
            return 0
        if not rows:
            click.echo(f"no peers on network {network!r} after {timeout:g}s; {LAN_HINTS}")
            return 0
        click.echo(
            f"{'PEER':<20}  {'NAME':<16} {'ENDPOINT':<24} {'RTT':>9}  {'CAP':>3}  "
            f"{'SCORE':>5}  {'STATE':<11}  MODELS"
        )
        for row in rows:
            rtt_text = f"{row['rtt_ms']:.2f} ms" if row["rtt_ms"] is not None else "no reply"
            state = "quarantined" if row["quarantined"] else "trusted" if row["trusted"] else "ok"
            click.echo(
                f"{row['peer_id']:<20}  {row['name'][:16]:<16} {row['endpoint']:<24} {rtt_text:>9}  "
                f"{row['capacity']:>3}  {row['score']:>5.2f}  {state:<11}  {','.join(row['models']) or '-'}"
            )
            if row["quarantined"]:
                click.echo(f"{'':<22}quarantined: {row['quarantined']}")
        return 0

    sys.exit(run_async(main()))


# --- console -------------------------------------------------------------------------------


@cli.command()
@common_options
@click.option(
    "--local",
    type=click.IntRange(0, 16),
    default=0,
    show_default=True,
    help="Also start N headless peers on 127.0.0.1 (a private swarm) that stop with the console.",
)
@click.option(
    "--capacity",
    type=click.IntRange(0, 1024),
    default=0,
    help="Tasks run at once [default: one per CPU core].",
)
@click.option(
    "--provider",
    envvar="P2PAI_PROVIDER",
    default="",
    help="onnxruntime execution provider: cuda, rocm, coreml, directml or cpu "
    "(env P2PAI_PROVIDER) [default: the best available].",
)
@trust_option
def console(
    interfaces: tuple[str, ...] = (),
    port: int = 0,
    network: str = "default",
    data_dir: Path | None = None,
    name: str | None = None,
    log_level: str | None = None,
    local: int = 0,
    capacity: int = 0,
    provider: str = "",
    trust: str | None = None,
) -> None:
    """The terminal console: a node with live peers, tasks, latency and logs (the default command)."""
    config = make_config(
        interfaces,
        port,
        network,
        data_dir,
        name,
        capacity=capacity,
        provider=provider,
        **({"trust": trust} if trust else {}),
    )
    # Imported here so that `import netcore` never loads Textual.
    from tui.app import run_console

    sys.exit(
        run_console(
            config, local=local, log_level=log_level or "info", log_format=current_log_format()
        )
    )


# --- demo ----------------------------------------------------------------------------------


@cli.command()
@click.option(
    "--nodes",
    type=click.IntRange(1, 50),
    default=3,
    show_default=True,
    help="Worker processes to start.",
)
@click.option(
    "--tasks",
    type=click.IntRange(1, 1_000_000),
    default=200,
    show_default=True,
    help="Tasks to run.",
)
@click.option(
    "--concurrency",
    type=click.IntRange(1, 1000),
    default=16,
    show_default=True,
    help="Tasks in flight.",
)
@click.option("--json", "as_json", is_flag=True, help="Print only a JSON summary.")
def demo(nodes: int, tasks: int, concurrency: int, as_json: bool) -> None:
    """The one-command demo: N local nodes on 127.0.0.1 find each other and run tasks."""
    from netcore.cli.demo import run_demo

    setup_logging("warning")
    sys.exit(run_async(run_demo(nodes, tasks, concurrency, as_json)))


from netcore.cli.reach import register_reach_commands  # noqa: E402  (it imports this module)

register_reach_commands(cli)  # config show, doctor, serve


def main() -> None:
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    cli(prog_name="p2pai")


# `models` and `infer` (netcore/model_cli.py) register themselves on `cli` when imported.
from netcore.cli import models as model_cli  # noqa: E402, F401
from netcore.cli.keys import keys, reputation  # noqa: E402  (it imports this module)

cli.add_command(keys)  # keys show|trust|revoke|list
cli.add_command(reputation)  # reputation show|reset

from netcore.cli.tasks import tasks  # noqa: E402

cli.add_command(tasks)  # the journal's history

from netcore.bench.runner import register as register_bench  # noqa: E402

register_bench(cli)  # bench: performance beside baselines (netcore/bench/)

if __name__ == "__main__":
    main()
