"""Hole punching and relay fail-over between two homes behind NAT (issue 18, tests 3 and 4).

The topology of tests/integration/nat.py: a worker in home A, a requester (``p2pai submit``)
in home B, each behind its own router doing nftables ``masquerade`` that drops every
connection started from outside; relays on the public segment.

3. The pair talks through the relay, punches a direct path through both NATs (a
   simultaneous TCP open, netcore.net.punching), and moves to it: the worker reports the
   requester ``punched``, and the relay's byte counter stops growing while tasks flow. With
   a NAT that blocks it (a DROP rule on router A for home B's public address) the punch
   fails and the tasks keep flowing through the relay.
4. Killing the relay: the punched link carries on (every task ok). Relayed peers (punching
   blocked) with a second relay configured come back through it at once.

Runs as root where ``ip netns`` is allowed; fails (does not skip) there without ``nft``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import NodeProc, child_env, cli_argv, stop_pid
from nat import RELAY_ADDRESS, Nat, nat_fixture, run_in  # noqa: F401 - the fixture nat
from test_relay_nat import in_ns, no_traceback, stop_all

pytestmark = pytest.mark.integration

SECOND_RELAY = "10.231.100.11"
ROOT = Path(__file__).resolve().parent.parent.parent


def node_proc(
    ns: str,
    address: str,
    name: str,
    network: str,
    tmp: Path,
    *relays: str,
    extra: tuple[str, ...] = (),
) -> NodeProc:
    args: list[str] = ["--no-mdns", "--log-level", "debug", *extra]
    for relay in relays:
        args += ["--relay", relay]
    node = NodeProc(name, network, tmp / name, tmp, tuple(args))
    argv = list(node.argv)
    argv[argv.index("--interface") + 1] = address
    node.argv = in_ns(ns, argv)
    return node.start()


def relay_at(nat: Nat, tmp: Path, name: str, address: str) -> NodeProc:
    proc = NodeProc(name, "-", tmp / name, tmp)
    proc.argv = in_ns(nat.relay_ns, [
        *cli_argv(), "relay", "--json", "--data-dir", str(tmp / name), "--interface", address,
        "--port", "0", "--metrics-port", "0", "--metrics-host", address,
    ])  # fmt: skip
    return proc.start()


def relay_bytes(nat: Nat, metrics_url: str) -> float:
    """The relay's live count of bytes spliced (``p2pai_relay_bytes_total``)."""
    code = f"import urllib.request;print(urllib.request.urlopen({metrics_url!r}).read().decode())"
    text = subprocess.run(
        in_ns(nat.relay_ns, [sys.executable, "-c", code]),
        capture_output=True,
        text=True,
        timeout=20,
    ).stdout
    for line in text.splitlines():
        if line.startswith("p2pai_relay_bytes_total "):
            return float(line.split()[1])
    raise AssertionError(f"no p2pai_relay_bytes_total in {text[:1500]}")


def start_submit(
    nat: Nat, network: str, tmp: Path, relays: list[str], count: int
) -> subprocess.Popen[str]:
    home = nat.homes[1]
    argv = [
        *cli_argv(), "submit", "--json", "--interface", home.address, "--network", network,
        "--data-dir", str(tmp / "client"), "--no-mdns", "--count", str(count),
        "--concurrency", "2", "--timeout", "20", "--log-level", "debug",
    ]  # fmt: skip
    for relay in relays:
        argv += ["--relay", relay]
    return subprocess.Popen(
        in_ns(home.host_ns, argv),
        stdout=open(tmp / "submit.stdout", "w"),
        stderr=open(tmp / "submit.stderr", "w"),
        text=True,
        env=child_env(),
    )


def finish(proc: subprocess.Popen[str], tmp: Path, timeout: float = 240) -> dict[str, Any]:
    proc.wait(timeout=timeout)
    out = (tmp / "submit.stdout").read_text()
    lines = out.strip().splitlines()
    assert proc.returncode == 0 and lines, (proc.returncode, out[-2000:])
    summary: dict[str, Any] = json.loads(lines[-1])
    return summary


def served(worker: NodeProc) -> int:
    return worker.count("task_served")


