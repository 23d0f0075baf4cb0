"""What the Peers pane says while it has no rows: the node's state, or why no peer shows."""

from __future__ import annotations

from .state import NodeLike, no_peers_text


def peers_placeholder(
    node: NodeLike,
    *,
    failed: str | None,
    running: bool,
    started_at: float | None,
    empty_after: float,
    now: float,
) -> str | None:
    """The text for an empty Peers table: the node failed or is starting, peers are being
    looked for (the first ``empty_after`` seconds), or hints on why none was found."""
    if failed is not None:
        return f"The node is not running: {failed}"
    if not running or started_at is None:
        return "Starting the node…"
    waited = now - started_at
    cfg = node.config
    if waited < empty_after:
        return f"Looking for peers on network {cfg.network!r}…"
    addresses = list(cfg.interfaces) or ["every LAN interface"]
    return no_peers_text(cfg.network, node.endpoint, addresses, waited)
