"""Which of a peer's advertised endpoints a node dials (Node._pick_endpoint's helpers)."""

from __future__ import annotations

import ipaddress

from netcore.wire.addresses import endpoint_ip, parse_endpoint, subnets


def test_only_tcp_ipv4_endpoints_with_a_port_are_taken() -> None:
    assert endpoint_ip("tcp://10.231.0.2:5555") == ipaddress.ip_address("10.231.0.2")
    for bad in ("tcp://[::1]:5555", "tcp://host:5555", "ipc://x", "tcp://1.2.3.4:0",
                "tcp://1.2.3.4:70000", "tcp://1.2.3.4:", "udp://1.2.3.4:5"):  # fmt: skip
        assert endpoint_ip(bad) is None, bad


def test_long_endpoints_are_refused_before_the_memo() -> None:
    before = parse_endpoint.cache_info().currsize
    assert endpoint_ip("tcp://1.2.3.4:5" + "5" * 1_000_000) is None
    assert parse_endpoint.cache_info().currsize == before


def test_loopback_serves_a_slash_8_and_others_a_slash_24() -> None:
    loop, lan = subnets(("127.0.0.1", "10.231.0.2"))
    assert ipaddress.ip_address("127.5.5.5") in loop
    assert ipaddress.ip_address("10.231.0.99") in lan
    assert ipaddress.ip_address("10.231.1.1") not in lan