def wait_until(check: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_punch_moves_the_pair_off_the_relay_and_survives_the_relay(
    nat: Nat, tmp_path: Path
) -> None:
    network = f"punch-{uuid.uuid4().hex[:10]}"
    home_a = nat.homes[0]
    relay = relay_at(nat, tmp_path, "relay", RELAY_ADDRESS)
    worker = submit = None
    try:
        ready = relay.wait_for("ready", timeout=30)
        address = ready["address"]
        worker = node_proc(home_a.host_ns, home_a.address, "worker", network, tmp_path, address)
        worker.wait_for("ready", timeout=30)
        submit = start_submit(nat, network, tmp_path, [address], count=20000)

        reach = worker.wait_for("peer_reach", timeout=40)
        assert reach["reach"] == "punched", reach
        # The relay carried the start; after the punch its byte counter stands still while
        # tasks keep flowing over the direct path.
        time.sleep(0.5)
        before, tasks_before = relay_bytes(nat, ready["metrics"]), served(worker)
        time.sleep(2.0)
        after, tasks_after = relay_bytes(nat, ready["metrics"]), served(worker)
        print(
            f"after the punch: relay +{after - before:.0f} bytes in 2 s, {tasks_after - tasks_before} tasks"
        )
        assert tasks_after - tasks_before >= 100, (tasks_before, tasks_after)
        assert after - before < 1024, (before, after)

        # Kill the relay: the punched link does not need it.
        relay.kill()
        relay.wait_exit(10)
        at_kill = served(worker)
        wait_until(lambda: served(worker) >= at_kill + 200, 20, "tasks after the relay died")
        summary = finish(submit, tmp_path)
        submit = None
        assert summary["failed"] == 0 and summary["ok"] == 20000, summary
        assert summary["accuracy"] >= 0.9
    finally:
        if submit is not None and submit.poll() is None:
            stop_pid(submit)
        stop_all(worker, relay)
    text = (tmp_path / "submit.stderr").read_text()
    assert "hole punched" in text, text[-3000:]
    assert "Traceback" not in text
    no_traceback(worker)


def test_blocked_punch_stays_relayed_and_a_second_relay_takes_over(
    nat: Nat, tmp_path: Path
) -> None:
    network = f"punch-{uuid.uuid4().hex[:10]}"
    home_a = nat.homes[0]
    nat.block_direct()
    run_in(nat.relay_ns, "ip", "addr", "add", f"{SECOND_RELAY}/24", "dev", f"rw{nat.tag}")
    relays = [
        relay_at(nat, tmp_path, "relay1", RELAY_ADDRESS),
        relay_at(nat, tmp_path, "relay2", SECOND_RELAY),
    ]
    worker = submit = None
    try:
        readies = [relay.wait_for("ready", timeout=30) for relay in relays]
        addresses = [ready["address"] for ready in readies]
        worker = node_proc(home_a.host_ns, home_a.address, "worker", network, tmp_path, *addresses)
        worker.wait_for("ready", timeout=30)
        submit = start_submit(nat, network, tmp_path, addresses, count=20000)
        wait_until(lambda: served(worker) >= 300, 40, "tasks through a relay")
        log = tmp_path / "submit.stderr"
        wait_until(lambda: "no direct path" in log.read_text(), 20, "the punch to fail")
        assert worker.count("peer_reach") == 0  # never punched: the DROP rule holds
        # Kill the relay the pair uses: it comes back through the other one.
        used = next(
            i
            for i, a in enumerate(addresses)
            if f"up at relay {a.partition('#')[0]}" in log.read_text()
        )
        before = relay_bytes(nat, readies[1 - used]["metrics"])
        relays[used].kill()
        relays[used].wait_exit(10)
        killed_at, at_kill = time.monotonic(), served(worker)
        wait_until(lambda: served(worker) > at_kill, 20, "a task after the relay died")
        gap = time.monotonic() - killed_at
        wait_until(lambda: served(worker) >= at_kill + 300, 20, "tasks through the second relay")
        assert relay_bytes(nat, readies[1 - used]["metrics"]) > before + 100_000
        print(f"fail-over: first task {gap:.2f}s after the relay died")
        assert "through relay" in log.read_text()
        summary = finish(submit, tmp_path)
        submit = None
        assert summary["failed"] == 0 and summary["ok"] == 20000, summary
    finally:
        if submit is not None and submit.poll() is None:
            stop_pid(submit)
        stop_all(worker, *relays)
    assert "Traceback" not in (tmp_path / "submit.stderr").read_text()
    no_traceback(worker)


def adversary(nat: Nat, network: str, tmp: Path, relay: str, *args: str) -> dict[str, Any]:
    home = nat.homes[1]
    argv = in_ns(home.host_ns, [
        sys.executable, str(ROOT / "tests/punch_adversary.py"), "--network", network,
        "--data-dir", str(tmp / f"adversary-{uuid.uuid4().hex[:6]}"), "--interface", home.address,
        "--relay", relay, *args,
    ])  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=child_env())
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def punch_events(nat: Nat, metrics_url: str) -> dict[str, float]:
    code = f"import urllib.request;print(urllib.request.urlopen({metrics_url!r}).read().decode())"
    text = subprocess.run(
        in_ns(nat.homes[0].host_ns, [sys.executable, "-c", code]),
        capture_output=True, text=True, timeout=20,
    ).stdout  # fmt: skip
    found = {}
    for line in text.splitlines():
        if line.startswith("p2pai_node_punch_events_total{"):
            found[line.split('"')[1]] = float(line.split()[-1])
        elif line.startswith("p2pai_node_punched_links_in "):
            found["links_in"] = float(line.split()[-1])
    return found


