"""Several real ``p2pai node`` processes on 127.0.0.1: discovery, tasks, failures, leaving."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

DISCOVERY_TIMEOUT_S = 15.0
LEAVE_TIMEOUT_S = 5.0  # far below the 10 s expiry: only a bye or an mDNS goodbye is this fast


def start_swarm(start_node: Callable[..., Any], names: Sequence[str]) -> list[Any]:
    """Start all nodes at once, then wait until each is ready."""
    nodes = [start_node(name, wait_ready=False) for name in names]
    for node in nodes:
        assert node.ready["endpoint"].startswith("tcp://127.0.0.1:")
    return nodes


def wait_mesh(nodes: Sequence[Any], timeout: float = DISCOVERY_TIMEOUT_S) -> dict[str, float]:
    """Every node reports ``peer_up`` for every other; returns discovery delays (seconds)."""
    deadline = time.monotonic() + timeout
    delays: dict[str, float] = {}
    for node in nodes:
        for other in nodes:
            if other is node:
                continue
            up = node.wait_for(
                "peer_up",
                lambda e, o=other: e["peer_id"] == o.peer_id and e["endpoint"] == o.endpoint,
                max(0.1, deadline - time.monotonic()),
            )
            assert up["source"] in ("mdns", "hello"), up
            later_ready = max(node.ready["t"], other.ready["t"])
            delays[f"{node.name}->{other.name}"] = max(0.0, up["t"] - later_ready)
    return delays


def parse_summary(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.strip()]
    assert len(lines) == 1, f"submit --json must print exactly one line, got {stdout!r}"
    summary = json.loads(lines[0])
    assert isinstance(summary, dict)
    return summary


def submit_args(network: str, data_dir: Path, *extra: str) -> list[str]:
    return [
        "submit", "--json",
        "--interface", "127.0.0.1",
        "--network", network,
        "--data-dir", str(data_dir),
        "--name", "submitter",
        *extra,
    ]  # fmt: skip


def test_three_nodes_discover_each_other(start_node: Callable[..., Any]) -> None:
    nodes = start_swarm(start_node, ["a", "b", "c"])
    delays = wait_mesh(nodes)
    print(f"\ndiscovery delays after the later 'ready' (s): {delays}")
    ids = {n.peer_id for n in nodes}
    assert len(ids) == 3, "each node has its own identity"
    for node in nodes:
        # `ready` is the first line a consumer of `node --json` sees, even when a peer's
        # hello reaches the node while it is still registering its mDNS service.
        first = node.snapshot()[0]
        assert first["event"] == "ready", f"{node.name}: first event is {first}"
        assert node.snapshot("error") == []
        # One peer_up per peer: being learnt by mDNS *and* by hello announces it once.
        for other in nodes:
            if other is not node:
                assert node.count("peer_up", lambda e, o=other: e["peer_id"] == o.peer_id) == 1
        assert node.alive()


def test_submit_spreads_over_three_workers(
    start_node: Callable[..., Any],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    network: str,
    tmp_path: Path,
) -> None:
    nodes = start_swarm(start_node, ["w1", "w2", "w3"])
    res = run_cli(
        *submit_args(network, tmp_path / "submit", "--wait-peers", "3", "--count", "360",
                     "--timeout", "20"),
        timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    summary = parse_summary(res.stdout)
    print(f"\nsubmit 360 over 3 workers: {summary}")
    assert summary["tasks"] == 360
    assert summary["ok"] == 360
    assert summary["failed"] == 0
    assert summary["errors"] == {}
    assert summary["accuracy"] is not None and summary["accuracy"] >= 0.95
    workers = summary["workers"]
    ids = {n.peer_id for n in nodes}
    assert set(workers) <= ids, f"unknown workers {set(workers) - ids}"
    assert sum(workers.values()) == 360
    assert len(workers) >= 2, f"tasks did not spread: {workers}"

    # Each node's own account agrees: it served (at least) what the client credits it with,
    # for the client that greeted it, and saw that client leave with `bye`.
    for node in nodes:
        client = node.wait_for("peer_up", lambda e: e["name"] == "submitter", timeout=5)
        credited = workers.get(node.peer_id, 0)
        if credited:
            node.wait_for(
                "task_served",
                lambda e, c=client: e["requester"] == c["peer_id"] and e["ok"],
                timeout=10,
                count=credited,
            )
        down = node.wait_for(
            "peer_down", lambda e, c=client: e["peer_id"] == c["peer_id"], timeout=LEAVE_TIMEOUT_S
        )
        assert down["reason"] in ("bye", "goodbye"), down


def test_sigkill_of_a_worker_during_submit_loses_no_task(
    start_node: Callable[..., Any],
    popen_cli: Callable[..., subprocess.Popen[str]],
    network: str,
    tmp_path: Path,
) -> None:
    nodes = start_swarm(start_node, ["k1", "k2", "victim"])
    wait_mesh(nodes)
    victim = nodes[2]
    submit = popen_cli(
        *submit_args(network, tmp_path / "submit", "--wait-peers", "3", "--count", "2000",
                     "--concurrency", "32", "--timeout", "20"),
    )  # fmt: skip
    victim.wait_for("task_served", timeout=30, count=20)
    still_running = submit.poll() is None
    killed_at = time.time()
    victim.kill()
    assert victim.wait_exit(5) == -9
    stdout, stderr = submit.communicate(timeout=90)
    assert still_running, "submit finished before the kill: the test proved nothing"
    assert submit.returncode == 0, stderr
    assert "Traceback" not in stderr
    summary = parse_summary(stdout)
    print(f"\nsubmit 2000 with a worker killed: {summary}")
    assert summary["tasks"] == 2000
    assert summary["ok"] + summary["failed"] == summary["tasks"], "each outcome exactly once"
    assert summary["ok"] == 2000, summary
    assert summary["failed"] == 0, summary
    assert sum(summary["workers"].values()) == 2000
    assert set(summary["workers"]) <= {n.peer_id for n in nodes}

    # The survivors notice the silent peer: evasive after ~3 s, dropped after ~10 s.
    for node in nodes[:2]:
        evasive = node.wait_for("peer_evasive", lambda e: e["peer_id"] == victim.peer_id, 20)
        down = node.wait_for("peer_down", lambda e: e["peer_id"] == victim.peer_id, 20)
        assert down["reason"] == "expired", down
        assert evasive["t"] <= down["t"]
        assert down["t"] - killed_at > 5, "expired long before the 10 s setting"
        assert node.alive()


def test_graceful_stop_is_seen_as_bye(start_node: Callable[..., Any]) -> None:
    nodes = start_swarm(start_node, ["s1", "s2", "leaver"])
    wait_mesh(nodes)
    # Steady state: an idle mesh keeps itself alive with pings (every 1 s of silence), so no
    # peer turns evasive. Waiting past one ping round also makes the leaver stop mid-ping.
    for node in nodes:
        with pytest.raises(AssertionError):
            node.wait_for("peer_evasive", timeout=0.5)
    assert all(n.snapshot("peer_down") == [] for n in nodes)
    leaver = nodes[2]
    stopped_at = time.time()
    leaver.terminate()
    for node in nodes[:2]:
        down = node.wait_for(
            "peer_down", lambda e: e["peer_id"] == leaver.peer_id, timeout=LEAVE_TIMEOUT_S
        )
        assert down["reason"] in ("bye", "goodbye"), down
        assert down["t"] - stopped_at < LEAVE_TIMEOUT_S
    assert leaver.wait_exit(5) == 0, leaver.stderr()[-2000:]
    exited = time.time() - stopped_at
    seen = {n.name: round(n.snapshot("peer_down")[0]["t"] - stopped_at, 3) for n in nodes[:2]}
    print(f"\nSIGTERM -> peer_down seen after {seen} s; exit 0 after {exited:.2f} s")
    assert "Traceback" not in leaver.stderr()
    # No ghost: nothing the leaver sent while leaving (a ping answered hello_required, a late
    # hello) nor a lingering mDNS record brings it back. Its bye and its mDNS goodbye race, so
    # a hello queued before the stop may re-announce it for an instant; the bye behind that
    # hello must take it down again: every peer_up is matched by a peer_down.
    for node in nodes[:2]:
        with pytest.raises(AssertionError):
            node.wait_for("peer_up", lambda e: e["peer_id"] == leaver.peer_id, 1.5, count=3)
        ups = node.count("peer_up", lambda e: e["peer_id"] == leaver.peer_id)
        downs = node.count("peer_down", lambda e: e["peer_id"] == leaver.peer_id)
        assert ups == downs, f"{node.name}: ghost of the leaver: {node.snapshot()}"
        assert node.alive()

    # Then the second of three leaves the last one, after more idle time (pings in flight).
    s1, s2 = nodes[:2]
    s1.terminate()
    s2.wait_for("peer_down", lambda e: e["peer_id"] == s1.peer_id, timeout=LEAVE_TIMEOUT_S)
    assert s1.wait_exit(5) == 0
    with pytest.raises(AssertionError):
        s2.wait_for("peer_up", lambda e: e["peer_id"] == s1.peer_id, 1.5, count=3)
    ups = s2.count("peer_up", lambda e: e["peer_id"] == s1.peer_id)
    downs = s2.count("peer_down", lambda e: e["peer_id"] == s1.peer_id)
    assert ups == downs, f"ghost of s1: {s2.snapshot()}"


def test_late_node_sees_existing_peers(start_node: Callable[..., Any]) -> None:
    first = start_swarm(start_node, ["early1", "early2"])
    wait_mesh(first)
    # A node of another swarm on the same host must stay invisible to this one.
    stranger = start_node("stranger", net=f"{first[0].network}-other")
    late = start_node("late")
    delays = wait_mesh([*first, late])
    print(f"\nlate joiner discovery delays (s): {delays}")
    for node in [*first, late]:
        with pytest.raises(AssertionError):
            node.wait_for("peer_up", lambda e: e["peer_id"] == stranger.peer_id, timeout=1.0)
    assert stranger.snapshot("peer_up") == []


def test_restart_with_the_same_identity_rejoins(
    start_node: Callable[..., Any], tmp_path: Path
) -> None:
    nodes = start_swarm(start_node, ["r1", "r2", "phoenix"])
    wait_mesh(nodes)
    phoenix = nodes[2]
    old_id = phoenix.peer_id
    assert phoenix.stop() == 0
    for node in nodes[:2]:
        node.wait_for("peer_down", lambda e: e["peer_id"] == old_id, timeout=LEAVE_TIMEOUT_S)
    # Same data dir, so the same key and peer_id; a new port. Well within the 2 s during
    # which mDNS sightings of a departed peer are ignored: its hello brings it back.
    again = start_node("phoenix-again", data_dir=tmp_path / "nodes" / "phoenix")
    assert again.peer_id == old_id
    for node in nodes[:2]:
        # (Matched by endpoint: a hello queued just before the stop can race the mDNS goodbye
        # and re-announce the old process for an instant; its bye follows at once.)
        up = node.wait_for(
            "peer_up",
            lambda e: e["peer_id"] == old_id and e["endpoint"] == again.endpoint,
            DISCOVERY_TIMEOUT_S,
        )
        assert up["name"] == "phoenix-again"
    wait_mesh([*nodes[:2], again])
    assert all(n.alive() for n in [*nodes[:2], again])


def test_peers_command_lists_running_nodes(
    start_node: Callable[..., Any],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    network: str,
    tmp_path: Path,
) -> None:
    nodes = start_swarm(start_node, ["p1", "p2", "p3"])
    wait_mesh(nodes)
    res = run_cli(
        "peers", "--json", "--timeout", "2",
        "--interface", "127.0.0.1", "--network", network, "--data-dir", str(tmp_path / "peers"),
        timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    rows = json.loads(res.stdout)
    by_id = {row["peer_id"]: row for row in rows}
    assert set(by_id) == {n.peer_id for n in nodes}, rows
    for node in nodes:
        row = by_id[node.peer_id]
        assert row["name"] == node.name
        assert row["endpoint"] == node.endpoint
        assert row["caps"] == ["infer"]
        assert "digits" in row["models"]
        assert row["rtt_ms"] is not None and row["rtt_ms"] > 0


def test_submit_without_workers_fails_with_one_line_and_hints(
    run_cli: Callable[..., subprocess.CompletedProcess[str]], network: str, tmp_path: Path
) -> None:
    started = time.monotonic()
    res = run_cli(*submit_args(network, tmp_path / "submit", "--timeout", "1"), timeout=60)
    took = time.monotonic() - started
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    assert lines[0].startswith("p2pai: error: "), lines[0]
    assert "found 0 of 1 worker" in lines[0]
    assert network in lines[0]
    assert "check:" in lines[0] and "mDNS" in lines[0], "the error must carry the LAN hints"
    assert res.stdout.strip() == ""
    assert took < 30
