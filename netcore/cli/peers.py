"""``p2pai peers``: browse, ping each peer, print a table."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

import click

from netcore.cli.common import (
    LAN_HINTS,
    client_config,
    common_options,
    run_async,
    setup_logging,
)


@click.command()
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
    config = client_config(
        interfaces, port, network, data_dir, name, with_models=False, advertise=False
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
                        "endpoint": (
                            f"relay {peer.relay.removeprefix('tcp://')}"
                            if peer.reach == "relayed"
                            else f"punched {peer.punched_to}"
                            if peer.reach == "punched"
                            else peer.endpoint
                        ),
                        "reach": peer.reach,
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
