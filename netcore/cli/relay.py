"""``p2pai relay``: a relay for nodes behind NATs (docs/reach.md), until SIGINT/SIGTERM."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import click

from netcore.cli.common import ByteSize, CliError, run_async, setup_logging
from netcore.cli.config_options import MetricsPort
from netcore.config.settings import default_data_dir

DEFAULT_PORT = 7400


def _event(kind: str, **fields: Any) -> str:
    return json.dumps({"event": kind, "t": time.time(), **fields}, separators=(",", ":"))


@click.command()
@click.option(
    "--interface",
    default="0.0.0.0",
    show_default=True,
    help="IPv4 address to listen on (0.0.0.0: every interface).",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=DEFAULT_PORT,
    show_default=True,
    help="TCP port (control links and circuits share it); 0 picks a free one.",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="P2PAI_DATA_DIR",
    default=None,
    help=f"The relay's key lives in <data-dir>/relay [default: {default_data_dir()}].",
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON `ready` event, then stats.")
@click.option(
    "--max-reservations",
    type=click.IntRange(1, 1_000_000),
    default=1024,
    show_default=True,
    help="Nodes holding a reservation at once.",
)
@click.option(
    "--reservation-ttl",
    type=click.FloatRange(3, 3600),
    default=30.0,
    show_default=True,
    help="Seconds a reservation lasts unless renewed (nodes renew every third of it).",
)
@click.option(
    "--circuits-per-peer",
    type=click.IntRange(1, 100_000),
    default=16,
    show_default=True,
    help="Circuits one node takes part in at once.",
)
@click.option(
    "--max-circuits",
    type=click.IntRange(1, 1_000_000),
    default=4096,
    show_default=True,
    help="Circuits of the whole relay at once.",
)
@click.option(
    "--circuit-bytes",
    type=ByteSize(),
    default="256MiB",
    show_default=True,
    help="Bytes one circuit carries; then it closes (the peers reconnect: a new circuit).",
)
@click.option(
    "--circuit-seconds",
    type=click.FloatRange(1, 86400 * 7),
    default=3600.0,
    show_default=True,
    help="How long one circuit lasts.",
)
@click.option(
    "--peer-bytes-per-hour",
    type=ByteSize(),
    default="4GiB",
    show_default=True,
    help="Bytes the circuits of one node carry in an hour.",
)
@click.option(
    "--metrics-port",
    type=MetricsPort(),
    default=None,
    help="Serve Prometheus /metrics on this port (0 picks one) [default: off].",
)
@click.option("--metrics-host", default="127.0.0.1", show_default=True)
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default="info",
    show_default=True,
)
def relay(
    interface: str,
    port: int,
    data_dir: Path | None,
    as_json: bool,
    max_reservations: int,
    reservation_ttl: float,
    circuits_per_peer: int,
    max_circuits: int,
    circuit_bytes: int,
    circuit_seconds: float,
    peer_bytes_per_hour: int,
    metrics_port: int | None,
    metrics_host: str,
    log_level: str,
) -> None:
    """Run a relay: nodes behind NATs hold a reservation here, find the other nodes of their
    network, and reach each other through circuits it splices byte for byte (their CURVE
    runs end to end: the relay sees only ciphertext).

    Give nodes `--relay tcp://<this machine's public address>:PORT#KEY` (KEY is printed at
    start). Open the TCP port in the firewall; nothing else is needed.
    """
    setup_logging(log_level)
    from netcore.net.identity import IdentityError, load_or_create
    from netcore.net.relay_limits import RelayLimits
    from netcore.net.relay_server import RelayError, RelayServer

    limits = RelayLimits(
        max_reservations=max_reservations,
        reservation_ttl=reservation_ttl,
        circuits_per_peer=circuits_per_peer,
        max_circuits=max_circuits,
        circuit_bytes=circuit_bytes,
        circuit_seconds=circuit_seconds,
        peer_bytes_per_hour=peer_bytes_per_hour,
    )
    try:
        identity = load_or_create((data_dir or default_data_dir()) / "relay", "relay")
    except IdentityError as exc:
        raise CliError(str(exc)) from None

    async def main() -> int:
        server = RelayServer(identity, limits)
        metrics: Any = None
        try:
            try:
                endpoint = await server.start(interface, port)
            except RelayError as exc:
                if as_json:
                    click.echo(_event("error", message=str(exc)))
                raise CliError(str(exc)) from None
            if metrics_port is not None:
                from netcore.observe.metrics_server import MetricsError, MetricsServer
                from netcore.observe.relay_metrics import RelayCollector

                try:
                    metrics = await MetricsServer(None, RelayCollector(server)).start(
                        metrics_host, metrics_port
                    )
                except MetricsError as exc:
                    raise CliError(str(exc)) from None
            ready = {
                "peer_id": identity.peer_id,
                "endpoint": endpoint,
                "key": identity.public_text,
                "address": server.address,
                "metrics": metrics.url if metrics is not None else "",
            }
            if as_json:
                click.echo(_event("ready", **ready))
            else:
                click.echo(f"relay ready: nodes use --relay {server.address}", err=True)
            while True:
                await asyncio.sleep(10)
                if as_json:
                    click.echo(_event("relay_stats", **server.status()))
        finally:
            if metrics is not None:
                await metrics.close()
            await asyncio.shield(server.close())

    sys.exit(run_async(main()))
