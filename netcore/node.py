"""The node: composes identity, discovery, transport, peer table, worker and scheduler.

Use it as ``async with Node(config) as node:``. It publishes :mod:`netcore.observe.events` to every
subscriber of :meth:`Node.events` and takes work through :meth:`Node.submit`. Everything
runs on one asyncio loop; inference runs in the worker's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ipaddress
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Collection, Mapping
from typing import Any

import numpy as np
import zmq

from netcore.config.settings import Config, ConfigError
from netcore.models.fetch import ModelFetcher
from netcore.models.plugins import load_registry
from netcore.models.providers import select as select_providers
from netcore.models.registry import ModelSpec
from netcore.net.discovery import DiscoveredPeer, Discovery
from netcore.net.identity import Identity, IdentityError, load_or_create, peer_id_for
from netcore.net.peers import Peer, PeerState, PeerTable, Transition
from netcore.net.reach import PeerReach
from netcore.net.recall import FlapDamper, Recall
from netcore.net.transport import Transport, TransportError
from netcore.observe.events import (
    Event,
    NodeError,
    NodeReady,
    PeerAlive,
    PeerDown,
    PeerEvasive,
    PeerUp,
    PeerUpdated,
    TaskServed,
)
from netcore.tasks.scheduler import Scheduler, TaskOutcome
from netcore.tasks.worker import TaskError, Worker
from netcore.trust.manager import TrustError, TrustManager
from netcore.wire import protocol
from netcore.wire.protocol import ProtocolError

log = logging.getLogger("p2pai.node")

TICK_S = 0.25
WARM_UP_DELAY_S = 0.3
CONNECT_BACK_DELAY_S = 0.05
MAX_CONNECTIONS_TRACKED = 4096
EVENT_QUEUE = 10_000
REJOIN_QUIET_S = 2.0
"""After a ``bye`` or goodbye, mDNS sightings of that peer are ignored this long (no ghosts)."""


class NodeStartError(Exception):
    """The node cannot start; the message is one line that says what to do."""


@functools.lru_cache(maxsize=64)
def _subnets(
    addresses: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The subnets we serve on (/8 for loopback, /24 otherwise), to prefer a peer's endpoint
    that is on one of them."""
    return tuple(
        ipaddress.ip_network(f"{addr}/{8 if addr.startswith('127.') else 24}", strict=False)
        for addr in addresses
    )


def _endpoint_ip(endpoint: str) -> ipaddress.IPv4Address | None:
    """The address of a ``tcp://<IPv4>:<1-65535>`` endpoint, else None.

    Anything else from a peer's hello would make ZeroMQ's connect() raise EINVAL inside the
    inbound handler. Such an endpoint has at most 27 characters: longer strings are refused
    before the memo, so a peer cannot fill it with large ones."""
    if len(endpoint) > 32:
        return None
    return _parse_endpoint(endpoint)


@functools.lru_cache(maxsize=4096)
def _parse_endpoint(endpoint: str) -> ipaddress.IPv4Address | None:
    """(memoised: every hello and shared peer list names endpoints, most of them known)"""
    if not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version != 4 or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return None
    assert isinstance(ip, ipaddress.IPv4Address)
    return ip


class Subscription:
    """An async iterator over the node's events, registered when created (so none is missed)."""

    def __init__(self, node: Node, kinds: Collection[str] | None = None) -> None:
        self._node = node
        self.kinds = None if kinds is None else frozenset(kinds)
        """The ``EVENT`` names queued; None for all. Each queued event wakes the reader, so a
        reader that drops ``peer_updated`` (one per pong) should not ask for it."""
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue(EVENT_QUEUE)
        node._subscribers.append(self)

    def __aiter__(self) -> AsyncIterator[Event]:
        return self

    async def __anext__(self) -> Event:
        item = await self.queue.get()
        if item is None:
            raise StopAsyncIteration
        return item

    def close(self) -> None:
        if self in self._node._subscribers:
            self._node._subscribers.remove(self)
        with contextlib.suppress(asyncio.QueueFull):
            self.queue.put_nowait(None)


