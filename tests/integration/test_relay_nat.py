"""Beyond one LAN: a worker and a requester each behind its own NAT, a relay on the public
segment (issue 18). The topology (tests/integration/nat.py) is built in network namespaces:
nftables ``masquerade`` on each home router, and nothing can connect into a home from outside.

1. The requester knows only the relay (``--no-mdns --relay``): it finds the worker in the
   relay's registry and runs 200 tasks through a circuit, 0 failed, digits accuracy >= 0.9
   (hole punching is blocked here, so that every task crosses the relay: see
   test_punch_nat.py for the punched path).
2. A packet capture on the relay's interfaces holds no plaintext task: no msgpack key of the
   protocol, no input tensor's bytes (the peers' CURVE runs end to end through the splice).
   A relay that flips a bit (tests/flipping_relay.py, a real process) makes the CURVE link
   fail: no altered answer is ever accepted.
5. A relay over its reservation limit refuses the next node in one clear line and holds no
   more than its limit.

Runs as root where ``ip netns`` is allowed; fails (does not skip) there without ``nft``.
"""

from __future__ import annotations

import json
import struct
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import NodeProc, child_env, cli_argv, stop_pid
from nat import RELAY_ADDRESS, Nat, nat_fixture  # noqa: F401 - the fixture nat

pytestmark = pytest.mark.integration

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def in_ns(ns: str, argv: list[str]) -> list[str]:
    return ["ip", "netns", "exec", ns, *argv]


def relay_proc(nat: Nat, tmp: Path, *extra: str, script: Path | None = None) -> NodeProc:
    proc = NodeProc("relay", "-", tmp / "relay", tmp)
    if script is None:
        argv = [*cli_argv(), "relay", "--json", "--data-dir", str(tmp / "relay")]
    else:
        argv = [sys.executable, str(script), "--data-dir", str(tmp / "relay")]
    proc.argv = in_ns(nat.relay_ns, [*argv, "--interface", RELAY_ADDRESS, "--port", "0", *extra])
    return proc.start()


def node_proc(ns: str, address: str, name: str, network: str, tmp: Path, relay: str) -> NodeProc:
    node = NodeProc(name, network, tmp / name, tmp, ("--no-mdns", "--relay", relay))
    argv = list(node.argv)
    argv[argv.index("--interface") + 1] = address
    node.argv = in_ns(ns, argv)
    return node.start()


def submit(nat: Nat, network: str, tmp: Path, relay: str, *extra: str) -> tuple[int, Any, str]:
    home = nat.homes[1]
    argv = in_ns(
        home.host_ns,
        [
            *cli_argv(), "submit", "--json", "--interface", home.address, "--network", network,
            "--data-dir", str(tmp / "client"), "--no-mdns", "--relay", relay, "--count", "200",
            "--concurrency", "8", "--timeout", "20", *extra,
        ],
    )  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=180, env=child_env())
    lines = done.stdout.strip().splitlines()
    summary = json.loads(lines[-1]) if lines else None
    return done.returncode, summary, done.stderr


def connects(ns: str, endpoint: str) -> bool:
    """Whether a TCP connection from namespace ``ns`` to ``tcp://host:port`` opens in 2 s."""
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    probe = (
        "import socket,sys\n"
        "try:\n"
        f"    socket.create_connection(({host!r}, {port}), timeout=2).close(); print('yes')\n"
        "except OSError: print('no')\n"
    )
    done = subprocess.run(
        in_ns(ns, [sys.executable, "-c", probe]), capture_output=True, text=True, timeout=20
    )
    return done.stdout.strip() == "yes"


def captured(path: Path) -> bytes:
    data, frames = path.read_bytes(), []
    offset = 0
    while offset + 4 <= len(data):
        (n,) = struct.unpack_from("<I", data, offset)
        frames.append(data[offset + 4 : offset + 4 + n])
        offset += 4 + n
    return b"".join(frames)


def honest_answers() -> tuple[np.ndarray, np.ndarray]:
    """The digits model's own answers for the bundled samples, run here (onnxruntime)."""
    import onnxruntime as ort

    from netcore.models.inputs import read_samples

    x = read_samples(None).x.astype(np.float32).reshape(-1, 64)
    session = ort.InferenceSession(str(ROOT / "assets/models/digits.onnx"))
    labels, probabilities = session.run(None, {"input": x})
    return labels, probabilities


def stop_all(*procs: NodeProc | subprocess.Popen[Any] | None) -> None:
    for proc in procs:
        if isinstance(proc, NodeProc):
            proc.stop()
        elif proc is not None:
            stop_pid(proc)


def no_traceback(*procs: NodeProc) -> None:
    for proc in procs:
        if proc.proc is not None:
            text = proc.stderr_path.read_text(errors="replace")
            assert "Traceback" not in text, (proc.name, text[-3000:])


