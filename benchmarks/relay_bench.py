"""Issue 18's relay targets, on the NAT topology of tests/integration/nat.py (namespaces, root).

* **Round trip**: ``submit --concurrency 1`` from home B, p50 task latency: through the relay to
  a worker in home A (hole punching blocked by a DROP rule on router A), against direct to a
  worker on the public segment (``--peer``), both out of home B's NAT. Target: relayed <= 2x
  direct. Also **punched**: the same pair with punching allowed (the first tasks go through
  the relay, the rest over the punched path), and how long after ``peer_up`` the punch held.
* **Join**: a node in home B that knows only the relay (``--no-mdns --relay``): time from its
  ``ready`` to the worker's ``peer_up``, median of ``--joins`` runs. Target: <= 1 s.
* **Idle reservations**: ``--idle`` (200) reservations held (renewed) from home B, the relay's
  CPU over ``--window`` seconds and its RSS. Targets: < 2% of a core, < 150 MB.

Prints one JSON object; every process is stopped by PID, the namespaces removed.

Usage: PYTHONPATH=. python benchmarks/relay_bench.py [--tasks 1000] [--joins 5] [--idle 200]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "integration"))

from conftest import NodeProc, child_env, cli_argv
from nat import RELAY_ADDRESS, Nat

IDLE_CLIENTS = r"""
import asyncio, sys, msgpack, zmq, zmq.asyncio
relay_key, endpoint, n, net = sys.argv[1].encode(), sys.argv[2], int(sys.argv[3]), sys.argv[4]
async def main():
    ctx = zmq.asyncio.Context()
    socks = []
    for i in range(n):
        pub, sec = zmq.curve_keypair()
        s = ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.CURVE_SERVERKEY, relay_key)
        s.setsockopt(zmq.CURVE_PUBLICKEY, pub)
        s.setsockopt(zmq.CURVE_SECRETKEY, sec)
        s.setsockopt(zmq.HEARTBEAT_IVL, 5000)
        s.setsockopt(zmq.HEARTBEAT_TIMEOUT, 15000)
        s.connect(endpoint)
        socks.append(s)
    held = 0
    while True:
        for i, s in enumerate(socks):
            await s.send(msgpack.packb({"v": 1, "t": "relay_reserve", "id": i.to_bytes(16, "little"),
                                        "net": net, "name": f"idle{i}", "caps": []}))
        for s in socks:  # read what came (replies, registry pushes)
            while await s.poll(0):
                await s.recv()
        if not held:
            held = 1
            print("reserved", flush=True)
        await asyncio.sleep(10)
