"""Hole punching for relayed peers (the DCUtR idea of libp2p): once a peer answers us through
a relay, both ends open a direct TCP connection at the same time, and our link to it moves
there; the relay stays the fallback (docs/reach.md, docs/protocol.md "Hole punching").

* **Initiator** (we dial a peer through a relay, and its ``hello`` says ``punch: 1``): bind a
  port, send ``punch {addr, token}`` on the end-to-end link (``addr``: our public address as
  our relay sees it, with that port), and on ``punch_ok {addr}`` connect to the peer's
  address from the bound port (:mod:`netcore.net.punch`). If the connection opens and shows
  the token, :meth:`RelayClient.adopt` carries our DEALER over it: reach ``punched``.
* **Responder** (a peer reaching us through a relay asks): connect first, then answer with
  our own address; a connection that shows the token is spliced to our ROUTER, which
  authenticates the peer as for any connection (CURVE, ZAP, the allowlist).

Every field of a ``punch`` is a claim: the responder punches only for a peer whose link
comes through a relay, to a public-looking address that is not ours, one punch per peer at
a time and one per :data:`ANSWER_COOLDOWN_S`, at most :data:`MAX_ANSWERING` at once. So a
hostile peer can make us send a few SYNs for :data:`WINDOW_S`, no more. A failed punch
backs off (:data:`BACKOFF_MIN_S` doubling to :data:`BACKOFF_MAX_S`); tasks keep flowing
through the relay meanwhile.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from typing import TYPE_CHECKING, Any

from netcore.net import punch
from netcore.net.peers import Peer
from netcore.net.splice import splice
from netcore.observe.events import PeerReach
from netcore.wire import protocol

if TYPE_CHECKING:
    from netcore.net.membership import Membership
    from netcore.net.relay_client import RelayClient

log = logging.getLogger("p2pai.relay")

WINDOW_S = 5.0
"""How long each side keeps trying to connect."""
ASK_TIMEOUT_S = 5.0
BACKOFF_MIN_S = 30.0
BACKOFF_MAX_S = 600.0
RETRY_AFTER_DROP_S = 5.0
"""A punched link that ended (the NAT forgot it, a peer restarted) is punched again this soon;
one that ended within :data:`STABLE_S` doubles it (up to :data:`BACKOFF_MAX_S`): a path that
opens and dies costs the tasks in flight a retry each time, so not every 5 s."""
STABLE_S = 60.0
MAX_ANSWERING = 4
ANSWER_COOLDOWN_S = 10.0
MAX_DIRECT_PER_KEY = 2
MAX_DIRECT = 64


def _release(counts: dict[str, int], key: str) -> int:
    """One fewer of ``key``; an entry at zero is removed. Returns what is left."""
    left = counts.get(key, 1) - 1
    if left > 0:
        counts[key] = left
    else:
        counts.pop(key, None)
    return max(0, left)


class Punching:
    """Owned by a node's :class:`~netcore.net.membership.Membership`; runs on the node's loop."""

    def __init__(self, membership: Membership) -> None:
        self.m = membership
        self.enabled = bool(membership.config.relays)
        self.counters = dict.fromkeys(
            ("attempts", "punched", "failed", "answered", "refused", "ended"), 0
        )
        self._next_try: dict[str, float] = {}
        self._backoff: dict[str, float] = {}
        self._trying: set[str] = set()
        self._waiting: dict[bytes, asyncio.Future[dict[str, Any]]] = {}
        self._answering: dict[str, int] = {}
        self._answered_at: dict[str, float] = {}
        self._direct_in: dict[str, int] = {}
        """Keys whose connection to our ROUTER is a punched one now, and how many."""
        self._said: dict[str, str] = {}
        self._punched_at: dict[str, float] = {}
        self._drops: dict[str, float] = {}
        """Peer id -> the wait before the next punch after its punched link ended soon."""
        self._tasks: set[asyncio.Task[Any]] = set()

    def hello_fields(self) -> dict[str, Any]:
        return {"punch": 1} if self.enabled else {}

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for fut in self._waiting.values():
            if not fut.done():
                fut.cancel()

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def own_address(self) -> tuple[str, int] | None:
        """Our public address as a relay with a reservation sees us."""
        for client in self.m.relaying.clients:
            if client.state == "reserved" and client.linked and client.observed is not None:
                return client.observed
        return None

    def _local_host(self) -> str | None:
        return self.m.addresses[0] if self.m.addresses else None

    def inbound(self, key: str) -> bool:
        """``key``'s connection to our ROUTER is a punched one now."""
        return key in self._direct_in

    def status(self) -> dict[str, Any]:
        return {
            **self.counters,
            "direct_in": sum(self._direct_in.values()),
            "address": punch.format_addr(*a) if (a := self.own_address()) else "",
        }

    def set_reach(self, peer: Peer | None, reach: str) -> None:
        if peer is None or peer.reach == reach:
            return
        peer.reach = reach
        if peer.announced:  # a new peer's peer_up carries its reach
            self.m.publish(PeerReach(peer_id=peer.peer_id, reach=reach, relay=peer.relay))
        self.m.changed()

    # --- initiator -----------------------------------------------------------------------

    def consider(self, peer: Peer) -> None:
        """Our DEALER to ``peer`` was greeted: punch if it goes through a relay and may."""
        m = self.m
        pid = peer.peer_id
        if not self.enabled or m.stopping or not peer.punches:
            return
        if pid in self._trying or time.monotonic() < self._next_try.get(pid, 0.0):
            return
        client = m.relaying.routes.get(pid)
        link = m.transport.links.get(pid) if m.transport is not None else None
        if client is None or link is None or link.via != client.address:
            return  # our DEALER to it does not go through a relay
        own = self.own_address()
        if client.carries_direct(peer.key) or own is None:
            return
        if punch.parse_addr(punch.format_addr(*own)) is None:
            return  # the relay sees us at loopback (all on one machine): nothing to punch
        self._trying.add(pid)
        self._spawn(self._initiate(peer, client))

    def tick(self) -> None:
        """Punch again where it is due: after a failure's backoff, or a punched link's end."""
        if not self.enabled or not self._next_try:
            return
        now = time.monotonic()
        for pid, due in list(self._next_try.items()):
            peer = self.m.peers.get(pid)
            if peer is None:
                if pid not in self._trying:
                    for known in (self._next_try, self._backoff, self._said, self._drops):
                        known.pop(pid, None)  # gone: nothing to punch to
                continue
            if now >= due and peer.greeted:
                self.consider(peer)

    async def _ask(self, peer_id: str, msg: dict[str, Any]) -> dict[str, Any]:
        rid = protocol.new_id()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = fut
        try:
            if not self.m.send_request(peer_id, {**msg, "id": rid}):
                raise punch.PunchFailed("the relayed link is not up")
            return await asyncio.wait_for(fut, ASK_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise punch.PunchFailed("the peer did not answer the punch request") from None
        finally:
            self._waiting.pop(rid, None)

    def on_reply(self, msg: dict[str, Any]) -> bool:
        """A ``punch_ok`` or ``error`` on a DEALER: True if it answers a punch of ours."""
        fut = (
            self._waiting.pop(msg.get("id", b""), None)
            if isinstance(msg.get("id"), bytes)
            else None
        )
        if fut is None:
            return False
        if not fut.done():
            fut.set_result(msg)
        return True

    async def _initiate(self, peer: Peer, client: RelayClient) -> None:
        pid = peer.peer_id
        self.counters["attempts"] += 1
        sock = None
        try:
            own, host = self.own_address(), self._local_host()
            if own is None or host is None:
                raise punch.PunchFailed("no public address known")
            sock = punch.bound_socket(host)
            port = sock.getsockname()[1]
            token = secrets.token_bytes(punch.TOKEN_LEN)
            reply = await self._ask(
                pid, {"t": "punch", "addr": punch.format_addr(own[0], port), "token": token}
            )
            if reply["t"] == "error":
                raise punch.PunchFailed(f"the peer declined: {reply['code']}: {reply['message']}")
            remote = punch.parse_addr(reply["addr"])
            if remote is None or (":" in remote[0]) != (":" in host):
                raise punch.PunchFailed(f"the peer named an unusable address {reply['addr']!r}")
            connected = await punch.simultaneous_open(sock, remote, WINDOW_S)
            sock = None
            stream = await punch.prove(connected, token, initiator=True)
            link = self.m.transport.links.get(pid) if self.m.transport is not None else None
            if self.m.stopping or self.m.relaying.routes.get(pid) is not client:
                stream[1].close()
                return
            if link is None or link.via != client.address:
                stream[1].close()
                raise punch.PunchFailed("our link moved off the relay meanwhile")
            self.m.planned_cut[pid] = time.monotonic()
            if not client.adopt(peer.key, stream, lambda: self._direct_ended(pid)):
                self.m.planned_cut.pop(pid, None)
                stream[1].close()
                raise punch.PunchFailed("our link is not on the relayed route now")
        except (punch.PunchFailed, OSError) as exc:
            self.counters["failed"] += 1
            backoff = min(BACKOFF_MAX_S, self._backoff.get(pid, BACKOFF_MIN_S / 2) * 2)
            self._backoff[pid] = backoff
            self._next_try[pid] = time.monotonic() + backoff
            if self._said.get(pid) != str(exc):
                self._said[pid] = str(exc)
                log.info(
                    "peer %s (%s): no direct path (%s); staying relayed, next try in %.0fs",
                    pid, peer.name, exc, backoff,
                )  # fmt: skip
            return
        finally:
            punch.close_quietly(sock)
            self._trying.discard(pid)
        self.counters["punched"] += 1
        peer.punched_to = punch.format_addr(*remote)
        self._backoff.pop(pid, None)
        self._said.pop(pid, None)
        self._next_try.pop(pid, None)
        self._punched_at[pid] = time.monotonic()
        log.info(
            "peer %s (%s): hole punched, direct to %s (relay %s stays the fallback)",
            pid, peer.name, punch.format_addr(*remote), client.relay.endpoint,
        )  # fmt: skip
        self.m.relaying.update_reach(peer)

    def _direct_ended(self, peer_id: str) -> None:
        """Our punched link to ``peer_id`` closed: back through the relay, punch again soon
        (later each time it ends soon after it opened)."""
        self.counters["ended"] += 1
        now = time.monotonic()
        lasted = now - self._punched_at.pop(peer_id, now)
        retry = RETRY_AFTER_DROP_S
        if lasted < STABLE_S:
            retry = min(BACKOFF_MAX_S, self._drops.get(peer_id, RETRY_AFTER_DROP_S / 2) * 2)
            self._drops[peer_id] = retry
        else:
            self._drops.pop(peer_id, None)
        self._next_try[peer_id] = now + retry
        peer = self.m.peers.get(peer_id)
        if peer is not None:
            log.info(
                "peer %s (%s): direct path closed after %.0fs; relayed again, next punch in %.0fs",
                peer_id, peer.name, lasted, retry,
            )  # fmt: skip
        self.m.relaying.route_ended(peer_id)

    # --- responder -----------------------------------------------------------------------

    def on_request(self, key: str, peer_id: str, msg: dict[str, Any]) -> dict[str, Any]:
        """The reply to a valid ``punch`` from the greeted ``key``; punching starts first."""
        req_id = msg["id"]
        refusal = self._refusal(key, msg)
        if refusal is not None:
            self.counters["refused"] += 1
            return protocol.error(refusal[0], refusal[1], req_id)
        own, host = self.own_address(), self._local_host()
        remote = punch.parse_addr(msg["addr"])
        assert own is not None and host is not None and remote is not None  # _refusal checked
        try:
            sock = punch.bound_socket(host)
            punch.start_connect(sock, remote)  # our SYN leaves before our answer does
        except OSError as exc:
            self.counters["refused"] += 1
            return protocol.error("internal", f"cannot punch: {exc.strerror or exc}", req_id)
        self.counters["answered"] += 1
        self._answering[key] = self._answering.get(key, 0) + 1
        self._answered_at[key] = time.monotonic()
        if len(self._answered_at) > 4096:
            self._answered_at.pop(next(iter(self._answered_at)))
        self._spawn(self._answer(sock, remote, msg["token"], key, peer_id))
        return {
            "t": "punch_ok",
            "id": req_id,
            "addr": punch.format_addr(own[0], sock.getsockname()[1]),
        }

    def _refusal(self, key: str, msg: dict[str, Any]) -> tuple[str, str] | None:
        if not self.enabled:
            return "unsupported", "hole punching is off on this node (no relay configured)"
        if not self.m.relaying.inbound(key):
            return "bad_request", "punch is for a link through a relay"
        if self.own_address() is None or self._local_host() is None:
            return "unsupported", "this node knows no public address (its relays do not say)"
        remote = punch.parse_addr(msg["addr"])
        host = self._local_host() or ""
        if remote is None or remote[0] in self.m.addresses or remote == self.own_address():
            return "bad_request", "addr must be another host's public host:port"
        if (":" in remote[0]) != (":" in host):
            return "bad_request", "addr is not of our address family"
        now = time.monotonic()
        if (
            self._answering.get(key)
            or sum(self._answering.values()) >= MAX_ANSWERING
            or now - self._answered_at.get(key, -1e9) < ANSWER_COOLDOWN_S
            or self._direct_in.get(key, 0) >= MAX_DIRECT_PER_KEY
            or sum(self._direct_in.values()) >= MAX_DIRECT
        ):
            return "overloaded", "a punch for this peer ran just now, or too many run: later"
        return None

    async def _answer(
        self, sock: Any, remote: tuple[str, int], token: bytes, key: str, peer_id: str
    ) -> None:
        try:
            try:
                connected = await punch.simultaneous_open(sock, remote, WINDOW_S, started=True)
                stream = await punch.prove(connected, token, initiator=False)
            except (punch.PunchFailed, OSError) as exc:
                self.counters["failed"] += 1
                log.debug("punch for %s to %s failed: %s", peer_id, punch.format_addr(*remote), exc)
                return
        finally:
            _release(self._answering, key)
        endpoint = (self.m.endpoints[0] if self.m.endpoints else "").removeprefix("tcp://")
        host, _, port = endpoint.rpartition(":")
        try:
            local = await asyncio.open_connection(host, int(port))
        except (OSError, ValueError):
            stream[1].close()
            return
        self._direct_in[key] = self._direct_in.get(key, 0) + 1
        self.counters["punched"] += 1
        known = self.m.peers.get(peer_id)
        if known is not None:
            known.punched_to = punch.format_addr(*remote)
        log.info("peer %s: hole punched, direct from %s", peer_id, punch.format_addr(*remote))
        try:
            await splice(stream, local)
        finally:
            if not _release(self._direct_in, key):
                self.m.relaying.route_ended(peer_id)  # our side of it: reach, its relay
