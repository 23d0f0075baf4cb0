"""Prometheus metrics: what ``/metrics`` says, read from the node (served by
:mod:`netcore.observe.metrics_server`).

Nothing here runs per task except :class:`EventRecorder`, which the node calls with each event
it publishes (two per task: ``TaskDone`` on the requester, ``TaskServed`` on the worker) and
which only bumps plain integers in fixed-bucket histograms. Everything else is read from the
node's own counters when Prometheus scrapes: :class:`NodeCollector` is a custom collector in a
per-node :class:`~prometheus_client.CollectorRegistry` (never the global one, so several nodes
in one process do not mix), and the server runs on the node's own loop, so a scrape sees one
consistent state and no thread touches it.
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Iterable, Sequence
from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from netcore.observe.events import Event, TaskDone, TaskServed
from netcore.observe.relay_metrics import node_punch_metrics, node_relay_metrics
from netcore.wire.protocol import ERROR_CODES

if TYPE_CHECKING:
    from netcore.node import Node

LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0,
    2.5, 5.0, 10.0, 30.0,
)  # fmt: skip
"""Task latency, submit to outcome (seconds)."""
INFERENCE_BUCKETS_S: tuple[float, ...] = (
    0.000005, 0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005,
    0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)  # fmt: skip
"""Time a worker spent running one task's model (seconds)."""


class Buckets:
    """A histogram as plain integers: ``observe`` is a bisect and two additions."""

    __slots__ = ("bounds", "count", "counts", "total")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = list(bounds)
        self.counts = [0] * (len(self.bounds) + 1)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        """``(le, count)`` pairs as Prometheus wants them, ending with ``+Inf``."""
        out: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(self.bounds, self.counts, strict=False):
            running += n
            out.append((_le(bound), running))
        out.append(("+Inf", self.count))
        return out


def _le(bound: float) -> str:
    return repr(float(bound))


class EventRecorder:
    """The node's observer: per-task numbers that its counters do not already hold."""

    def __init__(self) -> None:
        self.latency = Buckets(LATENCY_BUCKETS_S)
        self.inference = Buckets(INFERENCE_BUCKETS_S)
        self.failed_by_code: dict[str, int] = {}
        self.refused_by_code: dict[str, int] = {}

    def __call__(self, event: Event) -> None:
        kind = type(event)
        if kind is TaskDone:
            done: TaskDone = event  # type: ignore[assignment]
            self.latency.observe(done.latency_ms / 1000.0)
            if not done.ok:
                code = done.code if done.code in ERROR_CODES else "other"
                self.failed_by_code[code] = self.failed_by_code.get(code, 0) + 1
        elif kind is TaskServed:
            served: TaskServed = event  # type: ignore[assignment]
            if served.ok:
                self.inference.observe(served.took_us / 1_000_000)
            else:
                code = served.error if served.error in ERROR_CODES else "other"
                self.refused_by_code[code] = self.refused_by_code.get(code, 0) + 1


def _package_version() -> str:
    try:
        return version("p2p-ai-agents")
    except PackageNotFoundError:
        return "unknown"


