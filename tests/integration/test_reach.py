"""Reach and observability with real ``p2pai`` processes on 127.0.0.1.

* static peers (``--peer``, mDNS off so only they can join the nodes) and peer sharing: one
  static entry joins a whole swarm; a static peer that restarts is connected again;
* ``--metrics-port`` on the command line; ``--log-format json`` on stderr;
* ``p2pai doctor`` where mDNS answers (a running node on 127.0.0.1): it finds the node, and
  names its network when ours differs.
"""

from __future__ import annotations

import asyncio
import json
import socket
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import LOOPBACK, NodeProc
from reach_helpers import http_get, parse_metrics

pytestmark = pytest.mark.integration


def static(node: NodeProc) -> str:
    return f"{node.endpoint}#{node.key}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def test_one_static_peer_joins_the_swarm_and_is_retried(
    start_node: Callable[..., NodeProc], tmp_path: Path
) -> None:
    hub = start_node("hub", "--no-mdns")
    hub_port = hub.port
    a = start_node("a", "--no-mdns", "--peer", static(hub))
    b = start_node("b", "--no-mdns", "--peer", static(hub))
    # a and b only know the hub; each learns the other from the peers list of a hello.
    up = a.wait_peer_up(hub.peer_id)
    assert up["source"] == "static"
    assert b.wait_peer_up(hub.peer_id)["source"] == "static"
    a.wait_peer_up(b.peer_id, timeout=20)
    b.wait_peer_up(a.peer_id, timeout=20)
    sources = {e["source"] for e in a.snapshot("peer_up") + b.snapshot("peer_up")
               if e["peer_id"] in (a.peer_id, b.peer_id)}  # fmt: skip
    assert sources & {"shared", "hello"}, sources

    # The hub goes away (bye) and comes back on the same port: a connects again by itself.
    hub.stop()
    a.wait_for("peer_down", lambda e: e["peer_id"] == hub.peer_id, timeout=15)
    again = start_node("hub", "--no-mdns", "--port", str(hub_port), data_dir=hub.data_dir)
    assert again.peer_id == hub.peer_id
    a.wait_for("peer_up", lambda e: e["peer_id"] == hub.peer_id, timeout=20, count=2)


def test_metrics_flag_and_json_logs(start_node: Callable[..., NodeProc]) -> None:
    port = free_port()
    node = start_node("m", "--metrics-port", str(port), "--log-format", "json", "--no-mdns")
    status, body = asyncio.run(http_get(LOOPBACK, port, "/metrics"))
    assert status == 200
    metrics = parse_metrics(body)
    assert any(k.startswith("p2pai_node_info{") for k in metrics)
    assert metrics["p2pai_tasks_submitted_total"] == 0
    node.stop()
    lines = [line for line in node.stderr().splitlines() if line.strip()]
    assert lines, "the node logged nothing"
    for line in lines:
        entry = json.loads(line)
        assert {"t", "time", "level", "logger", "message"} <= set(entry)
    assert any("metrics on http://127.0.0.1:" in json.loads(line)["message"] for line in lines)


def doctor(run_cli: Callable[..., Any], *args: str) -> tuple[int, dict[str, Any]]:
    done = run_cli("doctor", "--interface", LOOPBACK, "--json", "--timeout", "2", *args, timeout=90)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout)


def findings(report: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["check"] == check]


def test_doctor_where_mdns_answers(
    start_node: Callable[..., NodeProc], run_cli: Callable[..., Any], network: str, tmp_path: Path
) -> None:
    node = start_node("target")
    code, report = doctor(run_cli, "--network", network, "--data-dir", str(tmp_path / "doc"))
    mdns = [f for f in findings(report, "mdns") if f["status"] == "ok"]
    assert mdns, report
    assert node.peer_id in json.dumps(mdns[0]["details"])
    connect = findings(report, "connect")
    assert any(f["status"] == "ok" and "target" in f["summary"] for f in connect), connect
    assert not [f for f in findings(report, "multicast") if f["status"] == "problem"], report
    assert any(f["status"] == "info" for f in findings(report, "interfaces")), report
    assert not findings(report, "identity") or all(
        f["status"] == "ok" for f in findings(report, "identity")
    ), report
    assert "fix" in report["findings"][0]

    # The same swarm looked at under another name: doctor names the one that answered.
    other = f"other-{uuid.uuid4().hex[:8]}"
    code, report = doctor(run_cli, "--network", other, "--data-dir", str(tmp_path / "doc"))
    named = findings(report, "network")
    assert named and named[0]["status"] == "problem", report
    assert network in named[0]["details"]["networks"], named
    assert f"--network {network}" in named[0]["fix"] or "--network" in named[0]["fix"]
    assert code == 2


def test_doctor_reports_a_dead_static_peer(run_cli: Callable[..., Any], tmp_path: Path) -> None:
    import zmq

    key = zmq.curve_keypair()[0].decode("ascii")
    dead = f"tcp://{LOOPBACK}:{free_port()}#{key}"
    code, report = doctor(
        run_cli, "--network", f"dead-{uuid.uuid4().hex[:8]}", "--no-mdns", "--peer", dead,
        "--data-dir", str(tmp_path / "doc"),
    )  # fmt: skip
    static_findings = findings(report, "static")
    assert static_findings and static_findings[0]["status"] == "problem", report
    assert "did not answer" in static_findings[0]["summary"]
    assert code == 2


def test_bad_peer_is_one_line(run_cli: Callable[..., Any]) -> None:
    done = run_cli("node", "--interface", LOOPBACK, "--peer", "tcp://127.0.0.1:1#nokey")
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("p2pai: error: --peer"), done.stderr
