"""``p2pai doctor`` in home A behind a real NAT (tests/integration/nat.py, issue 18): the relay
on the public segment sees the node at router A's public address, so the doctor reports it
NATed; and it says whether hole punching can work, from a second control link leaving a
source port of its own choosing.

1. Router A's nftables ``masquerade`` (Linux keeps source ports): NATed, port kept, "hole
   punching can work".
2. The same router with ``meta l4proto tcp masquerade to :20000-29999 random`` (every TCP
   connection gets a new port from that range; ours is an ephemeral one, 32768 and up, so
   it always changes): a warning that punching will fail, and the fix.

Runs as root where ``ip netns`` is allowed; fails (does not skip) there without ``nft``.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest
from conftest import child_env, cli_argv
from nat import Home, Nat, nat_fixture, run_in  # noqa: F401 - the fixture nat
from test_relay_nat import in_ns, no_traceback, relay_proc, stop_all

pytestmark = pytest.mark.integration

SYMMETRIC_PORTS = (20000, 29999)


def doctor(home: Home, relay: str, tmp: Path) -> dict[str, Any]:
    argv = in_ns(home.host_ns, [
        *cli_argv(), "doctor", "--json", "--no-mdns", "--interface", home.address,
        "--network", f"doc-{uuid.uuid4().hex[:10]}", "--data-dir", str(tmp / "doc"),
        "--timeout", "2", "--relay", relay,
    ])  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=90, env=child_env())
    assert done.stdout.strip(), done.stderr[-3000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def relay_lines(report: dict[str, Any]) -> list[dict[str, Any]]:
    return [f for f in report["findings"] if f["check"] == "relay"]


def natted(found: list[dict[str, Any]], home: Home) -> None:
    """The relay sees home A at its router's public address, and the doctor says NATed."""
    behind = [f for f in found if "behind a NAT" in f["summary"]]
    assert len(behind) == 1, found
    details = behind[0]["details"]
    assert details["public"] is False, details
    assert details["observed"].startswith(f"{home.router_public}:"), details


def punch_line(found: list[dict[str, Any]]) -> dict[str, Any]:
    lines = [f for f in found if "hole punching" in f["summary"]]
    assert len(lines) == 1, found
    return lines[0]


def test_doctor_says_whether_the_nat_lets_hole_punching_work(nat: Nat, tmp_path: Path) -> None:
    home = nat.homes[0]
    relay = relay_proc(nat, tmp_path)
    try:
        address = relay.wait_for("ready", timeout=30)["address"]

        # 1. masquerade keeps the source port: punching can work.
        found = relay_lines(doctor(home, address, tmp_path))
        assert not [f for f in found if f["status"] in ("problem", "warn")], found
        natted(found, home)
        line = punch_line(found)
        assert line["status"] == "ok", line
        assert line["summary"].startswith("hole punching can work: the NAT keeps source ports")
        details = line["details"]
        assert details["punch"] == "can work" and details["port_kept"] is True, details
        assert details["probe_observed"] == f"{home.router_public}:{details['probe_port']}"

        # 2. A router that maps each connection to a new port: punching will fail.
        wan = f"aw{nat.tag}"
        low, high = SYMMETRIC_PORTS
        run_in(home.router_ns, "nft", "-f", "-", input=(
            "flush chain ip nat postrouting\n"
            f'add rule ip nat postrouting oifname "{wan}" meta l4proto tcp '
            f"masquerade to :{low}-{high} random\n"
            f'add rule ip nat postrouting oifname "{wan}" masquerade\n'
        ))  # fmt: skip
        found = relay_lines(doctor(home, address, tmp_path))
        natted(found, home)
        line = punch_line(found)
        assert line["status"] == "warn", line
        summary = line["summary"]
        assert "the NAT changes source ports" in summary and "symmetric NAT" in summary
        assert "hole punching will fail" in summary and "through the relay" in summary
        assert "port preservation" in line["fix"] and "--port" in line["fix"], line
        details = line["details"]
        assert details["punch"] == "will fail" and details["port_kept"] is False, details
        seen_host, _, seen_port = details["probe_observed"].rpartition(":")
        assert seen_host == home.router_public, details
        assert low <= int(seen_port) <= high and int(seen_port) != details["probe_port"]
        # The relay itself is fine: no problem line either way.
        assert not [f for f in found if f["status"] == "problem"], found
    finally:
        stop_all(relay)
    no_traceback(relay)
