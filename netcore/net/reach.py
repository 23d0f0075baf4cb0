"""Reach beyond one subnet: static peers and peers shared in ``hello``.

* A **static peer** is given by hand, ``tcp://host:port#<z85 key>`` (PROTOCOL.md §2), with
  ``--peer`` or ``peer = [...]`` in the config file. The node connects to it like to a peer
  found by mDNS, shows it with source ``static``, and never forgets it: while it is down its
  entry stays "connecting" (ZeroMQ retries the connection every 0.1 to 2 s), and when it leaves
  or expires after being up it is added again 2 s later. A host name is resolved again at
  each such attempt (a failed lookup backs off up to 30 s).
* **Peer sharing**: our ``hello`` carries an optional ``peers`` list of ``{endpoint, key}``
  (the greeted peers we know, with the endpoint we reach them on) and ``time`` (our Unix clock).
  A node that receives it connects to the peers it did not know (source ``shared``), so one
  static entry joins the whole remote swarm. Only endpoints this node completed a CURVE
  handshake with are passed on, and a shared endpoint is dialled only while the peer that
  shared it is live (bounded dialling, :mod:`netcore.net.dialer`). It waits :data:`SHARED_GRACE_S` first: a peer
  that mDNS or its own ``hello`` brings meanwhile (on a LAN) is never taken from a list. Other implementations ignore both keys
  (PROTOCOL.md §4: unknown keys MUST be ignored).

Because a swarm's membership changes after the first greeting, a node re-sends ``hello``
every :data:`SHARE_INTERVAL_S` to the peers it did not find by mDNS (static, shared, or
learned from their ``hello``): their replies carry the peers they learned since.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from netcore.config.errors import ConfigError
from netcore.config.peers import StaticPeer, parse_static_peer
from netcore.net.dialer import STATIC
from netcore.wire.addresses import is_z85_key, peer_id_for

if TYPE_CHECKING:
    from netcore.net.membership import Membership

log = logging.getLogger("p2pai.reach")

TICK_S = 1.0
RETRY_MIN_S = 2.0
RETRY_MAX_S = 30.0
SHARE_INTERVAL_S = 5.0
"""At most this often, peers that mDNS does not cover are greeted again, and only when the
list we share changed since the last time (a new peer to tell them of)."""
SHARE_REFRESH_S = 60.0
"""...and at least this often, so their replies bring us the peers they learned."""
MAX_SHARED_SENT = 64
"""Entries in one ``hello``'s ``peers`` list."""
MAX_SHARED_TAKEN = 64
"""Entries read from one received list; the rest are ignored."""
MAX_SHARED_PEERS = 512
"""Peers learned by sharing that the table holds at once; past it new ones are ignored."""
SHARED_COOLDOWN_S = 60.0
"""A shared peer that expired without ever greeting us is not taken again for this long."""
SHARED_GRACE_S = 5.0
"""A shared peer is connected to only if mDNS (or its own hello) has not brought it within
this long: on a LAN, where multicast passes, sharing stays out of the way."""


@dataclass(slots=True)
class _StaticState:
    peer: StaticPeer
    next_try: float = 0.0
    backoff: float = RETRY_MIN_S
    present: bool = False
    attempts: int = 0
    greeted_once: bool = False
    last_error: str = ""


@dataclass(slots=True)
class ReachCounters:
    static_attempts: int = 0
    shared_learned: int = 0
    shared_ignored: int = 0
    rehellos: int = 0
    resolve_failures: int = 0
    extra: dict[str, int] = field(default_factory=dict)


