"""``p2pai node``: a headless node until SIGINT/SIGTERM; events as JSON lines with --json."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

import click

from netcore.cli.common import (
    capacity_option,
    common_options,
    make_config,
    model_quota_option,
    provider_option,
    run_async,
    setup_logging,
    split_keys,
    trust_key_option,
    trust_option,
)
from netcore.observe.events import Event, event_kinds


def event_line(event: Event) -> str:
    return json.dumps(event.to_json(), separators=(",", ":"))


@click.command()
@common_options
@click.option(
    "--json", "as_json", is_flag=True, help="Print one JSON object a line per event on stdout."
)
@capacity_option()
@click.option(
    "--queue-limit",
    type=click.IntRange(0, 100_000),
    default=256,
    show_default=True,
    help="Tasks waiting beyond capacity before 'overloaded'.",
)
@click.option("--client-only", is_flag=True, help="Run no tasks (empty caps); only submit.")
@provider_option
@trust_option
@trust_key_option
@model_quota_option
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
    trust_keys: tuple[str, ...],
    model_quota: int,
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
        trusted_keys=split_keys(trust_keys),
        model_quota=model_quota,
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
