"""The node, the composition root: it builds the components and wires them together.

Use it as ``async with Node(config) as node:``. It publishes :mod:`netcore.observe.events` to
every subscriber of :meth:`Node.events` and takes work through :meth:`Node.submit`. The
behaviour lives in the components; this module only connects their callbacks:

* :class:`~netcore.net.membership.Membership`: the peer table's life cycle, dialling, pings;
* :class:`~netcore.net.session.Session`: every frame on the links, in the protocol's order;
* :class:`~netcore.trust.manager.TrustManager`: who may connect and work for us;
* :class:`~netcore.tasks.scheduler.Scheduler` (our tasks) and
  :class:`~netcore.tasks.serving.TaskServer` with the :class:`~netcore.tasks.worker.Worker`
  (peers' tasks); :class:`~netcore.models.fetch.ModelFetcher` for models we lack.

Everything runs on one asyncio loop; inference runs in the worker's threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Collection, Coroutine, Mapping
from typing import Any

import numpy as np
import zmq

from netcore.config.settings import Config, ConfigError
from netcore.models.fetch import ModelFetcher, model_chunk_reply
from netcore.models.plugins import load_registry
from netcore.models.providers import select as select_providers
from netcore.net.discovery import Discovery
from netcore.net.identity import Identity, IdentityError, load_or_create
from netcore.net.membership import Membership
from netcore.net.peers import Peer, PeerState, PeerTable
from netcore.net.session import Session
from netcore.net.transport import Transport, TransportError
from netcore.observe.events import Event, NodeReady
from netcore.observe.hub import EventHub, Subscription
from netcore.tasks.scheduler import Scheduler, TaskOutcome
from netcore.tasks.serving import TaskServer
from netcore.tasks.voters import transport_host
from netcore.tasks.worker import Worker
from netcore.trust.manager import TrustError, TrustManager
from netcore.wire import protocol

log = logging.getLogger("p2pai.node")

WARM_UP_DELAY_S = 0.3


class NodeStartError(Exception):
    """The node cannot start; the message is one line that says what to do."""


class Node:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.identity: Identity | None = None
        self.counters: dict[str, int] = dict.fromkeys(
            (
                "protocol_errors",
                "dropped",
                "tasks_served",
                "tasks_refused",
                "events_dropped",
                "pings_sent",
                "pings_received",
            ),
            0,
        )
        self.hub = EventHub(self.counters)
        self.observers = self.hub.observers
        """Called with each published event, synchronously (metrics); none by default."""
        self.peers = PeerTable(config.evasive_after, config.expired_after, config.ping_interval)
        self.registry = load_registry(config)
        self.worker = Worker(
            self.registry, config.capacity, config.queue_limit, config.max_input_bytes
        )
        self.trust = TrustManager(config, self.peers, self.publish)
        """Trust policy, connection guard, clone detection, reputation (:mod:`netcore.trust`)."""
        self.membership = Membership(
            config, self.peers, self.trust, self.publish, self.counters, self._hello_fields
        )
        self.membership.on_changed = self._peers_changed
        self.membership.on_peer_lost = self._peer_lost
        self.reach = self.membership.reach
        """Static peers and peer sharing (:mod:`netcore.net.reach`)."""
        self.session = Session(self.membership)
        self.session.on_request = self._on_request
        self.session.on_work_reply = self._on_work_reply
        self.session.load = self._load
        self.errors_sent = self.session.errors_sent
        self.errors_received = self.session.errors_received
        self.fetcher = ModelFetcher(
            self.registry,
            config.data_dir / "models",
            self.peers,
            self.membership.send_request,
            max_bytes=config.max_model_bytes,
            quota=config.model_quota,
            on_stored=self.membership.readvertise,
            send_back=self.session.send_back,
        )
        self.worker.fetch = self.fetcher.fetch
        self.session.on_back_reply = self.fetcher.on_reply
        self.session.serve_model = lambda msg: model_chunk_reply(self.registry, msg)
        self.server = TaskServer(
            self.worker, config.caps, self.session.reply, self.publish, self.counters, self._spawn
        )
        self.session.on_cancel = self.server.on_cancel
        self.transport: Transport | None = None
        self.discovery: Discovery | None = None
        self.scheduler: Scheduler | None = None
        self.metrics: Any = None
        """The ``/metrics`` server (:mod:`netcore.observe.metrics`) when ``metrics_port`` is set."""
        self._tasks: set[asyncio.Task[Any]] = set()
        self._changed = asyncio.Event()
        self._started = False
        self.started_at = 0.0

    # --- public API ----------------------------------------------------------------------

    @property
    def peer_id(self) -> str:
        assert self.identity is not None, "node not started"
        return self.identity.peer_id

    @property
    def endpoints(self) -> list[str]:
        return self.membership.endpoints

    @property
    def addresses(self) -> list[str]:
        return self.membership.addresses

    @property
    def endpoint(self) -> str:
        return self.endpoints[0] if self.endpoints else ""

    def events(self, kinds: Collection[str] | None = None) -> Subscription:
        """Subscribe to events (``kinds``: only these ``EVENT`` names; None for all)."""
        return self.hub.subscribe(kinds)

    def publish(self, event: Event) -> None:
        self.hub.publish(event)

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
        return await self.membership.ping(peer_id, timeout)

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
            # The public key file carries our name, for `p2pai keys trust <dir>/identity.key`.
            is_client = cfg.base_dir is not None and cfg.base_dir != cfg.data_dir
            self.identity = load_or_create(
                cfg.data_dir, f"{cfg.name}/client" if is_client else cfg.name
            )
            self.trust.open(self.identity)
        except (ConfigError, IdentityError, TrustError) as exc:
            raise NodeStartError(str(exc)) from None
        m = self.membership
        m.identity = self.identity
        m.addresses = cfg.serving_addresses()
        self.scheduler = Scheduler(
            self.peers,
            m.send_request,
            self.publish,
            local=self._run_local,
            local_peer_id=self.identity.peer_id,
            default_timeout=cfg.task_timeout,
            max_attempts=cfg.max_attempts,
        )
        # With no worker holding a model we hold, send it to one that will fetch it from us.
        self.scheduler.local_model = self.registry.sha_of
        self.scheduler.gate, self.scheduler.observe = self.trust.gate, self.trust.observe
        # Voters are hosts (netcore.tasks.voters): the address our link to a worker dialled.
        self.scheduler.host_of = lambda peer_id: transport_host(self.transport, peer_id)
        self.scheduler.probation = self.trust.peer_on_probation  # a bounded share (issue 16)
        self.scheduler.local_spec = self.registry.find  # we judge inputs and answers
        where = ", ".join(m.addresses)
        if cfg.mdns:
            self.discovery = Discovery(
                self.identity,
                cfg.network,
                cfg.name,
                list(cfg.caps),
                m.addresses,
                m.on_discovered,
                m.on_discovery_gone,
            )
            self.discovery.on_self = self.trust.on_mdns_self
            try:
                await self.discovery.prepare()
            except Exception as exc:
                await self._close_started()
                raise NodeStartError(f"mDNS discovery cannot start on {where}: {exc}") from None
        self.transport = m.transport = Transport(
            self.identity,
            self.session.on_router_frame,
            self.session.on_dealer_frame,
            m.on_link_event,
            policy=self.trust.policy,
        )
        self.transport.on_handshake_failed = m.dialling.on_handshake_failed
        try:
            m.endpoints = await self.transport.start(m.addresses, cfg.port)
        except TransportError as exc:
            await self._close_started()
            raise NodeStartError(str(exc)) from None
        except zmq.ZMQError as exc:
            await self._close_started()
            raise NodeStartError(f"cannot start the transport: {exc}") from None
        if cfg.metrics_port is not None:
            from netcore.observe.metrics_server import MetricsError, MetricsServer

            try:
                self.metrics = await MetricsServer(self).start(cfg.metrics_host, cfg.metrics_port)
            except MetricsError as exc:
                await self._close_started()
                raise NodeStartError(str(exc)) from None
        # Ready once the ROUTER serves: peers may connect from here on, even before mDNS.
        self.publish(
            NodeReady(
                peer_id=self.identity.peer_id, endpoint=self.endpoint, key=self.identity.public_text
            )
        )
        self.trust.attach(self.transport, self.endpoints, m.hello, m.drop_peer)
        if self.discovery is not None:
            try:
                port = int(self.endpoints[0].rsplit(":", 1)[1])
                await self.discovery.start(m.addresses, port, advertise=cfg.advertise)
            except Exception as exc:
                await self._close_started()
                raise NodeStartError(f"mDNS discovery cannot start on {where}: {exc}") from None
        self._started = True
        self.started_at = time.monotonic()
        relay_loops = m.relaying.start(self.transport)  # reservations, registries (--relay)
        for loop in (
            m.tick_loop(),
            m.ping_loop(),
            self.reach.run(),
            self.trust.run(),
            *relay_loops,
        ):
            self._spawn(loop)
        if cfg.caps:
            self._spawn(self.worker.warm_up(WARM_UP_DELAY_S))
        log.info(
            "node %s (%s) serving %s on network %r",
            self.identity.peer_id,
            cfg.name,
            ", ".join(self.endpoints),
            cfg.network,
        )

    async def _close_started(self) -> None:
        """A start that failed midway: close what was opened (no goodbye was needed)."""
        if self.metrics is not None:
            with contextlib.suppress(Exception):
                await self.metrics.close()
            self.metrics = None
        if self.transport is not None:
            await self.transport.close()
        if self.discovery is not None:
            with contextlib.suppress(Exception):
                await self.discovery.stop()
            self.discovery = None

    async def stop(self) -> None:
        """Leave gracefully: ``bye`` on every connection, mDNS goodbye, then close."""
        if not self._started or self.membership.stopping:
            return
        self.membership.stop()
        self.session.say_bye()
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
        await self.membership.punching.close()
        await self.membership.relaying.close()  # its sockets share the transport's context
        assert self.transport is not None
        await self.transport.close()
        await self.fetcher.close()
        self.worker.close()
        self.hub.close()
        self._started = False

    def _spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    # --- the components' callbacks -------------------------------------------------------

    def _peers_changed(self) -> None:
        self._changed.set()
        if self.scheduler is not None:
            self.scheduler.workers_changed()

    def _peer_lost(self, peer_id: str, reason: str) -> None:
        if self.scheduler is not None:
            self.scheduler.on_peer_lost(peer_id, reason)

    def _hello_fields(self) -> dict[str, Any]:
        """Our hello's work part. Client-only nodes advertise their models too: workers
        fetch them (model_get), also back on the connection a task came on (dealer_serves)."""
        caps = self.config.caps
        return {
            "models": self.registry.wire_entries(),
            "dealer_serves": list(protocol.DEALER_SERVES),
            "accel": self.registry.accel if caps else [],
            "capacity": self.worker.capacity if caps else 0,
        }

    def _load(self) -> dict[str, int]:
        """What our pongs report."""
        worker = self.worker
        return {"inflight": worker.inflight, "queued": worker.queued, "capacity": worker.capacity}

    def _on_request(self, rid: bytes, peer_id: str, msg: dict[str, Any]) -> None:
        if msg["t"] == "task":
            self.server.on_task(rid, peer_id, msg)
        elif msg["t"] == "model_get":  # the same answer as one on our DEALER (serve_model)
            self.session.reply(rid, self.session.serve_model(msg))

    def _on_work_reply(self, peer_id: str, msg: dict[str, Any]) -> None:
        t = msg["t"]
        if t in ("model_chunk", "error") and self.fetcher.on_reply(peer_id, msg):
            return
        if t in ("result", "error"):
            if self.scheduler is not None:
                self.scheduler.on_reply(peer_id, msg)
        else:
            self.counters["dropped"] += 1

    async def _run_local(
        self, model: str, sha256: str | None, inputs: Mapping[str, np.ndarray], timeout: float
    ) -> tuple[dict[str, np.ndarray], int]:
        return await self.worker.execute(
            self.peer_id, protocol.new_id(), model, sha256, inputs, timeout
        )
