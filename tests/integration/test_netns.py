"""Two subnets in network namespaces: mDNS inside each, one static ``--peer`` across a router.

Topology (every name has a random suffix; every address is 10.231.x.x inside the namespaces;
nothing is created in the machine's own namespace)::

    h1a 10.231.1.2 ─┐                              ┌─ h2a 10.231.2.2
    h1b 10.231.1.3 ─┼─ br0 (ns b1) ── router ── br0 (ns b2) ─┼─ h2b 10.231.2.3
    h1c 10.231.1.4 ─┘   10.231.1.1   (forwarding)  10.231.2.1

The router forwards unicast but not multicast, so mDNS stays in each subnet. h1a gets one
static peer, h2a; the rest of the remote swarm arrives through the peers lists in ``hello``.
h1c has multicast turned off: doctor there finds why nothing is seen.

Needs root and ``ip netns``; skipped with the reason otherwise. The namespaces (and with them
their veths and bridges) are removed in a finally, even when a test fails; every process is
stopped by PID.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from conftest import NodeProc, child_env, cli_argv

pytestmark = pytest.mark.integration

SUBNET_1 = "10.231.1"
SUBNET_2 = "10.231.2"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=20, check=check)


@dataclass
class Topology:
    suffix: str
    hosts: dict[str, tuple[str, str]] = field(default_factory=dict)
    """host name -> (namespace, address)"""
    namespaces: list[str] = field(default_factory=list)

    def ns(self, name: str) -> str:
        return f"p2{name}-{self.suffix}"

    def add_ns(self, name: str) -> str:
        ns = self.ns(name)
        ip("netns", "add", ns)
        self.namespaces.append(ns)
        ip("-n", ns, "link", "set", "lo", "up")
        return ns

    def build(self) -> None:
        router = self.add_ns("rt")
        for index, subnet in ((1, SUBNET_1), (2, SUBNET_2)):
            bridge = self.add_ns(f"b{index}")
            ip("-n", bridge, "link", "add", "br0", "type", "bridge")
            ip("-n", bridge, "link", "set", "br0", "up")
            # The router's leg on this subnet.
            ip("-n", bridge, "link", "add", "rt", "type", "veth", "peer", "name", f"eth{index}",
               "netns", router)  # fmt: skip
            ip("-n", bridge, "link", "set", "rt", "master", "br0", "up")
            ip("-n", router, "addr", "add", f"{subnet}.1/24", "dev", f"eth{index}")
            ip("-n", router, "link", "set", f"eth{index}", "up")
        subprocess.run(["ip", "netns", "exec", router, "sysctl", "-qw", "net.ipv4.ip_forward=1"],
                       check=True, timeout=20)  # fmt: skip
        for name, subnet, last in (("h1a", SUBNET_1, 2), ("h1b", SUBNET_1, 3), ("h1c", SUBNET_1, 4),
                                   ("h2a", SUBNET_2, 2), ("h2b", SUBNET_2, 3)):  # fmt: skip
            host = self.add_ns(name)
            bridge = self.ns(f"b{name[1]}")
            ip("-n", bridge, "link", "add", name, "type", "veth", "peer", "name", "eth0",
               "netns", host)  # fmt: skip
            ip("-n", bridge, "link", "set", name, "master", "br0", "up")
            ip("-n", host, "addr", "add", f"{subnet}.{last}/24", "dev", "eth0")
            ip("-n", host, "link", "set", "eth0", "up")
            ip("-n", host, "route", "add", "default", "via", f"{subnet}.1")
            self.hosts[name] = (host, f"{subnet}.{last}")

    def teardown(self) -> None:
        for ns in reversed(self.namespaces):
            # Anything still running inside (it should not be): stopped by PID, ours only.
            pids = ip("netns", "pids", ns, check=False).stdout.split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
            ip("netns", "del", ns, check=False)
        self.namespaces.clear()


def netns_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "network namespaces need root"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = f"p2probe-{secrets.token_hex(3)}"
    done = ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"`ip netns add` is not allowed here: {done.stderr.strip()}"
    ip("netns", "del", probe, check=False)
    return None


@pytest.fixture(scope="module")
def topology() -> Iterator[Topology]:
    reason = netns_unavailable()
    if reason:
        pytest.skip(reason)
    topo = Topology(secrets.token_hex(3))
    try:
        topo.build()
        yield topo
    finally:
        topo.teardown()


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


@pytest.fixture
def start_in(topology: Topology, tmp_path: Path, network: str) -> Iterator[Callable[..., NodeProc]]:
    started: list[NodeProc] = []
    log_dir = tmp_path / "logs"
    log_dir.mkdir(exist_ok=True)

    def start(host: str, *extra: str) -> NodeProc:
        ns, address = topology.hosts[host]
        node = NodeProc(host, network, tmp_path / "nodes" / host, log_dir)
        node.argv = in_ns(ns, [*cli_argv(), "node", "--json", "--interface", address,
                               "--network", network, "--data-dir", str(node.data_dir),
                               "--name", host, *extra])  # fmt: skip
        started.append(node)
        node.start()
        node.wait_for("ready", timeout=30)
        return node

    yield start
    for node in started:
        node.stop()


def run_in(
    topology: Topology, host: str, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    ns, _ = topology.hosts[host]
    return subprocess.run(
        in_ns(ns, [*cli_argv(), *args]), capture_output=True, text=True, timeout=timeout,
        env=child_env(), stdin=subprocess.DEVNULL, check=False,
    )  # fmt: skip


def test_two_subnets_one_static_peer(
    topology: Topology, start_in: Callable[..., NodeProc], network: str, tmp_path: Path
) -> None:
    h2a = start_in("h2a")
    h2b = start_in("h2b")
    h1b = start_in("h1b")
    h1a = start_in("h1a", "--peer", f"{h2a.endpoint}#{h2a.key}")
    remote = {h2a.peer_id, h2b.peer_id}
    local = {h1a.peer_id, h1b.peer_id}

    # Local peers by mDNS, the remote one by the static entry, the rest by sharing.
    assert h1a.wait_peer_up(h1b.peer_id, timeout=20)["source"] in ("mdns", "hello")
    assert h1a.wait_peer_up(h2a.peer_id, timeout=20)["source"] == "static"
    h2a.wait_peer_up(h2b.peer_id, timeout=20)
    for node, others in ((h1a, remote | local), (h1b, remote | local),
                         (h2a, remote | local), (h2b, remote | local)):  # fmt: skip
        for peer_id in others - {node.peer_id}:
            node.wait_peer_up(peer_id, timeout=30)
    # mDNS never crossed the router: no node learned a peer of the other subnet by mDNS.
    for node, other_side in ((h1a, remote), (h1b, remote), (h2a, local), (h2b, local)):
        crossed = [e for e in node.snapshot("peer_up") if e["peer_id"] in other_side]
        assert crossed and all(e["source"] != "mdns" for e in crossed), crossed
        assert all(e["endpoint"].startswith("tcp://10.231.") for e in node.snapshot("peer_up"))

    # Tasks cross: a client on subnet 1 (it sees the subnet-2 workers only through sharing).
    done = run_in(
        topology, "h1b", "submit", "--interface", topology.hosts["h1b"][1], "--network", network,
        "--data-dir", str(tmp_path / "client"), "--count", "200", "--concurrency", "32",
        "--wait-peers", "4", "--timeout", "30", "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["ok"] == 200, summary
    crossed = sum(n for peer_id, n in summary["workers"].items() if peer_id in remote)
    assert crossed > 0, summary["workers"]
    served_remote = h2a.count("task_served") + h2b.count("task_served")
    assert served_remote == crossed, (served_remote, summary)


def test_doctor_in_the_namespaces(
    topology: Topology, start_in: Callable[..., NodeProc], network: str, tmp_path: Path
) -> None:
    h1b = start_in("h1b")
    h2a = start_in("h2a")
    other = f"other-{uuid.uuid4().hex[:8]}"

    def doctor(host: str, *args: str) -> tuple[int, dict[str, Any]]:
        done = run_in(topology, host, "doctor", "--interface", topology.hosts[host][1],
                      "--data-dir", str(tmp_path / f"doc-{host}"), "--json", "--timeout", "2",
                      *args)  # fmt: skip
        assert done.stdout.strip(), done.stderr
        return done.returncode, json.loads(done.stdout)

    def statuses(report: dict[str, Any], check: str) -> list[str]:
        return [f["status"] for f in report["findings"] if f["check"] == check]

    # Where mDNS answers: h1a sees h1b by mDNS and reaches h2a through the static peer.
    code, report = doctor("h1a", "--network", network, "--peer", f"{h2a.endpoint}#{h2a.key}")
    assert "ok" in statuses(report, "mdns"), report
    assert h1b.peer_id in json.dumps(report)
    assert "ok" in statuses(report, "static") and "ok" in statuses(report, "multicast"), report
    assert "ok" in statuses(report, "interfaces"), report
    assert code == 0, report

    # Same subnet, other name: doctor names the network that answered.
    code, report = doctor("h1a", "--network", other)
    named = [f for f in report["findings"] if f["check"] == "network"]
    assert named and network in named[0]["details"]["networks"], report
    assert code == 2

    # Where mDNS cannot work: multicast off on h1c's only interface.
    ns = topology.hosts["h1c"][0]
    ip("-n", ns, "link", "set", "eth0", "multicast", "off")
    try:
        code, report = doctor("h1c", "--network", network)
    finally:
        ip("-n", ns, "link", "set", "eth0", "multicast", "on")
    multicast = [f for f in report["findings"] if f["check"] == "multicast"]
    assert multicast and multicast[0]["status"] == "problem", report
    assert "multicast on" in multicast[0]["fix"]
    assert code == 2
