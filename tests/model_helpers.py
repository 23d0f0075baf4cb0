"""Helpers for the model tests: in-process nodes on 127.0.0.1, each test on its own network."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

from netcore.config.settings import Config
from netcore.node import Node

LOOPBACK = "127.0.0.1"


def unique_network(prefix: str = "models") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def loopback_config(tmp_path: Path, name: str, network: str, **extra: Any) -> Config:
    """A node config serving on 127.0.0.1 only, data under ``tmp_path/name``."""
    return Config(
        interfaces=(LOOPBACK,), network=network, data_dir=tmp_path / name, name=name, **extra
    )


async def wait_until(
    condition: Callable[[], bool], timeout: float = 15.0, what: str = "condition"
) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(0.02)


@contextlib.asynccontextmanager
async def running(*configs: Config | Node) -> AsyncIterator[list[Node]]:
    """Start nodes (a config, or a node not started yet, e.g. a liar), wait until each sees and
    has greeted every other, stop them all after."""
    nodes = [c if isinstance(c, Node) else Node(c) for c in configs]
    started: list[Node] = []
    try:
        for node in nodes:
            await node.start()
            started.append(node)
        for node in nodes:
            others = {n.peer_id for n in nodes if n is not node}
            await wait_until(
                lambda node=node, others=others: (
                    others <= {p.peer_id for p in node.usable_peers(kind=None)}
                ),
                what=f"{node.config.name} to greet its peers",
            )
        yield nodes
    finally:
        for node in reversed(started):
            await node.stop()


def count_rows(db: Path, sql: str) -> int:
    """``SELECT COUNT(*) ...`` on a journal another process is writing: 0 while the file or its
    tables do not exist yet."""
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return int(conn.execute(sql).fetchone()[0])
    except sqlite3.OperationalError:  # created a moment ago: no tables yet
        return 0
