"""Checks 1 and 2: the addresses the node would serve on, and multicast on their interfaces."""

from __future__ import annotations

import ipaddress
import secrets
import socket
import struct
import time
from dataclasses import dataclass
from pathlib import Path

from netcore.config.settings import Config, lan_addresses
from netcore.doctor.report import INFO, OK, PROBLEM, WARN, Finding, Report

MDNS_GROUP = "224.0.0.251"
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_MULTICAST = 0x1000


@dataclass(slots=True)
class Interface:
    name: str
    addresses: list[str]
    prefixes: dict[str, int]
    flags: int | None

    @property
    def up(self) -> bool:
        return self.flags is None or bool(self.flags & IFF_UP)

    @property
    def loopback(self) -> bool:
        return bool(self.flags and self.flags & IFF_LOOPBACK) or any(
            a.startswith("127.") for a in self.addresses
        )

    @property
    def multicast(self) -> bool | None:
        return None if self.flags is None else bool(self.flags & IFF_MULTICAST)


def read_flags(name: str) -> int | None:
    try:
        return int(Path(f"/sys/class/net/{name}/flags").read_text().strip(), 16)
    except (OSError, ValueError):
        return None


def list_interfaces() -> list[Interface]:
    import ifaddr  # a zeroconf dependency

    found: list[Interface] = []
    for adapter in ifaddr.get_adapters():
        addresses: list[str] = []
        prefixes: dict[str, int] = {}
        for ip in adapter.ips:
            if isinstance(ip.ip, str):
                addresses.append(ip.ip)
                prefixes[ip.ip] = ip.network_prefix
        if addresses:
            found.append(
                Interface(adapter.nice_name, addresses, prefixes, read_flags(adapter.nice_name))
            )
    return found


def interface_of(address: str, interfaces: list[Interface]) -> Interface | None:
    return next((i for i in interfaces if address in i.addresses), None)


def check_interfaces(cfg: Config, interfaces: list[Interface], report: Report) -> list[str]:
    """The addresses the node would serve on that exist here (the rest are findings)."""
    listing = {i.name: [f"{a}/{i.prefixes.get(a, 32)}" for a in i.addresses] for i in interfaces}
    wanted = list(cfg.interfaces) if cfg.interfaces else lan_addresses()
    usable: list[str] = []
    for address in wanted:
        iface = interface_of(address, interfaces)
        if iface is None:
            known = ", ".join(a for i in interfaces for a in i.addresses)
            report.add(Finding(
                "interfaces", PROBLEM, f"{address} is not an address of this machine",
                f"use --interface with one of: {known or 'no IPv4 address is up'}",
                {"interfaces": listing},
            ))  # fmt: skip
            continue
        if not iface.up:
            report.add(Finding(
                "interfaces", PROBLEM, f"interface {iface.name} ({address}) is down",
                f"bring it up: ip link set dev {iface.name} up", {"interfaces": listing},
            ))  # fmt: skip
            continue
        usable.append(address)
    if not wanted:
        report.add(Finding(
            "interfaces", PROBLEM, "no LAN interface with an IPv4 address is up",
            "connect to the network (Wi-Fi, cable), or use --interface 127.0.0.1 for a swarm "
            "on this machine only", {"interfaces": listing},
        ))  # fmt: skip
        return []
    if not usable:
        return []
    names = [f"{a} ({iface.name})" for a in usable if (iface := interface_of(a, interfaces))]
    if all(ipaddress.ip_address(a).is_loopback for a in usable):
        report.add(Finding(
            "interfaces", INFO, f"serving on {', '.join(names)}: only nodes on this machine can "
            "see this node", "to reach other machines use --interface <LAN address> "
            f"(this machine has {', '.join(lan_addresses()) or 'none'})", {"interfaces": listing},
        ))  # fmt: skip
    else:
        link_local = [a for a in usable if ipaddress.ip_address(a).is_link_local]
        if link_local:
            report.add(Finding(
                "interfaces", WARN, f"{', '.join(link_local)} is link-local (169.254.x.x): "
                "no DHCP answer on that network", "check the network's DHCP server or give the "
                "interface an address", {"interfaces": listing},
            ))  # fmt: skip
        report.add(Finding("interfaces", OK, f"serving on {', '.join(names)}", "",
                           {"interfaces": listing}))  # fmt: skip
    return usable


# --- 2. multicast ------------------------------------------------------------------------


def multicast_loop_test(address: str, timeout: float = 0.5) -> str | None:
    """Send one datagram to the mDNS group (on a random port, TTL 1) out of ``address`` and
    wait for it to come back; ``None`` when it did, else why not."""
    nonce = b"p2pai-doctor " + secrets.token_hex(8).encode()
    recv = send = None
    try:
        recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        recv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        recv.bind((MDNS_GROUP, 0))
        port = recv.getsockname()[1]
        membership = struct.pack("4s4s", socket.inet_aton(MDNS_GROUP), socket.inet_aton(address))
        recv.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, membership)
        send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(address))
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
        send.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
        send.bind((address, 0))
        send.sendto(nonce, (MDNS_GROUP, port))
        recv.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            data, _ = recv.recvfrom(2048)
            if data == nonce:
                return None
        return "the datagram did not come back"
    except TimeoutError:
        return "the datagram did not come back"
    except OSError as exc:
        return exc.strerror or str(exc)
    finally:
        for sock in (recv, send):
            if sock is not None:
                sock.close()


def check_multicast(addresses: list[str], interfaces: list[Interface], report: Report) -> None:
    for address in addresses:
        iface = interface_of(address, interfaces)
        name = iface.name if iface else "?"
        if iface is not None and not iface.loopback and iface.multicast is False:
            report.add(Finding(
                "multicast", PROBLEM, f"interface {name} ({address}) has multicast turned off: "
                "mDNS cannot work on it", f"turn it on: ip link set dev {name} multicast on; "
                "or connect with --peer tcp://host:port#key", {"interface": name},
            ))  # fmt: skip
            continue
        error = multicast_loop_test(address)
        if error is not None:
            report.add(Finding(
                "multicast", PROBLEM, f"multicast on {name} ({address}) does not work here: "
                f"{error}", "check that the interface has a route for 224.0.0.0/4 (ip route "
                f"add 224.0.0.0/4 dev {name}) and no firewall drops it; or use --peer",
                {"interface": name},
            ))  # fmt: skip
        else:
            report.add(Finding(
                "multicast", OK, f"multicast works on {name} ({address}) on this machine; "
                "whether the network passes it, the mDNS check tells", "", {"interface": name},
            ))  # fmt: skip