class Node:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.identity: Identity | None = None
        self.peers = PeerTable(config.evasive_after, config.expired_after, config.ping_interval)
        self.registry = load_registry(config)
        self.worker = Worker(
            self.registry, config.capacity, config.queue_limit, config.max_input_bytes
        )
        self.fetcher = ModelFetcher(
            self.registry,
            config.data_dir / "models",
            self.peers,
            self._send_request,
            max_bytes=config.max_model_bytes,
            on_stored=self._readvertise,
        )
        self.worker.fetch = self.fetcher.fetch
        self.transport: Transport | None = None
        self.discovery: Discovery | None = None
        self.scheduler: Scheduler | None = None
        self.endpoints: list[str] = []
        self.addresses: list[str] = []
        self._subscribers: list[Subscription] = []
        self._greeted: OrderedDict[bytes, str] = OrderedDict()
        """ROUTER connections (routing id) that sent a valid ``hello``, with their key."""
        self._wrong_net: set[bytes] = set()
        self._hello_ids: dict[bytes, str] = {}
        self._greet_early: set[str] = set()
        """Peers whose new DEALER has a hello queued from connect time (_connect)."""
        self._connect_back: set[str] = set()
        """Peers that greeted us, to dial back together (_connect_soon)."""
        self._connect_back_handle: asyncio.TimerHandle | None = None
        self._key_ids: dict[str, str] = {}
        self._departed: dict[str, float] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._pings: dict[bytes, asyncio.Future[float]] = {}
        self._unstarted: dict[tuple[str, bytes], bool] = {}
        """Tasks received whose coroutine has not run yet (the worker has no ticket for them
        to cancel), by (requester, id): True once a cancel came for one."""
        self._changed = asyncio.Event()
        self._started = False
        self._stopping = False
        self.started_at = 0.0
        self.counters: dict[str, int] = {
            "protocol_errors": 0,
            "dropped": 0,
            "tasks_served": 0,
            "tasks_refused": 0,
            "events_dropped": 0,
            "pings_sent": 0,
            "pings_received": 0,
        }
        self.errors_sent: dict[str, int] = {}
        """``error`` replies this node sent, by code (metrics)."""
        self.errors_received: dict[str, int] = {}
        """``error`` replies peers sent us, by code (unknown codes count as ``other``)."""
        self.observers: list[Callable[[Event], None]] = []
        """Called with each published event, synchronously (metrics); none by default."""
        self.metrics: Any = None
        """The ``/metrics`` server (:mod:`netcore.observe.metrics`) when ``metrics_port`` is set."""
        self.recall = Recall()
        """Expired peers probed so that they return when their link heals (netcore.net.recall)."""
        self.damper = FlapDamper()
        self.peers.resting = self.damper.suppressed
        self.reach = PeerReach(self)
        self.trust = TrustManager(config, self.peers, self.publish)
        """Trust policy, connection guard, clone detection, reputation (:mod:`netcore.trust.manager`)."""
        """Static peers and peer sharing (:mod:`netcore.net.reach`)."""

    # --- public API ----------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        assert self.identity is not None, "node not started"
        return self.identity.peer_id

    @property
    def endpoint(self) -> str:
        return self.endpoints[0] if self.endpoints else ""

    def events(self, kinds: Collection[str] | None = None) -> Subscription:
        """Subscribe to events (``kinds``: only these ``EVENT`` names; None for all)."""
        return Subscription(self, kinds)

    async def __aenter__(self) -> Node:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def submit(
        self,
        model: str,
        inputs: Mapping[str, np.ndarray] | np.ndarray,
        **options: Any,
    ) -> TaskOutcome:
        """Run one inference task on a peer (see :meth:`Scheduler.submit` for options).

        A bare array is sent as the model's single input.
        """
        assert self.scheduler is not None, "node not started"
        if isinstance(inputs, np.ndarray):
            spec = self.registry.find(model, options.get("sha256"))
            name = spec.inputs[0].name if spec else self._remote_input_name(model)
            inputs = {name: inputs}
        return await self.scheduler.submit(model, inputs, **options)

    def _remote_input_name(self, model: str) -> str:
        for peer in self.peers:
            for entry in peer.models:
                if entry.get("name") == model and entry.get("inputs"):
                    return str(entry["inputs"][0]["name"])
        return "input"

    async def wait_for_peers(
        self, count: int, timeout: float, kind: str | None = "infer", model: str | None = None
    ) -> list[Peer]:
        """Wait until ``count`` greeted peers (workers of ``kind``, holding ``model``) are up."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.usable_peers(kind, model)
            if len(found) >= count:
                return found
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return found
            self._changed.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._changed.wait(), remaining)

    async def ping(self, peer_id: str, timeout: float = 1.0) -> float | None:
        """Round trip to ``peer_id`` in seconds, or ``None`` if it did not answer in time."""
        rid = protocol.new_id()
        fut: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self._pings[rid] = fut
        sent_at = time.monotonic()
        try:
            if not self._send_request(peer_id, {"t": "ping", "id": rid, "ts": sent_at}):
                return None
            return await asyncio.wait_for(fut, timeout)
        except asyncio.TimeoutError:
            return None
        finally:
            self._pings.pop(rid, None)

    def usable_peers(self, kind: str | None = "infer", model: str | None = None) -> list[Peer]:
        found = [p for p in self.peers if p.greeted and p.state is PeerState.ALIVE]
        if kind is not None:
            found = [p for p in found if kind in p.caps]
        if model is not None:
            found = [p for p in found if p.has_model(model)]
        return found

    # --- lifecycle -----------------------------------------------------------------------

    async def start(self) -> None:
        cfg = self.config
        try:
            cfg.validate()
            self.registry.use_providers(select_providers(cfg.provider))
            self.identity = load_or_create(cfg.data_dir)
            self.trust.open(self.identity)
        except (ConfigError, IdentityError, TrustError) as exc:
            raise NodeStartError(str(exc)) from None
        self.addresses = cfg.serving_addresses()
        self.scheduler = Scheduler(
            self.peers,
            self._send_request,
            self.publish,
            local=self._run_local,
            local_peer_id=self.identity.peer_id,
            default_timeout=cfg.task_timeout,
            max_attempts=cfg.max_attempts,
        )
        # With no worker holding a model we hold, send it to one that will fetch it from us.
        self.scheduler.local_model = self.registry.sha_of
        self.scheduler.gate, self.scheduler.observe = self.trust.gate, self.trust.observe
        if cfg.mdns:
            self.discovery = Discovery(
                self.identity,
                cfg.network,
                cfg.name,
                list(cfg.caps),
                self.addresses,
                self._on_discovered,
                self._on_discovery_gone,
            )
            self.discovery.on_self = self.trust.on_mdns_self
            try:
                await self.discovery.prepare()
            except Exception as exc:
                await self._close_discovery()
                raise NodeStartError(
                    f"mDNS discovery cannot start on {', '.join(self.addresses)}: {exc}"
                ) from None
        self.transport = Transport(
            self.identity,
            self._on_inbound,
            self._on_reply,
            self._on_link_event,
            policy=self.trust.policy,
        )
        try:
            self.endpoints = await self.transport.start(self.addresses, cfg.port)
        except TransportError as exc:
            await self._close_discovery()
            raise NodeStartError(str(exc)) from None
        except zmq.ZMQError as exc:
            await self.transport.close()
            await self._close_discovery()
            raise NodeStartError(f"cannot start the transport: {exc}") from None
        if cfg.metrics_port is not None:
            from netcore.observe.metrics_server import MetricsError, MetricsServer

            try:
                self.metrics = await MetricsServer(self).start(cfg.metrics_host, cfg.metrics_port)
            except MetricsError as exc:
                await self.transport.close()
                await self._close_discovery()
                raise NodeStartError(str(exc)) from None
        port = int(self.endpoints[0].rsplit(":", 1)[1])
        # Ready once the ROUTER serves: peers may connect from here on, even before mDNS.
        self.publish(
            NodeReady(
                peer_id=self.identity.peer_id,
                endpoint=self.endpoint,
                key=self.identity.public_text,
            )
        )
        self.trust.attach(self.transport, self.endpoints, self._hello, self._drop_peer)
        if self.discovery is not None:
            try:
                await self.discovery.start(self.addresses, port, advertise=cfg.advertise)
            except Exception as exc:
                if self.metrics is not None:
                    await self.metrics.close()
                await self.transport.close()
                await self._close_discovery()
                raise NodeStartError(
                    f"mDNS discovery cannot start on {', '.join(self.addresses)}: {exc}"
                ) from None
        self._started = True
        self.started_at = time.monotonic()
        self._spawn(self._tick_loop())
        self._spawn(self._ping_loop())
        self._spawn(self.reach.run())
        self._spawn(self.trust.run())
        if cfg.caps:
            self._spawn(self._warm_up())
        log.info(
            "node %s (%s) serving %s on network %r",
            self.identity.peer_id,
            cfg.name,
            ", ".join(self.endpoints),
            cfg.network,
        )

    async def _close_discovery(self) -> None:
        """A start that failed after mDNS was opened: close it (no goodbye was needed)."""
        if self.discovery is not None:
            with contextlib.suppress(Exception):
                await self.discovery.stop()
            self.discovery = None

    async def stop(self) -> None:
        """Leave gracefully: ``bye`` on every connection, mDNS goodbye, then close."""
        if not self._started or self._stopping:
            return
        self._stopping = True
        if self._connect_back_handle is not None:
            self._connect_back_handle.cancel()
            self._connect_back_handle = None
        assert self.transport is not None
        bye = protocol.encode({"t": "bye"})
        for peer_id in list(self.transport.links):
            self.transport.send(peer_id, bye)
        for rid in list(self._greeted):
            self.transport.reply(rid, bye)
        if self.discovery is not None:
            await self.discovery.stop()
        if self.metrics is not None:
            await self.metrics.close()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        await self.trust.close()
        await self.transport.close()
        await self.fetcher.close()
        self.worker.close()
        for sub in list(self._subscribers):
            sub.close()
        self._started = False

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- events --------------------------------------------------------------------------

    def publish(self, event: Event) -> None:
        for observe in self.observers:
            observe(event)
        for sub in self._subscribers:
            if sub.kinds is not None and event.EVENT not in sub.kinds:
                continue
            try:
                sub.queue.put_nowait(event)
            except asyncio.QueueFull:
                self.counters["events_dropped"] += 1

    def _peers_changed(self) -> None:
        self._changed.set()
        if self.scheduler is not None:
            self.scheduler.workers_changed()

    # --- peers ---------------------------------------------------------------------------

    def _peer_id_of(self, key: str) -> str:
        peer_id = self._key_ids.get(key)
        if peer_id is None:
            peer_id = peer_id_for(key)
            if len(self._key_ids) > MAX_CONNECTIONS_TRACKED:
                self._key_ids.clear()
            self._key_ids[key] = peer_id
        return peer_id

    def _on_discovered(self, found: DiscoveredPeer) -> None:
        if self._stopping or not self.trust.on_discovered(found.key):
            return
        departed = self._departed.get(found.peer_id)
        if departed is not None and time.monotonic() - departed < REJOIN_QUIET_S:
            return
        peer, created = self.peers.upsert(
            found.peer_id, found.key, "mdns", name=found.name, caps=found.caps
        )
        peer.in_mdns = True
        if created or not peer.endpoints:
            peer.endpoints = found.endpoints
        if (
            self.recall.forget(found.peer_id)
            and self.transport
            and found.peer_id in self.transport.links
        ):
            self._on_link(found.peer_id, True)  # its kept link is up already: greet it
        self._connect(peer)

    def _on_discovery_gone(self, peer_id: str) -> None:
        self._drop_peer(peer_id, "goodbye")

    def _connect(self, peer: Peer) -> None:
        if self.transport is None or not peer.endpoints or not self.trust.may_dial(peer):
            return
        endpoint = self._pick_endpoint(peer.endpoints)
        if endpoint and self.transport.connect(peer.peer_id, peer.key, endpoint):
            # Greet at once: ZeroMQ holds the hello until the handshake completes and sends
            # it from its I/O thread, a loop turn sooner than the handshake event would.
            self._greet_early.add(peer.peer_id)
            self._greet(peer.peer_id)

    def _pick_endpoint(self, endpoints: list[str]) -> str | None:
        """The first advertised endpoint on a subnet we serve on, else the first valid one."""
        ours = _subnets(tuple(self.addresses))
        valid = []
        for endpoint in endpoints:
            ip = _endpoint_ip(endpoint)
            if ip is None:
                continue
            if any(ip in net for net in ours):
                return endpoint
            valid.append(endpoint)
        return valid[0] if valid else None

    def _drop_peer(self, peer_id: str, reason: str) -> None:
        self.recall.forget(peer_id)  # it left: nothing to wait for
        peer = self.peers.remove(peer_id)
        self._departed[peer_id] = time.monotonic()
        if self.transport is not None:
            self.transport.disconnect(peer_id)
        if self.scheduler is not None:
            self.scheduler.on_peer_lost(peer_id, reason)
        if peer is not None and peer.announced:
            log.info("peer %s (%s) left: %s", peer_id, peer.name, reason)
            self.publish(PeerDown(peer_id=peer_id, reason=reason))
        self._peers_changed()

    def _announce(self, peer: Peer) -> None:
        if not peer.announced:
            peer.announced = True
            log.info("peer %s (%s) up at %s", peer.peer_id, peer.name, peer.endpoint or "-")
            self.publish(
                PeerUp(
                    peer_id=peer.peer_id,
                    name=peer.name,
                    endpoint=peer.endpoint,
                    source=peer.source,
                )
            )

    def _heard(self, peer_id: str) -> None:
        change = self.peers.heard(peer_id)
        if change is not None:
            self._publish_transition(change)

    def _publish_transition(self, change: Transition) -> None:
        peer = change.peer
        if change.state is PeerState.ALIVE:
            log.info("peer %s is back", peer.peer_id)
            self.publish(PeerAlive(peer_id=peer.peer_id))
            self._peers_changed()
        elif change.state is PeerState.EVASIVE:
            log.warning(
                "peer %s is evasive (silent for %.1fs)", peer.peer_id, self.config.evasive_after
            )
            self.publish(PeerEvasive(peer_id=peer.peer_id))
            self._flapped(peer)
        elif change.state is PeerState.EXPIRED:
            self.peers.remove(peer.peer_id)
            self._departed.pop(peer.peer_id, None)
            self._drop_peer_expired(peer)

    def _flapped(self, peer: Peer) -> None:
        rest = self.damper.flap(peer.peer_id)
        if rest is not None:
            log.warning(
                "peer %s (%s) keeps dropping out; not used for about %.0fs",
                peer.peer_id,
                peer.name,
                rest,
            )

    def _drop_peer_expired(self, peer: Peer) -> None:
        if self.transport is not None:
            if peer.endpoints and peer.peer_id in self.transport.links and not self._stopping:
                # Cut off, not gone: keep the DEALER and probe it (netcore.net.recall).
                for dropped in self.recall.remember(peer):
                    self.transport.disconnect(dropped)
            else:
                self.transport.disconnect(peer.peer_id)
        if self.scheduler is not None:
            self.scheduler.on_peer_lost(peer.peer_id, "expired")
        if peer.announced:
            log.warning("peer %s (%s) expired", peer.peer_id, peer.name)
            self.publish(PeerDown(peer_id=peer.peer_id, reason="expired"))
        self._peers_changed()

    async def _ping_loop(self) -> None:
        """Pings on a shared beat (PROTOCOL.md §5: ping a peer not heard from for 1 s).

        Beats fall every half ``ping_interval`` of wall-clock time. On whole beats a node
        pings the silent peers whose id is above its own; on half beats, those below. The
        two ends of a pair never look on the same beat, so one of them pings and the other
        hears it and need not (one ping per pair and interval, as before), and the pings of
        the whole swarm go out on the same instants: a node wakes a few times a second for
        all of them instead of once per peer (each wake-up of an idle process costs ~0.1 ms
        here). A peer silent for the interval (less a tenth, the slack of the beat) is
        pinged on its next beat; if the end that pinged is gone, the other pings half an
        interval later. Clocks need not agree: only the batching depends on them.
        """
        assert self.transport is not None and self.identity is not None
        me = self.identity.peer_id
        while True:
            half = self.config.ping_interval / 2
            await asyncio.sleep(half - time.time() % half + 0.001)
            upper = round(time.time() / half) % 2 == 0  # whole beat: ping ids above ours

            def on_this_beat(peer: Peer, upper: bool = upper) -> bool:
                return (peer.peer_id > me) == upper

            for peer in self.peers.due_for_ping(only=on_this_beat, slack=half / 5):
                if peer.peer_id in self.transport.links:
                    self.counters["pings_sent"] += 1
                    self._send_request(
                        peer.peer_id,
                        {"t": "ping", "id": protocol.new_id(), "ts": time.monotonic()},
                    )

    async def _tick_loop(self) -> None:
        assert self.transport is not None
        while True:
            await asyncio.sleep(TICK_S)
            for change in self.peers.tick():
                self._publish_transition(change)
            probe, forgotten = self.recall.due()
            for peer_id in probe:
                self._send_request(
                    peer_id, {"t": "ping", "id": protocol.new_id(), "ts": time.monotonic()}
                )
            for peer_id in forgotten:
                self.transport.disconnect(peer_id)
            now = time.monotonic()
            for peer_id, at in list(self._departed.items()):
                if now - at > REJOIN_QUIET_S:
                    del self._departed[peer_id]

    # --- transport callbacks -------------------------------------------------------------

    def _hello(self, rid: bytes) -> dict[str, Any]:
        cfg = self.config
        return {
            "t": "hello",
            "id": rid,
            "name": cfg.name,
            "net": cfg.network,
            "caps": list(cfg.caps),
            "endpoints": self.endpoints if cfg.caps else [],
            # Client-only nodes advertise their models too: workers fetch them (model_get).
            "models": self.registry.wire_entries(),
            "accel": self.registry.accel if cfg.caps else [],
            "capacity": self.worker.capacity if cfg.caps else 0,
            **self.reach.hello_fields(),
        }

    def _readvertise(self, _spec: ModelSpec | None = None) -> None:
        """Greet every connected peer again, so they learn of a model fetched meanwhile."""
        if self.transport is not None and not self._stopping:
            for peer_id in list(self.transport.links):
                self._on_link(peer_id, True)

    def _send_request(self, peer_id: str, msg: Mapping[str, Any]) -> bool:
        assert self.transport is not None
        if self._stopping:
            # After our bye, a ping (answered hello_required) or a late hello would make the
            # peer greet us again: a ghost that lingers until it expires.
            return False
        return self.transport.send(peer_id, protocol.encode(msg))

    def _reply(self, rid: bytes, msg: Mapping[str, Any], to: str | None = None) -> None:
        assert self.transport is not None
        if to is not None and not self.trust.deliverable(rid, to):
            return  # the request's connection is gone, or another key's now (netcore.trust.manager)
        if msg["t"] == "error":
            self.errors_sent[msg["code"]] = self.errors_sent.get(msg["code"], 0) + 1
        self.transport.reply(rid, protocol.encode(msg))

    def _reply_error(self, rid: bytes, code: str, message: str, req_id: bytes | None) -> None:
        self.counters["protocol_errors"] += 1
        self._reply(rid, protocol.error(code, message, req_id))

    def _restore(self, peer_id: str) -> Peer | None:
        """A remembered (expired) peer answered again: back in the table under its id."""
        old = self.recall.recall(peer_id)
        if old is None or self._stopping:
            return None
        peer, _ = self.peers.upsert(
            peer_id,
            old.key,
            old.source,
            name=old.name,
            endpoints=old.endpoints,
            caps=old.caps,
            models=old.models,
            capacity=old.capacity,
            accel=old.accel,
            in_mdns=old.in_mdns,
        )
        log.info("peer %s (%s) is reachable again", peer_id, peer.name)
        return peer

    def _on_link_event(self, peer_id: str, up: bool) -> None:
        """The transport's report: a DEALER's handshake succeeded (``up``) or it dropped."""
        if peer_id in self._greet_early:
            self._greet_early.discard(peer_id)
            if up:
                return  # the hello queued at connect time went out on this connection
        self._on_link(peer_id, up)

    def _greet(self, peer_id: str) -> None:
        rid = protocol.new_id()
        self._hello_ids[rid] = peer_id
        if len(self._hello_ids) > MAX_CONNECTIONS_TRACKED:
            self._hello_ids.pop(next(iter(self._hello_ids)))
        self._send_request(peer_id, self._hello(rid))

    def _on_link(self, peer_id: str, up: bool) -> None:
        peer = self.peers.get(peer_id)
        if peer is None and up:
            peer = self._restore(peer_id)
        if peer is None:
            return
        if up:
            self._greet(peer_id)
        else:
            peer.greeted = False
            self._flapped(peer)
            if self.scheduler is not None:
                self.scheduler.on_peer_lost(peer_id, "disconnected")

    def _on_inbound(self, rid: bytes, client_key: str, frames: list[zmq.Frame]) -> None:
        """A frame on our ROUTER from the authenticated key ``client_key``."""
        if not self.trust.on_frame(rid, client_key, frames):
            return
        if len(frames) != 1:
            self._reply_error(rid, "bad_request", "a message is exactly one frame", None)
            return
        try:
            msg = protocol.decode_envelope(frames[0].buffer)
        except ProtocolError as exc:
            self._reply_error(rid, exc.code, exc.message, exc.req_id)
            return
        peer_id = self._peer_id_of(client_key)
        self._heard(peer_id)
        t = msg["t"]
        if t not in protocol.REQUESTS:
            self._on_inbound_notice(rid, peer_id, msg)
            return
        req_id = (
            msg.get("id") if isinstance(msg.get("id"), bytes) and len(msg["id"]) == 16 else None
        )
        if t == "hello":
            self._on_hello(rid, client_key, peer_id, msg, req_id)
            return
        if self._greeted.get(rid) != client_key:
            if rid in self._wrong_net:
                self._reply_error(
                    rid, "bad_request", "this connection's hello named another network", req_id
                )
            else:
                self._reply_error(rid, "hello_required", "send hello first", req_id)
            return
        try:
            protocol.validate(msg)
        except ProtocolError as exc:
            self._reply_error(rid, exc.code, exc.message, req_id)
            return
        if t == "ping":
            self.counters["pings_received"] += 1
            self._reply(
                rid,
                {
                    "t": "pong",
                    "id": req_id,
                    "ts": msg["ts"],
                    "inflight": self.worker.inflight,
                    "queued": self.worker.queued,
                    "capacity": self.worker.capacity,
                },
            )
        elif t == "task":
            if not self._serve_task_now(rid, peer_id, msg):
                self._unstarted[(peer_id, msg["id"])] = False
                self._spawn(self._serve_task(rid, peer_id, msg))
        elif t == "model_get":
            self._serve_model_chunk(rid, msg)

    def _on_inbound_notice(self, rid: bytes, peer_id: str, msg: dict[str, Any]) -> None:
        """Messages that never get a reply; a bad one is dropped and counted."""
        t = msg["t"]
        try:
            protocol.validate(msg)
        except ProtocolError:
            self.counters["dropped"] += 1
            return
        if t == "bye":
            self._greeted.pop(rid, None)
            self._drop_peer(peer_id, "bye")
        elif t == "cancel" and self._greeted.get(rid) is not None:
            if (peer_id, msg["id"]) in self._unstarted:
                self._unstarted[(peer_id, msg["id"])] = True  # right behind its task, in a burst
            else:
                self.worker.cancel(peer_id, msg["id"])
        else:
            self.counters["dropped"] += 1

    def _on_hello(
        self, rid: bytes, client_key: str, peer_id: str, msg: dict[str, Any], req_id: bytes | None
    ) -> None:
        try:
            protocol.validate(msg)
        except ProtocolError as exc:
            self._reply_error(rid, exc.code, exc.message, req_id)
            return
        if msg["net"] != self.config.network:
            self._greeted.pop(rid, None)
            self._wrong_net.add(rid)
            if len(self._wrong_net) > MAX_CONNECTIONS_TRACKED:
                self._wrong_net.clear()
            self._reply_error(
                rid,
                "bad_request",
                f"network mismatch: this node is on {self.config.network!r}, hello names {msg['net'][:63]!r}",
                req_id,
            )
            return
        refused = self.trust.check_hello(rid, client_key, msg)
        if refused is not None:  # our own key: a clone (netcore.net.clones)
            self._reply_error(rid, "bad_request", refused, req_id)
            return
        self._wrong_net.discard(rid)
        self._greeted[rid] = client_key
        self._greeted.move_to_end(rid)
        while len(self._greeted) > MAX_CONNECTIONS_TRACKED:
            self._greeted.popitem(last=False)
        self._reply(rid, self._hello(req_id or protocol.new_id()))
        if self._stopping:
            return
        # The peer waits on this reply to count us as up: send it now, and learn from its
        # hello (connect back, share peers) after the other hellos of this batch are answered
        # (when a node joins, every running node greets it at once).
        assert self.transport is not None
        self.transport.flush()
        asyncio.get_running_loop().call_soon(self._learn_from_hello, rid, client_key, peer_id, msg)

    def _learn_from_hello(
        self, rid: bytes, client_key: str, peer_id: str, msg: dict[str, Any]
    ) -> None:
        if self._stopping or self._greeted.get(rid) != client_key:
            return  # it said bye (or we stopped) meanwhile
        self._departed.pop(peer_id, None)
        recalled = self.recall.recall(peer_id)  # back after a partition: same id, same row
        peer, _ = self.peers.upsert(
            peer_id,
            client_key,
            recalled.source if recalled is not None else "hello",
            name=msg["name"][:63],
            caps=msg["caps"],
            models=msg["models"],
            capacity=msg.get("capacity"),
            accel=msg.get("accel"),
        )
        if msg["endpoints"]:
            peer.endpoints = list(msg["endpoints"])
            if recalled is not None and self.transport and peer_id in self.transport.links:
                self._on_link(peer_id, True)  # our kept link is up already: greet it
            # Also when a link exists: the hello may name a new endpoint (a peer restarted
            # on another port), and connect() re-points the DEALER there.
            self._connect_soon(peer_id)
        self._announce(peer)
        self.reach.learn(peer_id, msg)
        self._peers_changed()

    def _connect_soon(self, peer_id: str) -> None:
        """Dial back a peer that greeted us, CONNECT_BACK_DELAY_S from now, with the others
        that greet us meanwhile.

        When a node joins, every running node connects to it at once; answering their
        handshakes and hellos first, and opening our own connections to them a moment later,
        halves the work the join has to wait on (each pair's two CURVE handshakes share one
        ZeroMQ I/O thread here). Until then we answer their requests but send none."""
        self._connect_back.add(peer_id)
        if self._connect_back_handle is None:
            self._connect_back_handle = asyncio.get_running_loop().call_later(
                CONNECT_BACK_DELAY_S, self._connect_back_now
            )

    def _connect_back_now(self) -> None:
        self._connect_back_handle = None
        pending, self._connect_back = self._connect_back, set()
        if self._stopping:
            return
        for peer_id in pending:
            peer = self.peers.get(peer_id)
            if peer is not None:
                self._connect(peer)

    def _on_reply(self, peer_id: str, frame: bytes) -> None:
        """A frame on our DEALER to ``peer_id`` (authenticated by CURVE: it is that peer)."""
        try:
            msg = protocol.decode(frame)
        except ProtocolError:
            self.counters["dropped"] += 1
            return
        self._heard(peer_id)
        peer = self.peers.get(peer_id)
        if peer is None and peer_id in self.recall:
            # A probe answered after a partition: greet it again on this link.
            peer = self._restore(peer_id)
            if peer is not None:
                self._on_link(peer_id, True)
        t = msg["t"]
        if t in ("model_chunk", "error") and self.fetcher.on_reply(peer_id, msg):
            if t == "error":
                self._on_error_reply(peer, msg)  # e.g. hello_required: greet again
            return
        if t in ("result", "error"):
            if t == "error":
                self._on_error_reply(peer, msg)
            if self.scheduler is not None:
                self.scheduler.on_reply(peer_id, msg)
        elif t == "pong":
            waiter = self._pings.pop(msg["id"], None)
            if waiter is not None and not waiter.done():
                waiter.set_result(time.monotonic() - msg["ts"])
            if peer is not None:
                ts = msg["ts"]
                if isinstance(ts, (int, float)) and 0 <= time.monotonic() - ts < 60:
                    peer.observe_rtt(time.monotonic() - ts)
                peer.remote_inflight = msg.get("inflight", 0)
                peer.remote_queued = msg.get("queued", 0)
                peer.capacity = msg.get("capacity", peer.capacity) or peer.capacity
                self.publish(
                    PeerUpdated(
                        peer_id=peer_id,
                        rtt_ms=round(peer.rtt * 1000, 3) if peer.rtt is not None else None,
                        inflight=peer.remote_inflight,
                        queued=peer.remote_queued,
                        capacity=peer.capacity,
                    )
                )
        elif t == "hello":
            self._hello_ids.pop(msg["id"], None)
            if peer is None or msg["net"] != self.config.network:
                return
            peer.name = msg["name"][:63]
            peer.caps = msg["caps"]
            peer.models = msg["models"]
            peer.capacity = msg.get("capacity") or peer.capacity
            peer.accel = msg.get("accel") or peer.accel
            peer.greeted = True
            self._announce(peer)
            self.reach.learn(peer_id, msg)
            self._peers_changed()
        elif t == "ping" and self.transport is not None:
            self.transport.send(
                peer_id,
                protocol.encode(
                    {
                        "t": "pong",
                        "id": msg["id"],
                        "ts": msg["ts"],
                        "inflight": self.worker.inflight,
                        "queued": self.worker.queued,
                        "capacity": self.worker.capacity,
                    }
                ),
            )
        elif t == "bye":
            self._drop_peer(peer_id, "bye")
        else:
            self.counters["dropped"] += 1

    def _on_error_reply(self, peer: Peer | None, msg: dict[str, Any]) -> None:
        code = msg.get("code")
        counted = code if code in protocol.ERROR_CODES else "other"
        self.errors_received[counted] = self.errors_received.get(counted, 0) + 1
        rid = msg.get("id")
        if isinstance(rid, bytes) and rid in self._hello_ids:
            self._hello_ids.pop(rid, None)
            log.warning(
                "peer %s refused our hello: %s", peer.peer_id if peer else "?", msg.get("message")
            )
            return
        if code == "hello_required" and peer is not None:
            # ZeroMQ reconnected silently: greet again on the new connection.
            peer.greeted = False
            self._on_link(peer.peer_id, True)

    # --- serving -------------------------------------------------------------------------

    def _serve_task_now(self, rid: bytes, requester: str, msg: dict[str, Any]) -> bool:
        """Serve a quick task on this stack (Worker.run_now); False to spawn _serve_task."""
        if msg["kind"] != "infer" or "infer" not in self.config.caps:
            return False
        try:
            done = self.worker.run_now(
                msg["model"], msg.get("sha256"), protocol.arrays_of(msg, "inputs")
            )
            if done is None:
                return False
            self._send_result(rid, requester, msg, *done)
        except Exception as exc:
            self._task_failed(rid, requester, msg, exc)
        return True

    async def _serve_task(self, rid: bytes, requester: str, msg: dict[str, Any]) -> None:
        req_id: bytes = msg["id"]
        try:
            if self._unstarted.pop((requester, req_id), False):
                raise TaskError("cancelled", "cancelled by the requester")
            if msg["kind"] != "infer":
                raise TaskError("unsupported", f"task kind {msg['kind'][:40]!r} is not supported")
            if "infer" not in self.config.caps:
                raise TaskError("unsupported", "this node does not execute tasks")
            inputs = protocol.arrays_of(msg, "inputs")
            outputs, took_us = await self.worker.execute(
                requester, req_id, msg["model"], msg.get("sha256"), inputs, msg["timeout_ms"] / 1000
            )
            self._send_result(rid, requester, msg, outputs, took_us)
        except Exception as exc:
            self._task_failed(rid, requester, msg, exc)

    def _task_failed(self, rid: bytes, requester: str, msg: dict[str, Any], exc: Exception) -> None:
        """Answer a task that raised (called from its ``except``): the task's own error, a
        bad request, or ``internal`` (logged: one task never takes the node down)."""
        if isinstance(exc, TaskError):
            self._send_task_error(rid, requester, msg, exc)
        elif isinstance(exc, ProtocolError):
            self._reply_error(rid, exc.code, exc.message, msg["id"])
        else:
            log.exception("task %s failed", msg["id"].hex()[:16])
            self._reply(rid, protocol.error("internal", f"{type(exc).__name__}: {exc}", msg["id"]))

    def _send_result(
        self,
        rid: bytes,
        requester: str,
        msg: dict[str, Any],
        outputs: dict[str, np.ndarray],
        took_us: int,
    ) -> None:
        wire = protocol.tensor_map(outputs)
        self._reply(
            rid,
            {
                "t": "result",
                "id": msg["id"],
                "outputs": wire,
                "digest": protocol.digest_tensors(wire),
                "took_us": took_us,
            },
            to=requester,
        )
        self.counters["tasks_served"] += 1
        self.publish(
            TaskServed(
                task_id=msg["id"].hex()[:16],
                requester=requester,
                ok=True,
                took_us=took_us,
                model=msg["model"],
            )
        )

    def _send_task_error(
        self, rid: bytes, requester: str, msg: dict[str, Any], exc: TaskError
    ) -> None:
        self.counters["tasks_refused"] += 1
        self._reply(rid, protocol.error(exc.code, exc.message, msg["id"]), to=requester)
        self.publish(
            TaskServed(
                task_id=msg["id"].hex()[:16],
                requester=requester,
                ok=False,
                took_us=0,
                model=msg["model"],
                error=exc.code,
            )
        )

    def _serve_model_chunk(self, rid: bytes, msg: dict[str, Any]) -> None:
        req_id = msg["id"]
        spec = self.registry.find(msg["name"], msg["sha256"])
        if spec is None:
            self._reply(
                rid,
                protocol.error(
                    "unknown_model", f"no model {msg['name'][:64]!r} with that sha256", req_id
                ),
            )
            return
        if msg["length"] > protocol.MAX_CHUNK:
            self._reply(
                rid, protocol.error("too_large", f"length over {protocol.MAX_CHUNK} bytes", req_id)
            )
            return
        try:
            with open(spec.path, "rb") as fh:
                # Past the end the chunk is empty; clamping also keeps a peer's offset of
                # 2**62..2**64-1 from failing lseek (EINVAL) or seek itself (ValueError).
                fh.seek(min(msg["offset"], spec.size))
                data = fh.read(msg["length"])
        except OSError as exc:
            self._reply(
                rid, protocol.error("internal", f"cannot read model: {exc.strerror}", req_id)
            )
            return
        self._reply(
            rid,
            {
                "t": "model_chunk",
                "id": req_id,
                "sha256": spec.sha256,
                "offset": msg["offset"],
                "data": data,
                "total": spec.size,
            },
        )

    async def _run_local(
        self, model: str, sha256: str | None, inputs: Mapping[str, np.ndarray], timeout: float
    ) -> tuple[dict[str, np.ndarray], int]:
        return await self.worker.execute(
            self.peer_id, protocol.new_id(), model, sha256, inputs, timeout
        )

    async def _warm_up(self) -> None:
        """Load every model off the loop, so the first task does not pay for the session.

        It waits WARM_UP_DELAY_S first: loading holds the GIL in bursts, and the first
        moments after the announcement are when every running node connects and greets us
        (a task that comes meanwhile loads its model itself)."""
        await asyncio.sleep(WARM_UP_DELAY_S)
        loop = asyncio.get_running_loop()
        for spec in self.registry.specs():
            try:
                loaded = await loop.run_in_executor(None, self.registry.load, spec)
                sample = {
                    s.name: np.zeros([1 if d == -1 else d for d in (s.shape or ())], dtype=s.dtype)
                    for s in spec.inputs
                }
                # The first run is slow (lazy allocations): time only the ones after it.
                await loop.run_in_executor(None, loaded.run, sample)
                loaded.typical_run_s = None
                for _ in range(5):
                    await loop.run_in_executor(None, loaded.run, sample)
            except Exception as exc:
                log.warning("model %s cannot be loaded: %s", spec.name, exc)

    def report_error(self, message: str) -> None:
        self.publish(NodeError(message=message))