class PeerReach:
    """Owned by a node's :class:`~netcore.net.membership.Membership`; all of it runs on the node's loop."""

    def __init__(self, membership: Membership) -> None:
        self.membership = membership
        cfg = membership.config
        self.share = cfg.share_peers
        self.static: list[_StaticState] = []
        for text in cfg.static_peers:
            # A bad one: Config.validate, at start, reports it in one line.
            with contextlib.suppress(ConfigError):
                self.static.append(_StaticState(parse_static_peer(text)))
        self.clock_offsets: dict[str, float] = {}
        """peer id -> their ``hello`` time minus ours, seconds (doctor's clock check)."""
        self.counters = ReachCounters()
        self._pending: dict[str, tuple[str, str, float, str]] = {}
        """peer id -> (key, endpoint, when learned, who shared it): waiting out SHARED_GRACE_S."""
        self._shared: dict[str, float] = {}
        """peer id -> when it was learned by sharing (until it greets us)."""
        self._cooldown: dict[str, float] = {}
        self._last_share = 0.0
        self._last_shared: frozenset[str] = frozenset()
        """Peer ids in the list of the last re-hello round."""

    # --- hello ---------------------------------------------------------------------------

    def hello_fields(self) -> dict[str, Any]:
        """The optional keys our ``hello`` adds: ``time`` always, ``peers`` when sharing."""
        fields: dict[str, Any] = {"time": time.time()}
        if self.share:
            fields["peers"] = self.shareable()
        return fields

    def shareable(self) -> list[dict[str, str]]:
        m = self.membership
        links = m.transport.links if m.transport is not None else {}
        found: list[dict[str, str]] = []
        for peer in m.peers:
            if not peer.greeted or peer.state.value != "alive":
                continue
            link = links.get(peer.peer_id)
            if link is None or not link.verified or link.via:
                continue  # (a relayed link's endpoint is our own 127.0.0.1 end of a circuit)  # only endpoints we completed a CURVE handshake with (netcore.net.dialer)
            found.append({"endpoint": link.endpoint, "key": peer.key})
            if len(found) >= MAX_SHARED_SENT:
                break
        return found

    def learn(self, peer_id: str, msg: dict[str, Any]) -> None:
        """A valid ``hello`` from ``peer_id``: note its clock, connect to the peers it shares."""
        stamp = msg.get("time")
        if isinstance(stamp, (int, float)) and not isinstance(stamp, bool) and math.isfinite(stamp):
            self.clock_offsets[peer_id] = float(stamp) - time.time()
            if len(self.clock_offsets) > 4096:
                self.clock_offsets.pop(next(iter(self.clock_offsets)))
        self._shared.pop(peer_id, None)
        entries = msg.get("peers")
        if not self.share or not isinstance(entries, list):
            return
        m = self.membership
        if m.stopping or m.identity is None:
            return
        now = time.monotonic()
        for entry in entries[:MAX_SHARED_TAKEN]:
            if not isinstance(entry, dict):
                self.counters.shared_ignored += 1
                continue
            endpoint, key = entry.get("endpoint"), entry.get("key")
            if not isinstance(endpoint, str) or not isinstance(key, str) or not is_z85_key(key):
                self.counters.shared_ignored += 1
                continue
            shared_id = peer_id_for(key)
            if shared_id == m.identity.peer_id or shared_id in m.peers:
                continue
            if now < self._cooldown.get(shared_id, 0.0) or shared_id in m.departed:
                continue
            if shared_id in self._pending:
                continue
            if len(self._shared) + len(self._pending) >= MAX_SHARED_PEERS:
                self.counters.shared_ignored += 1
                continue
            chosen = m.pick_endpoint([endpoint[:100]])
            if chosen is None:
                self.counters.shared_ignored += 1
                continue
            self._pending[shared_id] = (key, chosen, now, peer_id)
            log.debug("peer %s shared by %s at %s", shared_id, peer_id, chosen)

    def _take_pending(self, now: float) -> None:
        """Connect to the shared peers that nothing else brought within the grace period."""
        m = self.membership
        for shared_id, (key, endpoint, since, sharer) in list(self._pending.items()):
            if now - since < SHARED_GRACE_S:
                continue
            del self._pending[shared_id]
            if shared_id in m.peers or shared_id in m.departed or m.stopping:
                continue
            if sharer not in m.peers:
                continue  # the peer that vouched for it is gone (netcore.net.dialer)
            if now < self._cooldown.get(shared_id, 0.0):
                continue
            peer, _ = m.peers.upsert(shared_id, key, "shared")
            peer.endpoints = [endpoint]
            self._shared[shared_id] = now
            self.counters.shared_learned += 1
            m.connect(peer, sharer)

    # --- the loop ------------------------------------------------------------------------

    async def run(self) -> None:
        """Keep static peers connected and shared lists fresh; cancelled when the node stops."""
        own = self.membership.identity.peer_id if self.membership.identity else ""
        for state in self.static:
            if state.peer.peer_id == own:
                log.warning("--peer %s is this node's own key: ignored", state.peer.text)
        self.static = [s for s in self.static if s.peer.peer_id != own]
        while True:
            now = time.monotonic()
            for state in self.static:
                await self._keep_static(state, now)
            self._take_pending(now)
            self._expire_shared(now)
            if now - self._last_share >= SHARE_INTERVAL_S:
                self._maybe_rehello(now)
            await asyncio.sleep(TICK_S)

    async def _keep_static(self, state: _StaticState, now: float) -> None:
        m = self.membership
        peer = m.peers.get(state.peer.peer_id)
        if peer is not None:
            peer.source = "static"
            state.present = True
            if peer.greeted:
                state.greeted_once = True
            elif not peer.announced:
                # Not up yet: ZeroMQ keeps reconnecting on its own (100 ms to 2 s). Keep the
                # entry "connecting" instead of letting it turn evasive and expire each cycle.
                peer.last_seen = peer.last_ping = m.peers.clock()
            return
        if state.present:
            # It left (bye) or expired after being up: connect again, never forget it.
            state.present = False
            state.next_try = now + RETRY_MIN_S
            if state.greeted_once:
                log.info("static peer %s is gone: reconnecting", state.peer.endpoint)
        if now < state.next_try or m.stopping or m.transport is None:
            return
        state.next_try = now + state.backoff
        state.attempts += 1
        self.counters.static_attempts += 1
        endpoint = await self._resolve(state)
        if endpoint is None:
            state.backoff = min(RETRY_MAX_S, state.backoff * 2)
            return
        if m.stopping:
            return
        state.backoff = RETRY_MIN_S
        peer, _ = m.peers.upsert(state.peer.peer_id, state.peer.key, "static")
        peer.endpoints = [endpoint]
        state.present = True
        log.debug("static peer %s: connecting to %s", state.peer.peer_id, endpoint)
        m.connect(peer, STATIC)

    async def _resolve(self, state: _StaticState) -> str | None:
        host = state.peer.host
        try:
            ipaddress.ip_address(host)
            return state.peer.endpoint
        except ValueError:
            pass
        try:
            infos = await asyncio.get_running_loop().getaddrinfo(
                host, state.peer.port, family=socket.AF_INET, type=socket.SOCK_STREAM
            )
        except OSError as exc:
            self.counters.resolve_failures += 1
            state.last_error = f"cannot resolve {host}: {exc}"
            log.warning("static peer %s: %s", state.peer.text, state.last_error)
            return None
        address = str(infos[0][4][0]) if infos else ""
        return f"tcp://{address}:{state.peer.port}" if address else None

    def _expire_shared(self, now: float) -> None:
        for shared_id in list(self._shared):
            peer = self.membership.peers.get(shared_id)
            if peer is None:
                # Expired without ever greeting us: unreachable from here, do not retake it soon.
                del self._shared[shared_id]
                self._cooldown[shared_id] = now + SHARED_COOLDOWN_S
            elif peer.greeted:
                del self._shared[shared_id]
        for shared_id, until in list(self._cooldown.items()):
            if until < now:
                del self._cooldown[shared_id]

    def _maybe_rehello(self, now: float) -> None:
        """Re-greet when our shared list changed, or SHARE_REFRESH_S passed.

        Every hello carries up to MAX_SHARED_SENT peers: re-sending unchanged lists to every
        peer each few seconds was most of an idle node's CPU in a mesh of 50."""
        if not self.share:
            return
        shared = frozenset(entry["key"] for entry in self.shareable())
        if shared == self._last_shared and now - self._last_share < SHARE_REFRESH_S:
            return
        self._last_shared = shared
        self._last_share = now
        self._rehello()

    def _rehello(self) -> None:
        """Greet again the peers mDNS does not cover, so their replies bring new peers."""
        m = self.membership
        if not self.share or m.stopping or m.transport is None:
            return
        for peer in m.peers:
            if peer.greeted and not peer.in_mdns and peer.peer_id in m.transport.links:
                self.counters.rehellos += 1
                m.on_link(peer.peer_id, True)

    def status(self) -> list[dict[str, Any]]:
        """Static peers and how they are doing (for ``doctor`` and the logs)."""
        rows = []
        for state in self.static:
            peer = self.membership.peers.get(state.peer.peer_id)
            rows.append(
                {
                    "peer": state.peer.text,
                    "peer_id": state.peer.peer_id,
                    "connected": bool(peer and peer.greeted),
                    "attempts": state.attempts,
                    "error": state.last_error,
                }
            )
        return rows