asyncio.run(main())
"""


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def node(ns: str, address: str, name: str, network: str, tmp: Path, *extra: str) -> NodeProc:
    proc = NodeProc(name, network, tmp / name, tmp, extra)
    argv = list(proc.argv)
    argv[argv.index("--interface") + 1] = address
    proc.argv = ["ip", "netns", "exec", ns, *argv]
    return proc.start()


def _log_time(line: str) -> float:
    stamp = line[:23]  # "2026-12-07 20:41:17,119"
    return time.mktime(time.strptime(stamp[:19], "%Y-%m-%d %H:%M:%S")) + int(stamp[20:]) / 1000


def submit_p50(nat: Nat, network: str, tmp: Path, count: int, *reach: str) -> dict[str, Any]:
    home = nat.homes[1]
    argv = [
        "ip", "netns", "exec", home.host_ns, *cli_argv(), "submit", "--json",
        "--interface", home.address, "--network", network, "--data-dir", str(tmp / "client"),
        "--no-mdns", *reach, "--count", str(count), "--concurrency", "1", "--timeout", "20",
        "--log-level", "info",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=child_env())
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    out = {"ok": summary["ok"], "p50_ms": summary["latency_ms"]["p50"]}
    lines = done.stderr.splitlines()
    up = next((line for line in lines if " up at relay " in line), None)
    punched = next((line for line in lines if "hole punched" in line), None)
    if up and punched:
        out["punched_after_peer_up_ms"] = round((_log_time(punched) - _log_time(up)) * 1000)
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--joins", type=int, default=5)
    parser.add_argument("--idle", type=int, default=200)
    parser.add_argument("--window", type=float, default=30.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="relaybench-"))
    network = f"rb-{uuid.uuid4().hex[:8]}"
    nat = Nat()
    procs: list[Any] = []
    out: dict[str, Any] = {}
    try:
        relay = NodeProc("relay", "-", tmp / "relay", tmp)
        relay.argv = ["ip", "netns", "exec", nat.relay_ns, *cli_argv(), "relay", "--json",
                      "--data-dir", str(tmp / "relay"), "--interface", RELAY_ADDRESS, "--port", "0"]  # fmt: skip
        procs.append(relay.start())
        ready = relay.wait_for("ready", timeout=30)
        address = ready["address"]
        home_a = nat.homes[0]
        worker = node(home_a.host_ns, home_a.address, "wa", network, tmp, "--no-mdns",
                      "--relay", address, "--capacity", "1")  # fmt: skip
        public = node(nat.relay_ns, RELAY_ADDRESS, "wp", network + "-direct", tmp, "--no-mdns",
                      "--capacity", "1")  # fmt: skip
        procs += [worker, public]
        worker.wait_for("ready", timeout=30)
        direct_ready = public.wait_for("ready", timeout=30)
        peer = f"{direct_ready['endpoint']}#{direct_ready['key']}"
        punched = submit_p50(nat, network, tmp, args.tasks, "--relay", address)
        direct = submit_p50(nat, network + "-direct", tmp, args.tasks, "--peer", peer)
        nat.block_direct()  # from here on no punch passes: every task crosses the relay
        relayed = submit_p50(nat, network, tmp, args.tasks, "--relay", address)
        out["round_trip"] = {
            "relayed": relayed,
            "punched": punched,
            "direct": direct,
            "ratio": round(relayed["p50_ms"] / direct["p50_ms"], 2),
            "punched_ratio": round(punched["p50_ms"] / direct["p50_ms"], 2),
            "target": "<= 2",
        }

        joins = []
        home_b = nat.homes[1]
        for i in range(args.joins):
            joiner = node(home_b.host_ns, home_b.address, f"j{i}", network, tmp, "--no-mdns",
                          "--relay", address, "--client-only")  # fmt: skip
            try:
                up_ready = joiner.wait_for("ready", timeout=30)
                up = joiner.wait_for("peer_up", timeout=30)
                joins.append(up["t"] - up_ready["t"])
            finally:
                joiner.stop()
        out["join_s"] = {
            "median": round(statistics.median(joins), 3),
            "max": round(max(joins), 3),
            "runs": len(joins),
            "target": "<= 1",
        }

        pid = relay.pid
        idle = subprocess.Popen(
            ["ip", "netns", "exec", home_b.host_ns, sys.executable, "-c", IDLE_CLIENTS,
             ready["key"], ready["endpoint"], str(args.idle), network + "-idle"],
            stdout=subprocess.PIPE, text=True, env=child_env(),
        )  # fmt: skip
        procs.append(idle)
        assert idle.stdout is not None
        idle.stdout.readline()
        time.sleep(12)  # every reservation made and renewed once
        cpu0, t0 = cpu_seconds(pid), time.monotonic()
        time.sleep(args.window)
        cpu = (cpu_seconds(pid) - cpu0) / (time.monotonic() - t0)
        out["idle_reservations"] = {
            "reservations": args.idle,
            "relay_cpu_percent_of_core": round(cpu * 100, 2),
            "relay_rss_mb": round(rss_mb(pid), 1),
            "targets": "< 2 %, < 150 MB",
        }
    finally:
        for proc in reversed(procs):
            if isinstance(proc, NodeProc):
                proc.stop()
            else:
                proc.terminate()
                proc.wait(10)
        nat.close()
    print(json.dumps(out))


if __name__ == "__main__":
    main()
