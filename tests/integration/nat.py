"""Two homes behind NAT and a public segment, in network namespaces (the relay tests).

::

    home A: 10.231.101.2 --- router A (10.231.101.1 | 10.231.100.1) ---+
                                                                        +-- public bridge
    home B: 10.231.102.2 --- router B (10.231.102.1 | 10.231.100.2) ---+    10.231.100.0/24
                                                       relay 10.231.100.10 -+

Each router forwards its home's traffic out of its public side with nftables ``masquerade``
and drops every connection that starts outside (``ct state new`` from the public side): as a
home router does, nothing can connect into a home. The public hosts even get routes to the
homes' subnets, so that only the routers' rules keep them out. Needs root, ``ip netns`` and
``nft``; every name carries a random suffix and :meth:`Nat.close` removes all of it.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from netns import ip, netns_unavailable

PUBLIC = "10.231.100"
RELAY_ADDRESS = f"{PUBLIC}.10"


def nft_missing() -> str | None:
    return None if shutil.which("nft") else "nft (Debian package nftables) is not installed"


def run_in(ns: str, *cmd: str, input: str | None = None) -> None:
    done = subprocess.run(
        ["ip", "netns", "exec", ns, *cmd], capture_output=True, text=True, input=input
    )
    if done.returncode != 0:
        raise RuntimeError(f"{ns}: {' '.join(cmd)}: {done.stderr.strip()}")


ROUTER_RULES = """
table ip nat {{
    chain postrouting {{
        type nat hook postrouting priority srcnat; policy accept;
        oifname "{wan}" masquerade
    }}
}}
table ip filter {{
    chain forward {{
        type filter hook forward priority filter; policy drop;
        ct state established,related accept
        iifname "{lan}" oifname "{wan}" accept
    }}
    chain input {{
        type filter hook input priority filter; policy accept;
        iifname "{wan}" ct state new drop
    }}
}}
"""


@dataclass
class Home:
    router_ns: str
    host_ns: str
    address: str
    router_public: str


@dataclass
class Nat:
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    namespaces: list[str] = field(default_factory=list)
    homes: list[Home] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.public_ns = f"p2ppub{self.tag}"
        self.relay_ns = f"p2prel{self.tag}"
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _ns(self, name: str) -> str:
        ip("netns", "add", name)
        self.namespaces.append(name)
        ip("link", "set", "lo", "up", ns=name)
        return name

    def _public_port(self, ns: str, address: str, short: str) -> str:
        """A veth from ``ns`` to the public bridge; returns its name inside ``ns``."""
        inner, outer = f"{short}w{self.tag}", f"{short}p{self.tag}"
        ip("link", "add", inner, "netns", ns, "type", "veth", "peer", "name", outer,
           "netns", self.public_ns)  # fmt: skip
        ip("link", "set", outer, "master", "br0", ns=self.public_ns)
        ip("link", "set", outer, "up", ns=self.public_ns)
        ip("addr", "add", f"{address}/24", "dev", inner, ns=ns)
        ip("link", "set", inner, "up", ns=ns)
        return inner

    def _build(self) -> None:
        self._ns(self.public_ns)
        ip("link", "add", "br0", "type", "bridge", ns=self.public_ns)
        ip("link", "set", "br0", "up", ns=self.public_ns)
        self._ns(self.relay_ns)
        self._public_port(self.relay_ns, RELAY_ADDRESS, "r")
        for i, name in ((1, "a"), (2, "b")):
            router = self._ns(f"p2prt{name}{self.tag}")
            host = self._ns(f"p2phm{name}{self.tag}")
            router_public = f"{PUBLIC}.{i}"
            wan = self._public_port(router, router_public, f"{name}")
            lan, inside = f"{name}l{self.tag}", f"{name}h{self.tag}"
            ip("link", "add", lan, "netns", router, "type", "veth", "peer", "name", inside,
               "netns", host)  # fmt: skip
            subnet = f"10.231.{100 + i}"
            ip("addr", "add", f"{subnet}.1/24", "dev", lan, ns=router)
            ip("link", "set", lan, "up", ns=router)
            ip("addr", "add", f"{subnet}.2/24", "dev", inside, ns=host)
            ip("link", "set", inside, "up", ns=host)
            ip("route", "add", "default", "via", f"{subnet}.1", ns=host)
            run_in(router, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            run_in(router, "nft", "-f", "-", input=ROUTER_RULES.format(wan=wan, lan=lan))
            # The public side knows the way to the home: only the router's rules stop it.
            ip("route", "add", f"{subnet}.0/24", "via", router_public, ns=self.relay_ns)
            self.homes.append(Home(router, host, f"{subnet}.2", router_public))

    def block_direct(self) -> None:
        """Router A drops whatever its home sends to home B's public address: no hole punch
        between the homes passes (the relay, another address, still does)."""
        home_a, home_b = self.homes
        run_in(home_a.router_ns, "nft", "insert", "rule", "ip", "filter", "forward",
               "ip", "daddr", home_b.router_public, "drop")  # fmt: skip

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()


@pytest.fixture(name="nat")
def nat_fixture() -> Iterator[Nat]:
    """The topology for one test, as the fixture ``nat`` (``from nat import nat_fixture`` in a
    test module; a conftest here would shadow the integration one): skipped where
    network namespaces are not allowed, failed (not skipped) there without ``nft``."""
    why_not = netns_unavailable()
    if why_not:
        pytest.skip(f"network namespace test skipped: {why_not}")
    missing = nft_missing()
    if missing:
        pytest.fail(f"{missing}: .ci/run installs it (apt-get install nftables)")
    made = Nat()
    try:
        yield made
    finally:
        made.close()
