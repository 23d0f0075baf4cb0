"""Test hosts in network namespaces: a bridge in its own namespace, one namespace per host.

Only for tests run as root where ``ip netns`` is allowed. Every name carries a random suffix,
addresses are 10.231.x.y inside the namespaces only, and :meth:`Lan.close` removes all of it
(it runs even when a test fails).
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field


def netns_unavailable() -> str | None:
    """Why namespace tests cannot run here, or None when they can."""
    if shutil.which("ip") is None:
        return "iproute2 ('ip') is not installed"
    if os.geteuid() != 0:
        return "network namespaces need root"
    probe = f"p2pprobe{secrets.token_hex(3)}"
    made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
    if made.returncode != 0:
        return f"'ip netns add' is not allowed here: {made.stderr.strip()}"
    subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return None


def ip(*args: str, ns: str | None = None) -> None:
    cmd = ["ip", *(["-n", ns] if ns else []), *args]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {done.stderr.strip()}")


@dataclass
class Host:
    ns: str
    address: str
    veth_host_side: str
    """The veth end inside the bridge namespace (down = this host is cut off)."""


@dataclass
class Lan:
    """One subnet 10.231.<subnet>.0/24: a bridge namespace and ``count`` host namespaces."""

    count: int
    subnet: int = 7
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    hosts: list[Host] = field(default_factory=list)
    namespaces: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.bridge_ns = f"p2pbr{self.tag}"
        try:
            self._build()
        except Exception:
            self.close()
            raise

    def _build(self) -> None:
        ip("netns", "add", self.bridge_ns)
        self.namespaces.append(self.bridge_ns)
        ip("link", "add", "br0", "type", "bridge", ns=self.bridge_ns)
        ip("link", "set", "br0", "up", ns=self.bridge_ns)
        for i in range(1, self.count + 1):
            ns = f"p2ph{i}{self.tag}"
            ip("netns", "add", ns)
            self.namespaces.append(ns)
            outer, inner = f"v{i}b{self.tag}", f"v{i}h{self.tag}"
            ip(
                "link",
                "add",
                outer,
                "netns",
                self.bridge_ns,
                "type",
                "veth",
                "peer",
                "name",
                inner,
                "netns",
                ns,
            )
            ip("link", "set", outer, "master", "br0", ns=self.bridge_ns)
            ip("link", "set", outer, "up", ns=self.bridge_ns)
            address = f"10.231.{self.subnet}.{i}"
            ip("addr", "add", f"{address}/24", "dev", inner, ns=ns)
            ip("link", "set", inner, "up", ns=ns)
            ip("link", "set", "lo", "up", ns=ns)
            # mDNS goes out of the host's only interface.
            ip("route", "add", "224.0.0.0/4", "dev", inner, ns=ns)
            self.hosts.append(Host(ns, address, outer))

    def cut(self, host: Host) -> None:
        """Take the host's link down (a partition: no RST, packets just stop)."""
        ip("link", "set", host.veth_host_side, "down", ns=self.bridge_ns)

    def heal(self, host: Host) -> None:
        ip("link", "set", host.veth_host_side, "up", ns=self.bridge_ns)

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
        self.namespaces.clear()
