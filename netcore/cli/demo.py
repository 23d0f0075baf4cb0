"""``p2pai demo``: start N node processes on 127.0.0.1, watch them find each other, run tasks.

Every process it starts is stopped (SIGTERM, then SIGKILL) and its temporary data removed,
also on Ctrl-C or an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click

from netcore.cli.common import CliError, run_async, setup_logging
from netcore.cli.submit import run_tasks
from netcore.config.settings import Config
from netcore.models.registry import load_samples

START_TIMEOUT_S = 20.0
MESH_TIMEOUT_S = 15.0


@dataclass
class DemoNode:
    index: int
    name: str
    proc: asyncio.subprocess.Process
    stderr_path: Path
    peer_id: str = ""
    endpoint: str = ""
    ready_at: float | None = None
    seen: dict[str, float] = field(default_factory=dict)
    """peer_id -> unix time this node reported it up."""
    served: int = 0


class Printer:
    """Progress and results on stdout: colour on a terminal, plain when piped, silent for --json."""

    def __init__(self, quiet: bool, started: float) -> None:
        self.quiet = quiet
        self.started = started
        self.tty = sys.stdout.isatty()

    def line(self, text: str, color: str | None = None, bold: bool = False) -> None:
        if self.quiet:
            return
        stamp = click.style(f"[{time.time() - self.started:6.2f}s]", dim=True)
        click.echo(f"{stamp} {click.style(text, fg=color, bold=bold)}")

    def progress(self, done: int, total: int, failed: int) -> None:
        if self.quiet or not self.tty:
            return
        width = 30
        filled = int(width * done / max(1, total))
        bar = "#" * filled + "-" * (width - filled)
        extra = click.style(f" {failed} failed", fg="red") if failed else ""
        click.echo(f"\r  [{bar}] {done}/{total}{extra}", nl=False)
        if done == total:
            click.echo("")


async def _read_events(node: DemoNode, names: dict[str, str], printer: Printer) -> None:
    assert node.proc.stdout is not None
    while True:
        raw = await node.proc.stdout.readline()
        if not raw:
            return
        try:
            event = json.loads(raw)
        except ValueError:
            continue
        kind = event.get("event")
        if kind == "ready":
            node.peer_id = event["peer_id"]
            node.endpoint = event["endpoint"]
            node.ready_at = event["t"]
            names[node.peer_id] = node.name
            printer.line(f"{node.name} ready: peer {node.peer_id[:8]} at {node.endpoint}", "cyan")
        elif kind == "peer_up":
            node.seen[event["peer_id"]] = event["t"]
            other = names.get(event["peer_id"])
            if other is not None:
                printer.line(f"{node.name} sees {other}")
        elif kind == "task_served":
            node.served += 1
        elif kind == "error":
            printer.line(f"{node.name}: {event.get('message')}", "red")


def discovery_times(nodes: list[DemoNode]) -> list[float]:
    """Per pair, ms from the later of the two nodes being ready to the observer seeing the other."""
    samples = []
    for observer in nodes:
        for subject in nodes:
            if subject is observer or not subject.peer_id:
                continue
            seen_at = observer.seen.get(subject.peer_id)
            if seen_at is None or observer.ready_at is None or subject.ready_at is None:
                continue
            samples.append(max(0.0, seen_at - max(observer.ready_at, subject.ready_at)) * 1000)
    return samples


async def _stop_all(nodes: list[DemoNode]) -> None:
    for node in nodes:
        if node.proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                node.proc.send_signal(signal.SIGTERM)
    for node in nodes:
        try:
            await asyncio.wait_for(node.proc.wait(), 3.0)
        except asyncio.TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                node.proc.kill()
            await node.proc.wait()


async def run_demo(count: int, tasks: int, concurrency: int, as_json: bool) -> int:
    from netcore.node import Node
    from netcore.tasks.tally import percentile

    started = time.time()
    printer = Printer(as_json, started)
    network = f"demo-{secrets.token_hex(4)}"
    workdir = Path(tempfile.mkdtemp(prefix="p2pai-demo-"))
    nodes: list[DemoNode] = []
    names: dict[str, str] = {}
    readers: list[asyncio.Task[None]] = []
    samples, labels = load_samples()
    printer.line(f"starting {count} nodes on 127.0.0.1, private network {network!r}", bold=True)
    try:
        for index in range(1, count + 1):
            name = f"demo-{index}"
            stderr_path = workdir / f"{name}.log"
            with open(stderr_path, "wb") as err:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable,
                    "-m",
                    "netcore.cli",
                    "node",
                    "--json",
                    "--interface",
                    "127.0.0.1",
                    "--network",
                    network,
                    "--data-dir",
                    str(workdir / name),
                    "--name",
                    name,
                    "--log-level",
                    "warning",
                    stdout=asyncio.subprocess.PIPE,
                    stderr=err,
                    stdin=asyncio.subprocess.DEVNULL,
                )
            node = DemoNode(index, name, proc, stderr_path)
            nodes.append(node)
            readers.append(asyncio.create_task(_read_events(node, names, printer)))

        deadline = time.monotonic() + START_TIMEOUT_S + MESH_TIMEOUT_S
        while True:
            dead = [n for n in nodes if n.proc.returncode is not None]
            if dead:
                detail = dead[0].stderr_path.read_text(errors="replace").strip().splitlines()
                raise CliError(f"{dead[0].name} exited: {detail[-1] if detail else 'no output'}")
            ids = {n.peer_id for n in nodes if n.peer_id}
            mesh = len(ids) == count and all(ids - {n.peer_id} <= set(n.seen) for n in nodes)
            if mesh:
                break
            if time.monotonic() > deadline:
                raise CliError(
                    "the demo nodes did not all find each other on 127.0.0.1 "
                    f"within {MESH_TIMEOUT_S:g}s; is multicast on loopback blocked? try `p2pai peers`"
                )
            await asyncio.sleep(0.02)
        disc = discovery_times(nodes)
        printer.line(
            f"full mesh: every node sees the other {count - 1} "
            f"(discovery p50 {percentile(disc, 50):.1f} ms, max {max(disc, default=0):.1f} ms)",
            "green",
            bold=True,
        )

        config = Config(
            interfaces=("127.0.0.1",),
            network=network,
            data_dir=workdir / "client",
            name="demo-client",
            caps=(),
        )
        join_started = time.monotonic()
        async with Node(config) as client:
            found = await client.wait_for_peers(count, MESH_TIMEOUT_S, model="digits")
            join_ms = (time.monotonic() - join_started) * 1000
            if len(found) < count:
                raise CliError(f"the client found {len(found)} of {count} workers")
            printer.line(
                f"client joined and greeted {count} workers in {join_ms:.0f} ms; "
                f"dispatching {tasks} digit tasks",
                bold=True,
            )
            done = failed = 0

            def on_outcome(index: int, outcome: Any, expected: int | None) -> None:
                nonlocal done, failed
                done += 1
                failed += 0 if outcome.ok else 1
                printer.progress(done, tasks, failed)

            summary = await run_tasks(
                client, "digits", samples, labels, tasks, concurrency, on_outcome=on_outcome
            )
        elapsed = time.time() - started
        result = {
            "nodes": count,
            "tasks": tasks,
            "ok": summary["ok"],
            "failed": summary["failed"],
            "success_rate": round(summary["ok"] / tasks, 4),
            "accuracy": summary["accuracy"],
            "latency_ms": summary["latency_ms"],
            "discovery_ms": {
                "p50": round(percentile(disc, 50), 2),
                "max": round(max(disc, default=0.0), 2),
            },
            "client_join_ms": round(join_ms, 1),
            "throughput_tps": summary["throughput_tps"],
            "workers": {names.get(k, k): v for k, v in summary["workers"].items()},
            "elapsed_s": round(elapsed, 2),
        }
        if as_json:
            click.echo(json.dumps(result))
        else:
            _print_summary(result)
        return 0 if summary["failed"] == 0 else 1
    finally:
        await _stop_all(nodes)
        for reader in readers:
            reader.cancel()
        shutil.rmtree(workdir, ignore_errors=True)


def _print_summary(result: dict[str, Any]) -> None:
    ok_color = "green" if result["failed"] == 0 else "red"
    click.echo("")
    click.secho("summary", bold=True)
    click.echo(f"  nodes          {result['nodes']}")
    click.echo(
        "  tasks          "
        + click.style(
            f"{result['ok']}/{result['tasks']} ok ({result['success_rate']:.1%})", fg=ok_color
        )
    )
    if result["accuracy"] is not None:
        click.echo(f"  accuracy       {result['accuracy']:.1%} (held-out digits)")
    click.echo(
        f"  latency        p50 {result['latency_ms']['p50']:.2f} ms, p99 {result['latency_ms']['p99']:.2f} ms"
    )
    click.echo(f"  throughput     {result['throughput_tps']:.0f} tasks/s")
    click.echo(
        f"  discovery      p50 {result['discovery_ms']['p50']:.1f} ms, max {result['discovery_ms']['max']:.1f} ms"
    )
    click.echo(
        "  work split     " + ", ".join(f"{k}: {v}" for k, v in sorted(result["workers"].items()))
    )
    click.echo(f"  elapsed        {result['elapsed_s']:.2f} s")
    click.echo("")
    click.secho("next steps", bold=True)
    click.echo("  make run                      the console with two local peers")
    click.echo("  p2pai node                    a worker on this machine, serving your LAN")
    click.echo("  p2pai submit --wait-peers 2   send the held-out digits to the swarm")
    click.echo("  p2pai peers                   who is out there")


@click.command()
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
    setup_logging("warning")
    sys.exit(run_async(run_demo(nodes, tasks, concurrency, as_json)))
