"""Trust, composed for the node: who may connect, who may work for us, and what we saw.

:class:`TrustManager` is the one object the node calls for trust decisions:

* the **trust policy** (``open`` or ``allowlist``, :mod:`netcore.trust.keys`) for the ZAP handler,
  for mDNS sightings and for every inbound frame (a key revoked while connected is dropped);
* the **connection guard** (:mod:`netcore.net.guard`): each ROUTER connection belongs to the key that
  authenticated its frames; a task's reply goes out only while the connection it arrived on
  is still that key's, so a connection that takes over another's routing id is served only
  as itself and never gets the other's replies (such takeovers are counted);
* **clone detection** (:mod:`netcore.net.clones`), including the third-party view: two live
  connections authenticated with one key that advertise different endpoints;
* **reputation** (:mod:`netcore.trust.reputation`, persisted by :mod:`netcore.trust.store`): the
  scheduler reports every attempt, the verifier every vote and spot check; quarantined
  peers are never chosen and the rest are weighed by score. A quarantine ends after its
  cool-down (``Config.quarantine_cooldown``, doubling per offence), evidence decays with
  ``Config.reputation_half_life``; :meth:`TrustManager.on_probation` says who is still to
  prove itself, and :meth:`TrustManager.restore_votes` gives back votes lost to a majority
  later shown wrong.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from netcore.net.clones import CloneDetector
from netcore.net.guard import ConnectionGuard
from netcore.net.identity import Identity
from netcore.net.peers import Peer, PeerState, PeerTable
from netcore.net.transport import TrustPolicy
from netcore.observe.events import Event, NodeError, PeerQuarantine
from netcore.trust.keys import (
    TrustError,
    TrustList,
    base_dir_of,
    changed_on_disk,
    local_keys,
    trust_path,
)
from netcore.trust.reputation import Change, Policy, Reputation, cost_factor
from netcore.trust.store import Store, StoreError, db_path
from netcore.trust.sync import sync
from netcore.wire.addresses import peer_id_for

log = logging.getLogger("p2pai.trust")

TICK_S = 1.0
FLUSH_EVERY_S = 2.0
"""Observations of tasks and votes are saved within this long."""
UPTIME_FLUSH_S = 30.0
"""Uptime alone is saved (and other processes' totals read back) this often: it changes for
every peer every second, and a write plus a read of every row each 2 s cost more than
anything else an idle node did."""
MAX_TRACKED = 4096
WARN_EVERY_S = 30.0

ATTEMPT_COUNTERS = {
    "ok": "tasks_ok",
    "failed": "failures",
    "unreachable": "failures",
    "timeout": "timeouts",
    "corrupt": "corrupt",
}
"""What the scheduler reports of an attempt -> the reputation counter it adds to."""

__all__ = ["TrustError", "TrustManager"]


# --- the manager -----------------------------------------------------------------------------


class TrustManager:
    """Trust list, connection guard, clone detector and reputation of one node."""

    def __init__(
        self,
        config: Any,
        peers: PeerTable,
        publish: Callable[[Event], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.mode: str = config.trust
        self.peers = peers
        self.publish = publish
        self.clock = clock
        self.base_dir = base_dir_of(config)
        self.trust_list = TrustList(trust_path(self.base_dir))
        self.allowed: set[str] = set()
        self.policy = TrustPolicy(self.mode)
        self.policy.allowed = self.allowed  # one set: updates reach the ZAP handler at once
        self.reputation = Reputation(
            Policy(
                cooldown_s=float(getattr(config, "quarantine_cooldown", 600.0)),
                half_life_s=float(getattr(config, "reputation_half_life", 86400.0)),
            )
        )
        self.own: set[str] = set()
        """This machine's identities: never on probation."""
        self.store: Store | None = None
        self.guard = ConnectionGuard()
        self.clones: CloneDetector | None = None
        self.identity: Identity | None = None
        self.counters: dict[str, int] = {
            "untrusted_mdns": 0,
            "untrusted_frames": 0,
            "untrusted_dials": 0,
            "refused_by_peers": 0,
            "self_hellos": 0,
            "clone_suspects": 0,
            "store_errors": 0,
        }
        self._drop_peer: Callable[[str, str], None] | None = None
        self._ids: dict[str, str] = {}
        self._warned: dict[str, float] = {}
        self._last_flush = 0.0
        self._last_tick = 0.0

    # --- lifecycle -------------------------------------------------------------------------

    def open(self, identity: Identity) -> None:
        """Load the trust list and the store; raise :class:`TrustError` with the fix."""
        self.identity = identity
        try:
            self.trust_list = TrustList.load(trust_path(self.base_dir))
        except TrustError as exc:
            if self.mode == "allowlist":
                raise
            log.warning("%s (ignored: this node runs with --trust open)", exc)
        self._refresh_allowed()
        try:
            self.store = Store.open(db_path(self.base_dir))
            changes = self.reputation.load(self.store.load_reputation())
        except StoreError as exc:
            raise TrustError(str(exc)) from None
        except sqlite3.Error as exc:
            raise TrustError(f"the store {db_path(self.base_dir)} cannot be read: {exc}") from None
        for change in changes:
            if change.reason:
                log.info(
                    "peer %s (%s) is in quarantine: %s",
                    change.record.peer_id,
                    change.record.name or "?",
                    change.reason,
                )
        self.clones = CloneDetector(
            identity, self.config.data_dir, tuple(self.config.caps), self._report_clone
        )
        self._last_flush = self._last_tick = self.clock()

    def attach(
        self,
        transport: Any,
        endpoints: list[str],
        hello: Callable[[bytes], Mapping[str, Any]],
        drop_peer: Callable[[str, str], None],
    ) -> None:
        """Hook into the started transport (discovery calls :meth:`on_mdns_self`)."""
        self._drop_peer = drop_peer
        transport.on_refused = self._refused_by
        if transport.router is not None:
            self.guard.attach(transport.router)
            transport.set_router_batch_hooks(self.guard.begin_batch, self.guard.end_batch)
        if self.clones is not None:
            self.clones.attach(transport.ctx, endpoints, hello)

    async def close(self) -> None:
        if self.clones is not None:
            await self.clones.close()
        self.guard.close()
        if self.store is not None:
            self.flush()
            self.store.close()
            self.store = None

    async def run(self) -> None:
        """Once a second: uptime, peers' scores, the trust list if it changed; a flush every 2 s."""
        while True:
            await asyncio.sleep(TICK_S)
            try:
                self.tick()
            except Exception:  # never let bookkeeping take the node down
                log.exception("trust bookkeeping failed")

    def tick(self) -> None:
        now = self.clock()
        elapsed = max(0.0, min(10.0, now - self._last_tick))
        self._last_tick = now
        for peer in self.peers:
            if peer.greeted and peer.state is PeerState.ALIVE and peer.caps:
                self.reputation.add_uptime(peer.key, peer.peer_id, peer.name, elapsed)
        for change in self.reputation.refresh():
            self._apply(change)
        if changed_on_disk(self.trust_list):
            self.reload_trust()
        since = now - self._last_flush
        if since >= UPTIME_FLUSH_S or (
            since >= FLUSH_EVERY_S and self.reputation.has_pending_counts()
        ):
            self.flush()
        self.sync_peers()

    # --- the trust policy ------------------------------------------------------------------

    def _refresh_allowed(self) -> None:
        own = local_keys(self.base_dir)
        if self.identity is not None:
            own.add(self.identity.public_text)
        self.own = own
        allowed = self.trust_list.keys() | own
        # Keys trusted for this run only (--trust-key: the console's --local peers).
        allowed.update(getattr(self.config, "trusted_keys", ()))
        # The ZAP policy holds this very set: update it in place.
        self.allowed.clear()
        self.allowed.update(allowed)

    def reload_trust(self) -> None:
        """Re-read the trust list after ``p2pai keys trust/revoke``; drop revoked peers."""
        try:
            self.trust_list = TrustList.load(self.trust_list.path)
        except TrustError as exc:
            # Keep the list we had: a half-written or broken file must not open the door.
            self._warn("trust-list", f"trust list not reloaded: {exc}")
            self.trust_list.mtime_ns = -1  # retry at the next tick
            return
        self._refresh_allowed()
        log.info("trust list reloaded: %d key(s)", len(self.trust_list.entries))
        if self.mode != "allowlist":
            return
        for peer in self.peers:
            if peer.key not in self.allowed and self._drop_peer is not None:
                log.warning("peer %s (%s) is no longer trusted: dropped", peer.peer_id, peer.name)
                self._drop_peer(peer.peer_id, "untrusted")

    def admits(self, key: str) -> bool:
        return self.mode != "allowlist" or key in self.allowed

    def trusted(self, key: str) -> bool:
        """In the trust list (or one of our own keys), whatever the mode."""
        return key in self.allowed

    def on_discovered(self, key: str) -> bool:
        """An mDNS sighting: False when the policy says to ignore that peer."""
        if self.admits(key):
            return True
        self.counters["untrusted_mdns"] += 1
        return False

    def may_dial(self, peer: Peer) -> bool:
        """Connect to this peer (found by mDNS, shared, static or by its hello)?"""
        if self.admits(peer.key):
            return True
        self.counters["untrusted_dials"] += 1
        if not peer.greeted and not peer.announced:
            self.peers.remove(peer.peer_id)  # shared or static: never in our table
        self._warn(
            f"dial:{peer.peer_id}",
            f"not connecting to {peer.peer_id} ({peer.source}): its key is not trusted "
            "(--trust allowlist; see `p2pai keys trust`)",
        )
        return False

    def on_frame(self, rid: bytes, key: str, frames: list[Any]) -> bool:
        """Every ROUTER frame: track its connection's owner; False to drop it."""
        if self.guard.seen(rid, key, frames[0]) and self._warn(
            "routing-id", "a connection reused another peer's routing id: served only as itself"
        ):
            log.debug("routing id %r now belongs to %s", rid[:16], self._peer_id(key))
        if self.mode == "allowlist" and key not in self.allowed:
            self.counters["untrusted_frames"] += 1
            return False
        return True

    def deliverable(self, rid: bytes, peer_id: str) -> bool:
        """May the reply to ``peer_id``'s request go out on ``rid``?"""
        owner = self.guard.owner(rid)
        if owner is not None and self._peer_id(owner) == peer_id:
            return True
        self.guard.withheld += 1
        return False

    def check_hello(self, rid: bytes, key: str, msg: Mapping[str, Any]) -> str | None:
        """An inbound ``hello``: an error message when it must be refused (it is us)."""
        endpoints = [e for e in msg.get("endpoints", []) if isinstance(e, str)]
        caps = [c for c in msg.get("caps", []) if isinstance(c, str)]
        if self.identity is not None and key == self.identity.public_text:
            self.counters["self_hellos"] += 1
            if self.clones is not None:
                self.clones.on_hello_from_self(endpoints, caps)
            return "this hello is authenticated with this node's own key: two nodes share one identity (a copied data dir)"
        others = self.guard.note_hello(rid, key, endpoints)
        if others and caps:
            self.counters["clone_suspects"] += 1
            peer_id = self._peer_id(key)
            self._warn(
                f"clone:{peer_id}",
                f"peer {peer_id} is running twice (at {', '.join(others[:2])} and "
                f"{', '.join(endpoints[:2])}): a copied data dir on those machines; its owner "
                "must give one of them a new identity",
            )
        return None

    def _refused_by(self, peer_id: str) -> None:
        """A peer's ZAP handler refused our key: it trusts only keys on its list."""
        self.counters["refused_by_peers"] += 1
        peer = self.peers.get(peer_id)
        # Refused before any hello: the unauthenticated mDNS name is all there is, and good
        # enough for a message (netcore.net.hints).
        shown = (peer.name or peer.mdns_name) if peer is not None else ""
        name = f" ({shown})" if shown else ""
        self._warn(
            f"refused:{peer_id}",
            f"peer {peer_id}{name} refused our key: it runs --trust allowlist; to use it, its "
            f"owner runs `p2pai keys trust` with the key `p2pai keys show` prints here",
        )

    def on_mdns_self(self, found: Any) -> None:
        """Discovery saw a record with our own ``peer_id``."""
        if self.clones is not None:
            self.clones.on_mdns_self(list(found.endpoints), list(found.caps))

    def _report_clone(self, message: str) -> None:
        log.error("%s", message)
        self.publish(NodeError(message=message))

    # --- reputation ------------------------------------------------------------------------

    def gate(self, peer: Peer) -> float | None:
        """For the scheduler: ``None`` = never use this worker, else its cost multiplier."""
        if self.mode == "allowlist" and peer.key not in self.allowed:
            return None
        record = self.reputation.records.get(peer.key)  # (called per candidate per choice)
        if record is None:
            return cost_factor(self.reputation.prior)
        return None if record.quarantined else cost_factor(record.score)

    def observe(self, peer: Peer, what: str) -> None:
        """The scheduler's report of one attempt on ``peer``."""
        counter = ATTEMPT_COUNTERS.get(what)
        if counter is not None:
            self._apply(self.reputation.note(peer.key, peer.peer_id, peer.name, counter))

    def record(self, peer_id: str, counter: str) -> None:
        """A vote or spot check about ``peer_id`` (``votes_won``, ``spot_failed``, ...)."""
        peer = self.peers.get(peer_id)
        key = peer.key if peer is not None else self._key_of(peer_id)
        if key is None:
            return
        name = peer.name if peer is not None else ""
        self._apply(self.reputation.note(key, peer_id, name, counter))

    def on_probation(self, peer_id: str) -> bool:
        """True until ``peer_id`` has passed 3 blind checks (``spot_passed``) since it was new
        or last left quarantine; never for this machine's own identities nor, with ``--trust
        allowlist``, for keys on the trust list. An unknown peer is on probation."""
        peer = self.peers.get(peer_id)
        key = peer.key if peer is not None else self._key_of(peer_id)
        if key is None:
            known = (k for k in self.allowed if peer_id_for(k) == peer_id)  # own and listed
            key = next(known, None)
        return True if key is None else self.key_on_probation(key)

    def key_on_probation(self, key: str) -> bool:
        if key in self.own or (self.mode == "allowlist" and key in self.allowed):
            return False
        return self.reputation.on_probation(key)

    def peer_on_probation(self, peer: Peer) -> bool:
        """For the scheduler (netcore.tasks.share): a bounded share of the work."""
        return self.key_on_probation(peer.key)

    def restore_votes(self, peer_ids: Iterable[str], count: int = 1) -> None:
        """Votes these peers lost went to a majority later shown wrong (a blind check by the
        requester disagreed with it): ``count`` of each one's lost votes become votes won,
        and a quarantine that no longer holds is lifted with its offence taken back."""
        for peer_id in peer_ids:
            peer = self.peers.get(peer_id)
            key = peer.key if peer is not None else self._key_of(peer_id)
            if key is None:
                continue
            name = peer.name if peer is not None else ""
            self._apply(self.reputation.restore_votes(key, peer_id, name, count))

    def score(self, peer_id: str) -> float | None:
        key = self._key_of(peer_id)
        return self.reputation.score(key) if key is not None else None

    def quarantined(self, peer_id: str) -> str:
        key = self._key_of(peer_id)
        return self.reputation.quarantined(key) if key is not None else ""

    def _apply(self, change: Change | None) -> None:
        if change is None:
            return
        record = change.record
        peer = self.peers.get(record.peer_id)
        if peer is not None:
            peer.quarantine = change.reason
            peer.score = self.reputation.score(record.key)
        if change.reason:
            until = record.quarantined_until
            log.warning(
                "peer %s (%s) quarantined (offence %d, for %s): %s",
                record.peer_id, record.name or "?", record.offences,
                f"{until - time.time():.0f}s" if until is not None else "?", change.reason,
            )  # fmt: skip
        else:
            log.info(
                "peer %s (%s) is out of quarantine, on probation again",
                record.peer_id, record.name or "?",
            )  # fmt: skip
        self.publish(
            PeerQuarantine(
                peer_id=record.peer_id,
                name=record.name,
                quarantined=bool(change.reason),
                reason=change.reason,
                score=round(self.reputation.score(record.key), 3),
            )
        )
        if record.unsaved:
            self.flush()  # a restart right now must still know

    def sync_peers(self) -> None:
        for peer in self.peers:
            record = self.reputation.get(peer.key)
            peer.score = self.reputation.score(peer.key)
            peer.quarantine = record.quarantined if record is not None else ""
            if peer.key not in self._ids:
                self._remember(peer.key, peer.peer_id)

    def flush(self) -> None:
        """Write pending observations, then take the totals (other processes' too)."""
        store = self.store
        if store is None:
            return
        self._last_flush = self.clock()
        try:
            changes = sync(store, self.reputation)
        except sqlite3.Error as exc:  # busy (another process) or broken: retry later
            self.counters["store_errors"] += 1
            self._warn("store", f"reputation not saved yet ({exc}); retrying")
            return
        for change in changes:
            self._apply(change)

    # --- helpers ---------------------------------------------------------------------------

    def _remember(self, key: str, peer_id: str) -> None:
        if len(self._ids) > MAX_TRACKED:
            self._ids.clear()
        self._ids[key] = peer_id

    def _peer_id(self, key: str) -> str:
        peer_id = self._ids.get(key)
        if peer_id is None:
            peer_id = peer_id_for(key)
            self._remember(key, peer_id)
        return peer_id

    def _key_of(self, peer_id: str) -> str | None:
        peer = self.peers.get(peer_id)
        if peer is not None:
            return peer.key
        for key, known in self._ids.items():
            if known == peer_id:
                return key
        for key, record in self.reputation.records.items():
            if record.peer_id == peer_id:
                return key
        return None

    def _warn(self, topic: str, message: str) -> bool:
        now = self.clock()
        if now - self._warned.get(topic, -1e9) < WARN_EVERY_S:
            return False
        if len(self._warned) >= MAX_TRACKED:  # topics name peers: a flood must not grow it
            self._warned.clear()
        self._warned[topic] = now
        log.warning("%s", message)
        return True

    def stats(self) -> dict[str, int]:
        """Counters for tests, metrics and ``doctor``."""
        out = dict(self.counters)
        out["zap_refused"] = self.policy.refused
        out["routing_id_reused"] = self.guard.reused
        out["replies_withheld"] = self.guard.withheld
        if self.clones is not None:
            out["clones_reported"] = self.clones.clones_reported
            out["forged_self_records"] = self.clones.forged_records
        out["quarantined"] = sum(1 for r in self.reputation.records.values() if r.quarantined)
        return out
