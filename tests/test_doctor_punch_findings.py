"""``p2pai doctor``'s relay findings (netcore.doctor.relays.findings), pure: the hole punching
line for a public machine, a NAT that keeps source ports and one that changes them."""

from __future__ import annotations

import zmq

from netcore.config.peers import parse_relay
from netcore.doctor.relays import Probe, findings
from netcore.doctor.report import INFO, OK, WARN

KEY = zmq.curve_keypair()[0].decode("ascii")
RELAY = parse_relay(f"tcp://203.0.113.7:7400#{KEY}")
LOCAL = {"192.168.1.20"}


def probe(observed: str, probe_port: int | None, probe_seen: str | None) -> Probe:
    def addr(text: str | None) -> tuple[str, int] | None:
        if text is None:
            return None
        host, _, port = text.rpartition(":")
        return host, int(port)

    found = Probe(RELAY, stage="ok", tcp_ms=20.9, rtt_ms=21.4, observed=addr(observed))
    found.probe_port = probe_port
    found.probe_observed = addr(probe_seen)
    if found.probe_observed is not None and probe_port is not None:
        found.port_kept = found.probe_observed[1] == probe_port
    return found


def punch_line(found: Probe) -> tuple[str, str, str, dict[str, object]]:
    lines = findings(found, LOCAL)
    assert len(lines) == 3, lines  # answered, public or NATed, hole punching
    line = lines[-1]
    assert line.check == "relay" and "\n" not in line.summary
    return line.status, line.summary, line.fix, line.details


def test_public_machine_needs_no_punching() -> None:
    status, summary, _fix, details = punch_line(
        probe("192.168.1.20:40001", 50123, "192.168.1.20:50123")
    )
    assert status == OK
    assert "hole punching is not needed" in summary and "203.0.113.7:7400" in summary
    assert details["public"] is True and details["punch"] == "not needed"


def test_nat_that_keeps_source_ports_lets_punching_work() -> None:
    status, summary, _fix, details = punch_line(
        probe("198.51.100.4:40001", 50123, "198.51.100.4:50123")
    )
    assert status == OK
    assert summary.startswith("hole punching can work: the NAT keeps source ports"), summary
    assert "50123" in summary and "198.51.100.4:50123" in summary
    assert details["public"] is False and details["port_kept"] is True
    assert details["punch"] == "can work"
    assert details["probe_port"] == 50123 and details["probe_observed"] == "198.51.100.4:50123"


def test_nat_that_changes_source_ports_warns_with_the_fix() -> None:
    status, summary, fix, details = punch_line(
        probe("198.51.100.4:40001", 50123, "198.51.100.4:61877")
    )
    assert status == WARN
    assert "the NAT changes source ports" in summary and "symmetric NAT" in summary
    assert "relay 203.0.113.7:7400" in summary and "198.51.100.4:61877" in summary
    assert "hole punching will fail" in summary and "through the relay" in summary
    assert "port preservation" in fix and "endpoint-independent mapping" in fix
    assert "--port" in fix and "--peer tcp://<public ip>:<port>#<key>" in fix
    assert details["port_kept"] is False and details["punch"] == "will fail"
    assert details["probe_observed"] == "198.51.100.4:61877"


def test_no_second_observed_means_unknown() -> None:
    found = probe("198.51.100.4:40001", 50123, None)
    found.port_error = "the relay did not say where it sees a second link from"
    status, summary, fix, details = punch_line(found)
    assert status == INFO and "unknown" in summary and found.port_error in summary
    assert fix and details["port_kept"] is None and details["punch"] == "unknown"


def test_older_relay_without_observed_says_nothing_about_punching() -> None:
    found = Probe(RELAY, stage="ok", tcp_ms=1.0)
    lines = findings(found, LOCAL)
    assert [f.status for f in lines] == [OK, INFO]
    assert not any("punching" in f.summary for f in lines)
