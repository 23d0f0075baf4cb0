"""Prometheus metrics of relays: the relay's own (``p2pai relay --metrics-port``) and a
node's reservations at its relays (added to the node's ``/metrics``). Read at scrape time
from the objects' counters, like :class:`netcore.observe.metrics.NodeCollector`."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from netcore.net.relay_server import RelayServer


class RelayCollector(Collector):
    """One relay: reservations, circuits, bytes spliced, refusals."""

    def __init__(self, relay: RelayServer) -> None:
        self.relay = relay

    def collect(self) -> Iterable[Metric]:
        r = self.relay
        c = r.counters
        lim = r.limits
        yield GaugeMetricFamily(
            "p2pai_relay_uptime_seconds",
            "Seconds since the relay started.",
            value=time.monotonic() - r.started_at if r.started_at else 0.0,
        )
        gauge = GaugeMetricFamily(
            "p2pai_relay_reservations",
            "Reservations held now, and the most allowed.",
            labels=["of"],
        )
        gauge.add_metric(["held"], len(r.reservations))
        gauge.add_metric(["limit"], lim.max_reservations)
        yield gauge
        yield GaugeMetricFamily(
            "p2pai_relay_networks", "Networks with a reserved node.", value=len(r.nets)
        )
        circuits = GaugeMetricFamily(
            "p2pai_relay_circuits", "Circuits now, by state.", labels=["state"]
        )
        circuits.add_metric(["open"], r.open_circuits)
        circuits.add_metric(["pending"], len(r.pending) // 2)
        yield circuits
        yield GaugeMetricFamily(
            "p2pai_relay_links", "TCP connections not part of a circuit.", value=r.links
        )
        made = CounterMetricFamily(
            "p2pai_relay_reservation_events",
            "Reservations by what became of them.",
            labels=["event"],
        )
        made.add_metric(["made"], c.reservations_made)
        made.add_metric(["refused"], c.reservations_refused)
        made.add_metric(["expired"], c.reservations_expired)
        yield made
        opened = CounterMetricFamily(
            "p2pai_relay_circuit_events", "Circuits by what became of them.", labels=["event"]
        )
        opened.add_metric(["opened"], c.circuits_opened)
        opened.add_metric(["refused"], c.circuits_refused)
        opened.add_metric(["not_joined"], c.circuits_failed)
        for why, n in sorted(c.circuits_closed.items()):
            opened.add_metric([f"closed_{why}"], n)
        yield opened
        yield CounterMetricFamily(
            "p2pai_relay_bytes",
            "Bytes spliced by circuits (both ways), counted as they are copied.",
            value=c.bytes_relayed,
        )
        bad = CounterMetricFamily(
            "p2pai_relay_refused_connections", "Connections refused or dropped.", labels=["why"]
        )
        bad.add_metric(["links_cap"], c.links_refused)
        bad.add_metric(["bad_preamble"], c.bad_preambles)
        bad.add_metric(["bad_control"], c.control_errors)
        yield bad


def node_punch_metrics(status: dict[str, Any]) -> Iterable[Metric]:
    """A node's hole punching (``Punching.status()``)."""
    events = CounterMetricFamily(
        "p2pai_node_punch_events",
        "Hole punches: attempts (ours), answered (theirs), punched, failed, refused, ended.",
        labels=["event"],
    )
    for name in ("attempts", "answered", "punched", "failed", "refused", "ended"):
        events.add_metric([name], status[name])
    yield events
    yield GaugeMetricFamily(
        "p2pai_node_punched_links_in",
        "Peers' links to our ROUTER carried by a punched connection now.",
        value=status["direct_in"],
    )


def node_relay_metrics(status: list[dict[str, Any]]) -> Iterable[Metric]:
    """A node's relays (``Relaying.status()``): reservation state, circuits, bytes."""
    state = GaugeMetricFamily(
        "p2pai_node_relay_reserved",
        "1 while the reservation at the relay is held.",
        labels=["relay"],
    )
    circuits = CounterMetricFamily(
        "p2pai_node_relay_circuits",
        "Circuits through the relay, by direction; errors: asked for and not opened.",
        labels=["relay", "direction"],
    )
    data = CounterMetricFamily(
        "p2pai_node_relay_bytes", "Bytes through the relay's circuits.", labels=["relay"]
    )
    punched = GaugeMetricFamily(
        "p2pai_node_relay_punched",
        "Our links to peers routed by the relay and carried by a punched connection now.",
        labels=["relay"],
    )
    for row in status:
        relay = str(row["relay"]).partition("#")[0]
        state.add_metric([relay], 1.0 if row["state"] == "reserved" else 0.0)
        circuits.add_metric([relay, "out"], row["circuits_out"])
        circuits.add_metric([relay, "in"], row["circuits_in"])
        circuits.add_metric([relay, "errors"], row["circuit_errors"])
        data.add_metric([relay], row["bytes"])
        punched.add_metric([relay], row["punched"])
    yield state
    yield punched
    yield circuits
    yield data
