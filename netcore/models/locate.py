"""Where a model is on the swarm: wait for workers that hold it, or say at once it is nowhere.

``submit --model nosuchmodel`` used to wait out ``--timeout`` and then diagnose the network.
A model that neither this node nor any worker holds is now one line as soon as the swarm has
answered (:class:`ModelSearch`), naming what is held instead. Peers announce their models in
``hello`` (and again after fetching one), and more peers may still be coming: the search
gives up only when

* at least one worker has greeted us (none answered yet: keep waiting, up to ``--timeout``);
* no worker holds the model;
* every peer we know of has greeted us (one still connecting may hold it); and
* nothing changed in the peers and their models for :data:`SETTLE_S` seconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Protocol

from netcore.models.registry import TensorSpec
from netcore.models.signature import advertised_signature
from netcore.net.peers import Peer, PeerState

SETTLE_S = 1.5
"""Quiet time (no new peer, no new model list) after which a model nowhere is unknown."""
POLL_S = 0.25


class UnknownModel(Exception):
    """No node of the swarm holds the model; the message is one line naming what they hold."""


class PeerSource(Protocol):
    """What :func:`find_workers` needs of a node (:class:`netcore.node.Node` is one)."""

    @property
    def peers(self) -> Iterable[Peer]: ...

    async def wait_for_peers(
        self, count: int, timeout: float, kind: str | None = "infer", model: str | None = None
    ) -> list[Peer]: ...


def _workers(peers: Iterable[Peer]) -> list[Peer]:
    return [p for p in peers if p.greeted and p.state is PeerState.ALIVE and "infer" in p.caps]


def peer_label(peer: Peer) -> str:
    return peer.name or peer.peer_id[:8]


def unknown_model_line(model: str, local: Sequence[str], peers: Iterable[Peer]) -> str:
    """``unknown model 'x': this node holds digits, iris; peers hold digits (w1, w2)``; for a
    packaged model whose extra is not installed, the extra to install."""
    from netcore.models.packaged import missing_extra

    extra = missing_extra(model)
    if extra is not None:
        return extra
    held: dict[str, list[str]] = {}
    for peer in _workers(peers):
        for name in sorted({str(m.get("name")) for m in peer.models}):
            held.setdefault(name, []).append(peer_label(peer))
    theirs = ", ".join(
        f"{name} ({', '.join(who[:3])}{', ...' if len(who) > 3 else ''})"
        for name, who in sorted(held.items())
    )
    return (
        f"unknown model {model!r}: this node holds {', '.join(sorted(local)) or 'none'}; "
        f"peers hold {theirs or 'none'}"
    )


class ModelSearch:
    """Decides when a model no worker holds is unknown (see the module's doc)."""

    def __init__(
        self, model: str, settle_s: float = SETTLE_S, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.model = model
        self.settle_s = settle_s
        self.clock = clock
        self._seen: object = None
        self._since = clock()

    def nowhere(self, peers: Iterable[Peer]) -> bool:
        """True once the swarm has answered and settled, and no worker holds the model."""
        alive = [p for p in peers if p.state is PeerState.ALIVE]
        workers = _workers(alive)
        view = frozenset(
            (p.peer_id, p.greeted, tuple(sorted(str(m.get("name")) for m in p.models)))
            for p in alive
        )
        now = self.clock()
        if view != self._seen:
            self._seen, self._since = view, now
            return False
        if not workers or any(not p.greeted for p in alive):
            return False
        if any(p.has_model(self.model) for p in workers):
            return False
        return now - self._since >= self.settle_s


async def find_workers(
    node: PeerSource,
    count: int,
    timeout: float,
    model: str,
    local: Sequence[str],
    holds: bool,
    settle_s: float = SETTLE_S,
) -> list[Peer]:
    """Wait up to ``timeout`` for ``count`` workers (holding ``model`` unless ``holds``: a
    worker without it fetches it from us); raise :class:`UnknownModel` as soon as the model
    is known to be nowhere."""
    if holds:
        return await node.wait_for_peers(count, timeout)
    search = ModelSearch(model, settle_s)
    deadline = time.monotonic() + timeout
    while True:
        remaining = deadline - time.monotonic()
        found = await node.wait_for_peers(count, max(0.0, min(POLL_S, remaining)), model=model)
        if len(found) >= count:
            return found
        if search.nowhere(node.peers):
            raise UnknownModel(unknown_model_line(model, local, node.peers))
        if remaining <= 0:
            return found


def peer_signature(peers: Iterable[Peer], model: str) -> list[TensorSpec] | None:
    """The input signature that the peers holding ``model`` advertise, when they agree on one
    that is well-formed; None when no peer says, or they differ (versions may)."""
    found: list[TensorSpec] | None = None
    for peer in peers:
        for entry in peer.models:
            if entry.get("name") != model:
                continue
            specs = advertised_signature(entry) if isinstance(entry, Mapping) else None
            if specs is None or (found is not None and specs != found):
                return None
            found = specs
    return found
