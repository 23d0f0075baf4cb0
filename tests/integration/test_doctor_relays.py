"""``p2pai doctor``'s relay check against a real ``p2pai relay`` process on 127.0.0.1: a relay
that answers (key, round trip, where it sees us from), the same relay under a wrong key, a
closed port, and no relay at all; the hole punching line (no NAT on loopback: not needed).
Every process is stopped by PID (``popen_cli``). Through a real NAT: test_doctor_nat.py."""

from __future__ import annotations

import json
import select
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import zmq
from conftest import LOOPBACK

pytestmark = pytest.mark.integration


def ready_line(proc: subprocess.Popen[str], timeout: float = 30.0) -> dict[str, Any]:
    """The relay's JSON ``ready`` event (bounded wait, no fixed sleep)."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        readable, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not readable:
            break
        line = proc.stdout.readline()
        if not line:
            break
        event = json.loads(line)
        if event.get("event") == "ready":
            return dict(event)
    raise AssertionError(f"the relay printed no ready event (exit {proc.poll()})")


def doctor(run_cli: Callable[..., Any], tmp_path: Path, *args: str) -> tuple[int, dict[str, Any]]:
    done = run_cli(
        "doctor", "--interface", LOOPBACK, "--no-mdns", "--json", "--timeout", "1",
        "--network", f"doc-{tmp_path.name[-20:]}", "--data-dir", str(tmp_path / "doc"), *args,
        timeout=90,
    )  # fmt: skip
    assert done.stdout.strip(), done.stderr
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def relay_findings(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["check"] == "relay"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        return int(sock.getsockname()[1])


def test_doctor_checks_each_relay(
    popen_cli: Callable[..., subprocess.Popen[str]], run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    relay = popen_cli(
        "relay", "--interface", LOOPBACK, "--port", "0", "--json",
        "--data-dir", str(tmp_path / "relay"),
    )  # fmt: skip
    ready = ready_line(relay)
    address = ready["address"]

    # The relay answers: key matches, a round trip, and it says where it sees us from.
    code, report = doctor(run_cli, tmp_path, "--relay", address)
    found = relay_findings(report)
    answered = [f for f in found if "answered" in f["summary"]]
    assert answered and answered[0]["status"] == "ok", found
    details = answered[0]["details"]
    assert details["relay"] == address and details["stage"] == "ok"
    assert details["rtt_ms"] is not None and details["rtt_ms"] > 0
    assert details["observed"].startswith(f"{LOOPBACK}:"), details
    public = [f for f in found if "looks public" in f["summary"]]
    assert public and public[0]["details"]["public"] is True, found
    assert not [f for f in found if f["status"] in ("problem", "warn")], found
    # A second link from a port of ours arrives from that port (no NAT): no punching needed.
    punch = [f for f in found if "hole punching" in f["summary"]]
    assert len(punch) == 1 and punch[0]["status"] == "ok", found
    assert "not needed" in punch[0]["summary"], punch
    details = punch[0]["details"]
    assert details["punch"] == "not needed" and details["port_kept"] is True, details
    assert details["probe_observed"] == f"{LOOPBACK}:{details['probe_port']}", details

    # The same relay under another key: TCP answers, CURVE does not, and the fix says so.
    other_key = zmq.curve_keypair()[0].decode("ascii")
    wrong = f"{ready['endpoint']}#{other_key}"
    code, report = doctor(run_cli, tmp_path, "--relay", wrong)
    found = relay_findings(report)
    bad = [f for f in found if f["status"] == "problem"]
    assert bad and bad[0]["details"]["stage"] == "curve", found
    assert "key" in bad[0]["summary"] and "key after '#'" in bad[0]["fix"], bad
    assert code == 2

    # A closed port: nothing listens, one clear line and its fix.
    closed = f"tcp://{LOOPBACK}:{free_port()}#{ready['key']}"
    code, report = doctor(run_cli, tmp_path, "--relay", closed, "--relay", address)
    found = relay_findings(report)
    dead = [f for f in found if f["status"] == "problem"]
    assert len(dead) == 1 and dead[0]["details"]["stage"] == "tcp", found
    assert "refused" in dead[0]["summary"] and "firewall" in dead[0]["fix"], dead
    assert any("answered" in f["summary"] and f["status"] == "ok" for f in found), found
    assert code == 2

    # The relay process answered every probe and is still up (stopped by PID afterwards).
    assert relay.poll() is None


def test_doctor_without_relays_says_what_they_are_for(
    run_cli: Callable[..., Any], tmp_path: Path
) -> None:
    _code, report = doctor(run_cli, tmp_path)
    found = relay_findings(report)
    assert len(found) == 1 and found[0]["status"] == "info", found
    assert "no relay configured" in found[0]["summary"] and "--relay" in found[0]["fix"]
