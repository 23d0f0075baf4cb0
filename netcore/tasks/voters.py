"""Who votes on a verified task (:mod:`netcore.tasks.verify`): hosts, not keys.

A voter is a usable worker (not quarantined: the scheduler's gate) that is not on probation
(:meth:`netcore.trust.manager.TrustManager.on_probation`: a new identity until it passed its
blind checks). Replicas of one task go to voters on distinct **hosts**; one process holding
50 identities is one voter.

The host of a worker is the IP address our DEALER dialled for it and completed a CURVE
handshake with: the handshake proves that the key answers there, and the address is the one
we chose to connect to, not a claim of the peer (a peer could claim any name, endpoint or
capacity in its hello). A worker we reach no other way counts as its own host; the workers we
reach through one relay count as one host (we cannot see their addresses).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netcore.wire.addresses import endpoint_ip


def transport_host(transport: Any, peer_id: str) -> str:
    """The IP our link to ``peer_id`` was dialled at, else ``key:<peer_id>`` (its own host)."""
    links = getattr(transport, "links", None) or {}
    link = links.get(peer_id)
    via = getattr(link, "via", None) if link is not None else None
    if via:
        # Through a relay we cannot see the peer's address: all the peers behind one relay
        # count as one host (the safe side: 50 keys behind a relay are one voter).
        return f"relay:{via}"
    ip = endpoint_ip(link.endpoint) if link is not None else None
    return str(ip) if ip is not None else f"key:{peer_id}"


@dataclass(slots=True)
class Electorate:
    """The workers of one model now: voters by host, and those still on probation."""

    voters: list[str] = field(default_factory=list)
    probation: list[str] = field(default_factory=list)
    hosts: dict[str, list[str]] = field(default_factory=dict)
    """Voters by host."""

    def replicas(self, redundancy: int, quorum: int) -> tuple[int, bool]:
        """(replicas to start with, whether they go to distinct hosts): ``redundancy`` where
        that many voters are usable, else as many as there are if at least ``quorum``; one a
        host where there are enough hosts, else one a key. (0, False): too few voters."""
        if len(self.hosts) >= quorum:
            return min(redundancy, len(self.hosts)), True
        if len(self.voters) >= quorum:
            return min(redundancy, len(self.voters)), False
        return 0, False


def electorate(
    candidates: list[str], host: Callable[[str], str], on_probation: Callable[[str], bool]
) -> Electorate:
    """Split the usable ``candidates`` (peer ids) into voters (by host) and probation."""
    found = Electorate()
    for peer_id in candidates:
        if on_probation(peer_id):
            found.probation.append(peer_id)
        else:
            found.voters.append(peer_id)
            found.hosts.setdefault(host(peer_id), []).append(peer_id)
    return found