def test_a_hostile_relayed_peer_can_neither_aim_punches_nor_slip_in_unproven(
    nat: Nat, tmp_path: Path
) -> None:
    network = f"punch-{uuid.uuid4().hex[:10]}"
    home_a = nat.homes[0]
    relay = relay_at(nat, tmp_path, "relay", RELAY_ADDRESS)
    worker = None
    try:
        address = relay.wait_for("ready", timeout=30)["address"]
        worker = node_proc(
            home_a.host_ns, home_a.address, "worker", network, tmp_path, address,
            extra=("--metrics-port", "19464", "--metrics-host", home_a.address),
        )  # fmt: skip
        metrics = worker.wait_for("ready", timeout=30)
        url = f"http://{home_a.address}:19464/metrics"  # the namespace's own port space

        # 50 punches at once toward 50 third parties: one is answered (a few SYNs for the
        # window), the rest refused at once; the victim keeps serving.
        flood = adversary(nat, network, tmp_path, address, "--mode", "flood", "--count", "50")
        assert flood["ok"] <= 1, flood
        assert flood["errors"].get("overloaded", 0) >= 49 - flood["ok"], flood
        events = punch_events(nat, url)
        assert events["answered"] <= 1 and events["punched"] == 0, events

        # A connection that shows a wrong token is never spliced into the ROUTER.
        bad = adversary(nat, network, tmp_path, address, "--mode", "bad-token")
        assert bad["ok"] == 1 and bad.get("connected"), bad
        assert bad["closed_by_victim"], bad
        events = punch_events(nat, url)
        print(f"flood {flood}, bad token {bad}, victim's punch events {events}")
        assert events["punched"] == 0 and events.get("links_in", 0) == 0, events
        assert events["failed"] >= 1, events
        assert metrics["peer_id"]
    finally:
        stop_all(worker, relay)
    no_traceback(worker)


def node_metrics(ns: str, url: str) -> str:
    code = f"import urllib.request;print(urllib.request.urlopen({url!r}).read().decode())"
    done = subprocess.run(
        in_ns(ns, [sys.executable, "-c", code]), capture_output=True, text=True, timeout=20
    )
    return done.stdout


def punched_links(ns: str, url: str) -> float:
    """Our DEALER links carried by a punched connection (``p2pai_node_relay_punched``)."""
    return sum(
        float(line.split()[-1])
        for line in node_metrics(ns, url).splitlines()
        if line.startswith("p2pai_node_relay_punched{")
    )


def test_two_workers_punch_both_ways_and_keep_both_when_the_relay_dies(
    nat: Nat, tmp_path: Path
) -> None:
    """Both ends dial each other (each is a worker): each DEALER's link is punched, and a
    relayed hello on the other direction does not undo it; killing the relay leaves both."""
    network = f"punch-{uuid.uuid4().hex[:10]}"
    relay = relay_at(nat, tmp_path, "relay", RELAY_ADDRESS)
    nodes: list[NodeProc] = []
    try:
        address = relay.wait_for("ready", timeout=30)["address"]
        for name, home in zip(("wa", "wb"), nat.homes, strict=True):
            nodes.append(node_proc(
                home.host_ns, home.address, name, network, tmp_path, address,
                extra=("--metrics-port", "19464", "--metrics-host", home.address),
            ))  # fmt: skip
        for node in nodes:
            node.wait_for("ready", timeout=30)
        urls = [(h.host_ns, f"http://{h.address}:19464/metrics") for h in nat.homes]
        wait_until(lambda: all(punched_links(ns, url) >= 1 for ns, url in urls), 40, "both punched")
        relay.kill()
        relay.wait_exit(10)
        time.sleep(5.0)  # longer than a peer takes to turn evasive (3 s) if its link died
        assert all(punched_links(ns, url) >= 1 for ns, url in urls)
        for node in nodes:
            assert node.count("peer_down") == 0 and node.count("peer_evasive") == 0, node.name
            reach = [e["reach"] for e in node.snapshot("peer_reach")]
            assert reach and reach[-1] == "punched", (node.name, reach)
    finally:
        stop_all(*nodes, relay)
    no_traceback(*nodes)