class NodeCollector(Collector):
    """Reads a node's state at scrape time and describes it as Prometheus metrics."""

    def __init__(self, node: Node, recorder: EventRecorder) -> None:
        self.node = node
        self.recorder = recorder
        self.version = _package_version()

    def collect(self) -> Iterable[Metric]:
        node = self.node
        cfg = node.config
        now = time.monotonic()
        own = node.identity.peer_id if node.identity else ""

        info = InfoMetricFamily("p2pai_node", "This node: its id, name, swarm and version.")
        info.add_metric(
            [],
            {"peer_id": own, "name": cfg.name, "network": cfg.network, "version": self.version},
        )
        yield info
        yield GaugeMetricFamily(
            "p2pai_uptime_seconds",
            "Seconds since the node started.",
            value=now - node.started_at if node.started_at else 0.0,
        )

        # --- tasks this node submitted (requester side) -----------------------------------
        sched = node.scheduler
        submitted = sched.submitted if sched else 0
        succeeded = sched.succeeded if sched else 0
        failed = sched.failed if sched else 0
        yield CounterMetricFamily(
            "p2pai_tasks_submitted", "Tasks submitted by this node.", value=submitted
        )
        tasks = CounterMetricFamily(
            "p2pai_tasks",
            "Tasks this node submitted that have their outcome, by outcome (ok, or the error code).",
            labels=["outcome"],
        )
        tasks.add_metric(["ok"], succeeded)
        by_code = dict(self.recorder.failed_by_code)
        counted = sum(by_code.values())
        if failed > counted:  # failures finished before the recorder was attached
            by_code["other"] = by_code.get("other", 0) + failed - counted
        for code, n in sorted(by_code.items()):
            tasks.add_metric([code], n)
        yield tasks
        yield CounterMetricFamily(
            "p2pai_task_retries", "Attempts retried on another worker.",
            value=sched.retries if sched else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "p2pai_duplicate_replies",
            "Late or duplicate replies to attempts already given up, dropped.",
            value=sched.duplicates if sched else 0,
        )
        yield GaugeMetricFamily(
            "p2pai_requests_inflight",
            "Attempts this node has outstanding on workers.",
            value=sched.inflight() if sched else 0,
        )
        yield self._histogram(
            "p2pai_task_latency_seconds",
            "Latency of tasks this node submitted, from submit to outcome.",
            self.recorder.latency,
        )

        # --- tasks this node executed (worker side) ---------------------------------------
        worker = node.worker
        served = CounterMetricFamily(
            "p2pai_served_tasks",
            "Tasks this node executed for peers, by outcome (ok, or the error code).",
            labels=["outcome"],
        )
        served.add_metric(["ok"], node.counters.get("tasks_served", 0))
        refused = dict(self.recorder.refused_by_code)
        missing = node.counters.get("tasks_refused", 0) - sum(refused.values())
        if missing > 0:
            refused["other"] = refused.get("other", 0) + missing
        for code, n in sorted(refused.items()):
            served.add_metric([code], n)
        yield served
        yield self._histogram(
            "p2pai_inference_seconds",
            "Time the model ran for each task this node executed.",
            self.recorder.inference,
        )
        yield GaugeMetricFamily(
            "p2pai_queue_depth", "Tasks waiting for a free slot.", value=worker.queued
        )
        yield GaugeMetricFamily(
            "p2pai_inflight_tasks", "Tasks running on this node now.", value=worker.inflight
        )
        yield GaugeMetricFamily(
            "p2pai_capacity", "Tasks this node runs at once.", value=worker.capacity
        )

        # --- peers ------------------------------------------------------------------------
        yield from self._peer_metrics(now)

        # --- transport and protocol -------------------------------------------------------
        transport = node.transport
        yield CounterMetricFamily(
            "p2pai_received_bytes", "Bytes received in protocol frames.",
            value=transport.bytes_in if transport else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "p2pai_sent_bytes", "Bytes sent in protocol frames.",
            value=transport.bytes_out if transport else 0,
        )  # fmt: skip
        yield CounterMetricFamily(
            "p2pai_send_failures",
            "Frames not sent because a peer's queue was full or the link was gone.",
            value=transport.send_failures if transport else 0,
        )
        errors = CounterMetricFamily(
            "p2pai_protocol_errors",
            "Protocol error replies, by code and direction (sent by us, received from peers).",
            labels=["code", "direction"],
        )
        for code, n in sorted(node.errors_sent.items()):
            errors.add_metric([code, "sent"], n)
        for code, n in sorted(node.errors_received.items()):
            errors.add_metric([code, "received"], n)
        yield errors
        yield CounterMetricFamily(
            "p2pai_dropped_messages",
            "Messages dropped without a reply (malformed notices, unexpected types).",
            value=node.counters.get("dropped", 0),
        )
        yield CounterMetricFamily(
            "p2pai_events_dropped",
            "Node events dropped because a subscriber was too slow.",
            value=node.counters.get("events_dropped", 0),
        )

        # --- models -----------------------------------------------------------------------
        fetcher = getattr(node, "fetcher", None)
        fetches = CounterMetricFamily(
            "p2pai_model_fetches",
            "Models fetched from peers (model_get), by result.",
            labels=["result"],
        )
        fetches.add_metric(["stored"], getattr(fetcher, "fetched", 0))
        fetches.add_metric(["refused"], getattr(fetcher, "refused", 0))
        yield fetches
        yield CounterMetricFamily(
            "p2pai_model_fetch_bytes", "Model bytes received from peers.",
            value=getattr(fetcher, "bytes_in", 0),
        )  # fmt: skip

        # --- discovery --------------------------------------------------------------------
        discovery = node.discovery
        yield CounterMetricFamily(
            "p2pai_mdns_ignored_records",
            "mDNS records ignored (bad version, key or fields, or another swarm).",
            value=discovery.ignored_records if discovery else 0,
        )
        other = GaugeMetricFamily(
            "p2pai_mdns_other_network_nodes",
            "p2pai nodes seen in mDNS on another swarm name (ignored), by that name.",
            labels=["network"],
        )
        for name, instances in sorted(getattr(discovery, "other_networks", {}).items()):
            other.add_metric([name], len(instances))
        yield other
        reach = node.reach
        yield CounterMetricFamily(
            "p2pai_shared_peers_learned",
            "Peers learned from the peers list of another node's hello.",
            value=reach.counters.shared_learned,
        )

    def _peer_metrics(self, now: float) -> Iterable[Metric]:
        node = self.node
        states: dict[tuple[str, str], int] = {}
        ratio = GaugeMetricFamily(
            "p2pai_peer_success_ratio",
            "Share of this node's attempts on the peer that succeeded.",
            labels=["peer", "name"],
        )
        peer_tasks = CounterMetricFamily(
            "p2pai_peer_tasks",
            "This node's attempts on the peer, by outcome.",
            labels=["peer", "name", "outcome"],
        )
        uptime = GaugeMetricFamily(
            "p2pai_peer_uptime_seconds",
            "Seconds since this node first saw the peer (this time).",
            labels=["peer", "name"],
        )
        rtt = GaugeMetricFamily(
            "p2pai_peer_rtt_seconds", "Smoothed round trip to the peer.", labels=["peer", "name"]
        )
        for peer in node.peers:
            state = "connecting" if not peer.greeted and not peer.announced else peer.state.value
            states[(state, peer.source)] = states.get((state, peer.source), 0) + 1
            labels = [peer.peer_id, peer.name]
            rate = peer.success_rate
            if rate is not None:
                ratio.add_metric(labels, rate)
            peer_tasks.add_metric([*labels, "ok"], peer.tasks_ok)
            peer_tasks.add_metric([*labels, "failed"], peer.tasks_failed)
            uptime.add_metric(labels, max(0.0, now - peer.first_seen))
            if peer.rtt is not None:
                rtt.add_metric(labels, peer.rtt)
        by_state = GaugeMetricFamily(
            "p2pai_peers",
            "Peers in the table, by liveness state and how they were found.",
            labels=["state", "source"],
        )
        for (state, source), n in sorted(states.items()):
            by_state.add_metric([state, source], n)
        yield by_state
        reach: dict[str, int] = {}
        for peer in node.peers:
            reach[peer.reach] = reach.get(peer.reach, 0) + 1
        by_reach = GaugeMetricFamily(
            "p2pai_peers_reach", "Peers in the table, by how our link goes.", labels=["reach"]
        )
        for how, n in sorted(reach.items()):
            by_reach.add_metric([how], n)
        yield by_reach
        yield from node_relay_metrics(node.membership.relaying.status())
        yield from node_punch_metrics(node.membership.punching.status())
        yield ratio
        yield peer_tasks
        yield uptime
        yield rtt

    @staticmethod
    def _histogram(name: str, doc: str, buckets: Buckets) -> HistogramMetricFamily:
        return HistogramMetricFamily(
            name, doc, buckets=buckets.cumulative(), sum_value=buckets.total
        )