def test_requester_finds_worker_through_relay_and_relay_sees_only_ciphertext(
    nat: Nat, tmp_path: Path
) -> None:
    network = f"nat-{uuid.uuid4().hex[:10]}"
    home_a, home_b = nat.homes
    nat.block_direct()  # every task through the relay (test_punch_nat.py leaves it)
    capture = tmp_path / "relay.pcap"
    sniffer = subprocess.Popen(
        in_ns(nat.relay_ns, [sys.executable, str(HERE / "sniff.py"), str(capture)]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    relay = worker = None
    try:
        assert sniffer.stdout is not None and sniffer.stdout.readline().strip() == "capturing"
        relay = relay_proc(nat, tmp_path)
        address = relay.wait_for("ready", timeout=30)["address"]
        worker = node_proc(home_a.host_ns, home_a.address, "worker", network, tmp_path, address)
        ready = worker.wait_for("ready", timeout=30)

        # The NATs: out of a home works, into a home does not (from the relay's segment, which
        # even has a route there, nor from the other home).
        relay_endpoint = address.partition("#")[0]
        assert connects(home_b.host_ns, relay_endpoint)
        assert connects(home_a.host_ns, relay_endpoint)
        assert not connects(nat.relay_ns, ready["endpoint"])
        assert not connects(home_b.host_ns, ready["endpoint"])

        code, summary, err = submit(nat, network, tmp_path, address)
        assert code == 0, err[-3000:]
        assert summary["tasks"] == 200 and summary["ok"] == 200 and summary["failed"] == 0
        assert summary["accuracy"] >= 0.9, summary["accuracy"]
        assert set(summary["workers"]) == {ready["peer_id"]}
        assert "Traceback" not in err
        # The worker saw the requester come in through the relay.
        up = worker.wait_for("peer_up", timeout=10)
        assert up["reach"] == "relayed", up
    finally:
        if sniffer.poll() is None:
            sniffer.terminate()
            sniffer.wait(10)
        stop_all(worker, relay)
    no_traceback(*(p for p in (worker, relay) if p is not None))

    seen = captured(capture)
    assert len(seen) > 100_000, len(seen)  # the capture did see the circuits' traffic
    assert b"CURVE" in seen  # ZMTP greetings (plaintext by design) name the mechanism
    for plain in (
        b"\xa1t\xa4task", b"\xa4task", b"\xa6inputs", b"\xa7outputs", b"\xa6digest",
        b"\xa5hello", b"\xa6digits", b"\xa6result", b"relay_reserve", b"relay_connect",
        network.encode(),
    ):  # fmt: skip
        assert plain not in seen, plain
    from netcore.models.inputs import read_samples

    x = read_samples(None).x.astype(np.float32).reshape(-1, 64)
    for row in x[:200]:
        data = row.tobytes()
        assert data not in seen
        assert data[96:160] not in seen  # a slice from the middle of the image


def test_a_relay_that_flips_bits_breaks_the_link_never_the_answer(nat: Nat, tmp_path: Path) -> None:
    network = f"nat-{uuid.uuid4().hex[:10]}"
    home_a = nat.homes[0]
    nat.block_direct()  # the hostile relay carries every byte: no punch past it
    relay = relay_proc(nat, tmp_path, "--after", "20000", script=ROOT / "tests/flipping_relay.py")
    worker = None
    try:
        address = relay.wait_for("ready", timeout=30)["address"]
        worker = node_proc(home_a.host_ns, home_a.address, "worker", network, tmp_path, address)
        worker.wait_for("ready", timeout=30)
        _code, summary, err = submit(
            nat, network, tmp_path, address, "--task-timeout", "1", "--count", "60"
        )
        assert summary is not None, err[-3000:]
        assert "Traceback" not in err
    finally:
        stop_all(worker, relay)
    flips = relay.stderr_path.read_text().count('"flipped"')
    assert flips >= 1, "the hostile relay never struck"
    labels, probabilities = honest_answers()
    accepted = [r for r in summary["results"] if r["ok"]]
    for result in accepted:  # every answer accepted is the model's own, never an altered one
        row = result["row"]
        assert result["class"] == int(labels[row]), result
        assert np.allclose(result["probabilities"], probabilities[row], atol=2e-6), result
    assert summary["ok"] + summary["failed"] == 60
    no_traceback(worker)


def test_a_full_relay_refuses_reservations_in_one_line_and_stays_bounded(
    nat: Nat, tmp_path: Path
) -> None:
    network = f"nat-{uuid.uuid4().hex[:10]}"
    home_a, home_b = nat.homes
    relay = relay_proc(nat, tmp_path, "--max-reservations", "2", "--metrics-port", "0",
                       "--metrics-host", RELAY_ADDRESS)  # fmt: skip
    nodes: list[NodeProc] = []
    try:
        ready = relay.wait_for("ready", timeout=30)
        address = ready["address"]
        for i, home in enumerate((home_a, home_b, home_a, home_b)):
            nodes.append(node_proc(home.host_ns, home.address, f"n{i}", network, tmp_path, address))
        for node in nodes:
            node.wait_for("ready", timeout=30)
        # Two get a reservation; the others are told why not, in one line, and keep trying.
        refused = []
        for node in nodes:
            for _ in range(100):
                text = node.stderr_path.read_text(errors="replace")
                if "reservation held" in text or "relay full" in text:
                    break
                subprocess.run(["sleep", "0.1"])
            refused.append("relay full" in text)
        assert sum(refused) == 2, refused
        lines = [
            line
            for node, no in zip(nodes, refused, strict=True)
            if no
            for line in node.stderr_path.read_text().splitlines()
            if "relay full" in line
        ]
        assert lines and all("try another relay" in line for line in lines)
        metrics = in_ns(
            nat.relay_ns,
            [sys.executable, "-c", f"import urllib.request;print(urllib.request.urlopen({ready['metrics']!r}).read().decode())"],
        )  # fmt: skip
        text = subprocess.run(metrics, capture_output=True, text=True, timeout=20).stdout
        assert 'p2pai_relay_reservations{of="held"} 2.0' in text, text[:2000]
        assert 'p2pai_relay_reservation_events_total{event="refused"}' in text
        # Held nodes of one network found each other through the relay.
        held = [n for n, no in zip(nodes, refused, strict=True) if not no]
        held[0].wait_for("peer_up", timeout=20)
    finally:
        stop_all(*nodes, relay)
    no_traceback(relay, *nodes)
