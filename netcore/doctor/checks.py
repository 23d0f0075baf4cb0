"""``p2pai doctor``: why does this node see no peers? Each finding comes with its fix.

The checks, in order:

1. **interfaces**: the IPv4 addresses the node would serve on, and on which interface.
2. **multicast**: each interface is up and multicast-capable, and a datagram sent to the mDNS
   group on it comes back to us (link-local, TTL 1; only on the node's own interfaces).
3. **mdns**: we browse ``_p2pai._tcp.local.`` like a node does, but keep *every* answer: nodes
   of our swarm, nodes of **other network names** (a node silently ignores those), records
   that break the rules, and **duplicate ids** (one identity on two machines: a copied data
   directory). Other mDNS services answering tell "multicast works, no node here" apart from
   "nothing answers at all".
4. **connect**: a throw-away client node (its own temporary identity, not advertised) connects
   to each node found and to each static ``--peer``: a node that answers mDNS but not on TCP
   points at a firewall.
5. **clock**: our clock's NTP state, and each peer's clock from its ``hello`` ``time``.
6. **firewall**: active nftables/iptables/ufw/firewalld rules, with the lines that open
   UDP 5353 and the node's TCP port.

Nothing here sends anywhere but to the mDNS group on the chosen interfaces and to the
endpoints the nodes themselves advertise (or the user gave with ``--peer``).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import ctypes.util
import dataclasses
import ipaddress
import os
import secrets
import shutil
import socket
import struct
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netcore.config.settings import Config, ConfigError, lan_addresses

OK, INFO, WARN, PROBLEM = "ok", "info", "warn", "problem"
RANK = {OK: 0, INFO: 1, WARN: 2, PROBLEM: 3}
MDNS_GROUP = "224.0.0.251"
IFF_UP = 0x1
IFF_LOOPBACK = 0x8
IFF_MULTICAST = 0x1000
CLOCK_SKEW_WARN_S = 2.0


@dataclass(slots=True)
class Finding:
    check: str
    status: str
    summary: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


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


@dataclass(slots=True)
class Seen:
    """One service answer from mDNS."""

    instance: str
    peer_id: str = ""
    key: str = ""
    network: str = ""
    name: str = ""
    caps: str = ""
    version: str = ""
    addresses: list[str] = field(default_factory=list)
    port: int = 0
    valid: bool = True
    why_invalid: str = ""


@dataclass(slots=True)
class Report:
    network: str
    interfaces: list[str]
    findings: list[Finding] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    @property
    def problems(self) -> int:
        return sum(1 for f in self.findings if f.status == PROBLEM)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.status == WARN)

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "interfaces": self.interfaces,
            "problems": self.problems,
            "warnings": self.warnings,
            "findings": [f.to_json() for f in self.findings],
        }

    def text(self) -> str:
        lines = [
            f"p2pai doctor: network {self.network!r}, interfaces "
            f"{', '.join(self.interfaces) or '(none)'}",
            "",
        ]
        for f in self.findings:
            lines.append(f"{f.status.upper():<8} {f.check:<10} {f.summary}")
            if f.fix:
                lines.append(f"{'':<8} {'':<10} fix: {f.fix}")
        lines.append("")
        if self.problems or self.warnings:
            lines.append(f"{self.problems} problem(s), {self.warnings} warning(s)")
        else:
            lines.append("no problem found")
        return "\n".join(lines)


# --- 1. interfaces -----------------------------------------------------------------------


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


# --- 3. mDNS -----------------------------------------------------------------------------


async def browse(addresses: list[str], timeout: float) -> tuple[list[Seen], int, str | None]:
    """Every ``_p2pai._tcp`` answer within ``timeout``, the number of other service types
    that answered (is mDNS alive at all?), and an error if zeroconf cannot start."""
    from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange, Zeroconf
    from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

    from netcore.net.discovery import SERVICE_TYPE

    try:
        azc = AsyncZeroconf(interfaces=addresses, ip_version=IPVersion.V4Only)
    except Exception as exc:
        return [], 0, f"{type(exc).__name__}: {exc}"
    names: set[str] = set()
    other_types: set[str] = set()

    def on_p2pai(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if state_change is not ServiceStateChange.Removed:
            names.add(name)

    def on_types(
        zeroconf: Zeroconf, service_type: str, name: str, state_change: ServiceStateChange
    ) -> None:
        if name != SERVICE_TYPE:
            other_types.add(name)

    browsers = []
    seen: list[Seen] = []
    try:
        browsers.append(AsyncServiceBrowser(
            azc.zeroconf, [SERVICE_TYPE], handlers=[on_p2pai], question_type=DNSQuestionType.QM
        ))  # fmt: skip
        browsers.append(AsyncServiceBrowser(
            azc.zeroconf, ["_services._dns-sd._udp.local."], handlers=[on_types],
            question_type=DNSQuestionType.QM,
        ))  # fmt: skip
        await asyncio.sleep(timeout)
        for name in sorted(names):
            info = AsyncServiceInfo(SERVICE_TYPE, name)
            with contextlib.suppress(Exception):
                await info.async_request(azc.zeroconf, 1500)
            seen.append(_seen(name, info))
    except Exception as exc:
        return seen, len(other_types), f"{type(exc).__name__}: {exc}"
    finally:
        for browser in browsers:
            with contextlib.suppress(Exception):
                await browser.async_cancel()
        with contextlib.suppress(Exception):
            await azc.async_close()
    return seen, len(other_types), None


def _seen(name: str, info: Any) -> Seen:
    from zeroconf import IPVersion

    from netcore.net.discovery import SERVICE_TYPE
    from netcore.net.identity import is_z85_key, peer_id_for

    props = {k: (v.decode("utf-8", "replace") if isinstance(v, bytes) else "")
             for k, v in dict(info.properties or {}).items()}  # fmt: skip
    seen = Seen(
        instance=name.removesuffix("." + SERVICE_TYPE),
        peer_id=props.get(b"id", ""),
        key=props.get(b"key", ""),
        network=props.get(b"net", ""),
        name=props.get(b"name", ""),
        caps=props.get(b"caps", ""),
        version=props.get(b"v", ""),
        addresses=list(info.parsed_addresses(IPVersion.V4Only)) if info.port else [],
        port=info.port or 0,
    )
    if not props:
        seen.valid, seen.why_invalid = False, "no TXT record (did not resolve)"
    elif seen.version != "1":
        seen.valid, seen.why_invalid = False, f"protocol version {seen.version!r}, not 1"
    elif not is_z85_key(seen.key) or peer_id_for(seen.key) != seen.peer_id:
        seen.valid, seen.why_invalid = False, "its id is not the hash of its key"
    elif not seen.port or not seen.addresses:
        seen.valid, seen.why_invalid = False, "no address or port"
    return seen


def own_public_key(data_dir: Path) -> str | None:
    from netcore.net.identity import PUBLIC_FILE

    try:
        import zmq.auth

        public, _ = zmq.auth.load_certificate(str(data_dir / PUBLIC_FILE))
        return public.decode("ascii") if public else None
    except Exception:
        return None


def check_mdns(
    cfg: Config,
    seen: list[Seen],
    other_types: int,
    error: str | None,
    addresses: list[str],
    local_addresses: set[str],
    timeout: float,
    report: Report,
) -> list[Seen]:
    """Findings from the browse; returns the valid nodes of our swarm."""
    where = ", ".join(addresses)
    if error is not None:
        report.add(Finding(
            "mdns", PROBLEM, f"mDNS cannot run on {where}: {error}",
            "another program may hold UDP 5353 without sharing it (SO_REUSEPORT), or the "
            "interface has no multicast; connect with --peer tcp://host:port#key meanwhile",
        ))  # fmt: skip
        return []
    unresolved = [s for s in seen if not s.valid and s.why_invalid.startswith("no TXT")]
    seen = [s for s in seen if s not in unresolved]
    valid = [s for s in seen if s.valid]
    invalid = [s for s in seen if not s.valid]
    if unresolved:
        report.add(Finding(
            "mdns", INFO, f"{len(unresolved)} announced node(s) did not answer when resolved "
            "(they probably left)", "",
        ))  # fmt: skip
    ours = [s for s in valid if s.network == cfg.network]
    others: dict[str, list[Seen]] = {}
    for s in valid:
        if s.network != cfg.network:
            others.setdefault(s.network, []).append(s)
    if ours:
        report.add(Finding(
            "mdns", OK, f"{len(ours)} node(s) of network {cfg.network!r} answered our mDNS query: "
            + ", ".join(f"{s.name or s.peer_id[:8]} ({s.addresses[0]}:{s.port})" for s in ours[:8]),
            "", {"nodes": [dataclasses.asdict(s) for s in ours]},
        ))  # fmt: skip
    if others:
        listing = ", ".join(f"{name!r} ({len(nodes)})" for name, nodes in sorted(others.items()))
        best = max(others.items(), key=lambda item: len(item[1]))[0]
        report.add(Finding(
            "network", WARN if ours else PROBLEM,
            f"p2pai node(s) on other network names answered: {listing}; this node is on "
            f"{cfg.network!r} and ignores them", f"use the same name on every node, e.g. "
            f"--network {best} (or network = \"{best}\" in the config file)",
            {"networks": {name: [dataclasses.asdict(s) for s in nodes] for name, nodes in others.items()}},
        ))  # fmt: skip
    elif ours:
        report.add(Finding("network", OK, f"every node that answered is on {cfg.network!r}"))
    if invalid:
        report.add(Finding(
            "mdns", WARN, f"{len(invalid)} p2pai record(s) were ignored: "
            + "; ".join(f"{s.instance[:24]}: {s.why_invalid}" for s in invalid[:4]),
            "upgrade or fix the node(s) that publish them",
        ))  # fmt: skip
    if not seen:
        if other_types:
            report.add(Finding(
                "mdns", PROBLEM if not cfg.static_peers else WARN,
                f"mDNS works on {where} ({other_types} other service type(s) answered) but no "
                f"p2pai node answered within {timeout:g}s",
                "start `p2pai node` on another machine of this subnet; nodes on other subnets "
                "need --peer tcp://host:port#key (mDNS does not cross routers)",
            ))  # fmt: skip
        else:
            report.add(Finding(
                "mdns", PROBLEM if not cfg.static_peers else WARN,
                f"nothing answered our mDNS query on {where} within {timeout:g}s",
                "start `p2pai node` on another machine of this subnet; if nodes run there, "
                "multicast is filtered (Wi-Fi client isolation, IGMP snooping, VLANs) or a "
                "firewall drops UDP 5353: allow it, or connect with --peer tcp://host:port#key",
            ))  # fmt: skip
    _check_duplicates(cfg, valid, local_addresses, report)
    return ours


def _check_duplicates(
    cfg: Config, valid: list[Seen], local_addresses: set[str], report: Report
) -> None:
    by_id: dict[str, set[tuple[tuple[str, ...], int]]] = {}
    for s in valid:
        by_id.setdefault(s.peer_id, set()).add((tuple(sorted(s.addresses)), s.port))
    duplicates = {pid: places for pid, places in by_id.items() if len(places) > 1}
    for pid, places in duplicates.items():
        where = "; ".join(f"{','.join(a)}:{p}" for a, p in sorted(places))
        report.add(Finding(
            "identity", PROBLEM, f"peer id {pid} is advertised from several places ({where}): "
            "the same identity on two nodes (a copied data directory)",
            "on all but one of them, remove identity.key and identity.key_secret from the data "
            "directory (or give it its own --data-dir); it makes a new identity",
        ))  # fmt: skip
    own = own_public_key(cfg.data_dir)
    if own:
        from netcore.net.identity import peer_id_for

        mine = peer_id_for(own)
        foreign = [s for s in valid if s.peer_id == mine and not set(s.addresses) & local_addresses]
        if foreign:
            report.add(Finding(
                "identity", PROBLEM, f"this node's identity ({mine}, from {cfg.data_dir}) is "
                f"advertised by another machine ({', '.join(foreign[0].addresses)})",
                "one of them must get a new identity: remove identity.key* from its data dir",
            ))  # fmt: skip
    if not duplicates:
        report.add(Finding("identity", OK, "no duplicate peer ids"))


# --- 4. connect, 5. clock -----------------------------------------------------------------


async def check_connect(
    cfg: Config, ours: list[Seen], addresses: list[str], timeout: float, report: Report
) -> None:
    """A throw-away client node greets the nodes found and the static peers."""
    from netcore.node import Node, NodeStartError

    tmp = Path(tempfile.mkdtemp(prefix="p2pai-doctor-"))
    probe = dataclasses.replace(
        cfg, data_dir=tmp, interfaces=tuple(addresses), caps=(), advertise=False, port=0,
        metrics_port=None, name="p2pai-doctor",
    )  # fmt: skip
    node = Node(probe)
    try:
        try:
            await node.start()
        except NodeStartError as exc:
            report.add(Finding(
                "connect", PROBLEM, f"a probe node cannot start: {exc}", "see the message"
            ))  # fmt: skip
            return
        wanted = {s.peer_id for s in ours} | {s.peer.peer_id for s in node.reach.static}
        deadline = time.monotonic() + max(timeout, 2.0)
        while time.monotonic() < deadline:
            greeted = {p.peer_id for p in node.usable_peers(kind=None)}
            if wanted <= greeted:
                break
            await asyncio.sleep(0.1)
        greeted_peers = {p.peer_id: p for p in node.usable_peers(kind=None)}
        for s in ours:
            if s.peer_id in greeted_peers:
                rtt = await node.ping(s.peer_id)
                report.add(Finding(
                    "connect", OK, f"{s.name or s.peer_id[:8]} at {s.addresses[0]}:{s.port} "
                    f"answered on TCP" + (f" ({rtt * 1000:.1f} ms)" if rtt is not None else ""),
                ))  # fmt: skip
            else:
                report.add(Finding(
                    "connect", PROBLEM, f"{s.name or s.peer_id[:8]} answered mDNS but not on TCP "
                    f"{', '.join(s.addresses)}:{s.port}",
                    f"a firewall on that machine blocks TCP {s.port}: allow it (ufw allow "
                    f"{s.port}/tcp; firewall-cmd --add-port={s.port}/tcp), or give the node a "
                    "fixed --port and allow that one",
                ))  # fmt: skip
        for row in node.reach.status():
            if row["connected"]:
                report.add(Finding("static", OK, f"static peer {row['peer']} answered"))
            else:
                report.add(Finding(
                    "static", PROBLEM, f"static peer {row['peer']} did not answer"
                    + (f" ({row['error']})" if row["error"] else ""),
                    "check host and port (`p2pai peers` or the node's log shows its endpoint), "
                    "that the key after '#' is that node's, and that no firewall blocks its TCP "
                    "port on the way",
                ))  # fmt: skip
        learned = [p for p in greeted_peers.values() if p.source == "shared"]
        if learned:
            report.add(Finding(
                "static", INFO, f"{len(learned)} more peer(s) learned from the peers' lists: "
                + ", ".join(p.name or p.peer_id[:8] for p in learned[:8]),
            ))  # fmt: skip
        check_peer_clocks(node.reach.clock_offsets, greeted_peers, report)
    finally:
        with contextlib.suppress(Exception):
            await node.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def check_peer_clocks(offsets: dict[str, float], peers: dict[str, Any], report: Report) -> None:
    skewed = {pid: off for pid, off in offsets.items() if abs(off) > CLOCK_SKEW_WARN_S}
    for pid, offset in skewed.items():
        peer = peers.get(pid)
        name = peer.name if peer is not None else pid[:8]
        report.add(Finding(
            "clock", WARN, f"the clock of {name} differs from ours by {offset:+.1f}s",
            "enable time sync on both machines (timedatectl set-ntp true); liveness uses "
            "monotonic clocks, but logs and metrics of the two will not line up",
        ))  # fmt: skip
    if offsets and not skewed:
        worst = max(abs(o) for o in offsets.values())
        report.add(Finding(
            "clock", OK, f"{len(offsets)} peer clock(s) agree with ours (within {worst:.2f}s)"
        ))  # fmt: skip


def ntp_state() -> str | None:
    """``synced``, ``unsynced`` or ``None`` when the kernel cannot tell (adjtimex)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
        buf = ctypes.create_string_buffer(1024)  # struct timex, modes = 0: read only
        state = libc.adjtimex(buf)
    except (OSError, AttributeError):
        return None
    if state < 0:
        return None
    return "unsynced" if state == 5 else "synced"  # TIME_ERROR


def check_local_clock(report: Report) -> None:
    now = time.time()
    if now < 1_700_000_000:
        report.add(Finding(
            "clock", PROBLEM, f"this machine's clock says {time.strftime('%Y-%m-%d', time.gmtime(now))}",
            "set the date and enable time sync: timedatectl set-ntp true",
        ))  # fmt: skip
        return
    state = ntp_state()
    if state == "unsynced":
        report.add(Finding(
            "clock", INFO, "this machine's clock is not synchronised (NTP)",
            "timedatectl set-ntp true (or run chrony/ntpd); nodes work without it, but logs "
            "of different machines will not line up",
        ))  # fmt: skip
    elif state == "synced":
        report.add(Finding("clock", OK, "this machine's clock is synchronised"))


# --- 6. firewall -------------------------------------------------------------------------


def _run(argv: list[str]) -> str | None:
    if shutil.which(argv[0]) is None:
        return None
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=3, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def check_firewall(cfg: Config, report: Report) -> None:
    port = str(cfg.port) if cfg.port else "<port>"
    hints: list[str] = []
    ufw = _run(["ufw", "status"])
    if ufw and "Status: active" in ufw:
        hints.append(f"ufw is active: ufw allow 5353/udp && ufw allow {port}/tcp")
    if _run(["firewall-cmd", "--state"]):
        hints.append(
            f"firewalld runs: firewall-cmd --add-service=mdns --add-port={port}/tcp (add "
            "--permanent to keep it)"
        )
    nft = _run(["nft", "list", "ruleset"])
    if nft and ("policy drop" in nft or " drop" in nft or " reject" in nft):
        hints.append(
            f"nftables drops some input: nft add rule inet filter input udp dport 5353 accept; "
            f"nft add rule inet filter input tcp dport {port} accept"
        )
    ipt = _run(["iptables", "-S", "INPUT"])
    if ipt and ("-P INPUT DROP" in ipt or "-j DROP" in ipt or "-j REJECT" in ipt):
        hints.append(
            f"iptables drops some input: iptables -I INPUT -p udp --dport 5353 -j ACCEPT; "
            f"iptables -I INPUT -p tcp --dport {port} -j ACCEPT"
        )
    port_hint = "" if cfg.port else " A fixed --port makes the rule simple."
    if hints:
        report.add(Finding("firewall", WARN, "a firewall filters incoming traffic here",
                           " | ".join(hints) + port_hint))  # fmt: skip
    elif any(_run([tool, "--version"]) is not None for tool in ("nft", "iptables", "ufw")):
        report.add(Finding("firewall", OK, "no firewall rule here drops UDP 5353 or TCP"))
    else:
        report.add(Finding(
            "firewall", INFO, "no firewall tool found to inspect on this machine",
            f"if one runs here or on the peers, allow UDP 5353 (mDNS) and TCP {port}.{port_hint}",
        ))  # fmt: skip
    if cfg.port:
        busy = []
        for address in cfg.interfaces or ("0.0.0.0",):
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
                try:
                    sock.bind((address, cfg.port))
                except OSError:
                    busy.append(address)
        if busy:
            report.add(Finding(
                "port", INFO, f"TCP port {cfg.port} is in use on {', '.join(busy)} (a node "
                "already running?)", "a second node here needs another --port",
            ))  # fmt: skip


# --- all of it ---------------------------------------------------------------------------


async def run_doctor(cfg: Config, timeout: float = 3.0) -> Report:
    try:
        cfg.validate()
    except ConfigError as exc:
        report = Report(cfg.network, list(cfg.interfaces))
        report.add(Finding("config", PROBLEM, str(exc), "fix the option or the config file"))
        return report
    interfaces = list_interfaces()
    report = Report(cfg.network, list(cfg.interfaces) or lan_addresses())
    addresses = check_interfaces(cfg, interfaces, report)
    local = {a for i in interfaces for a in i.addresses}
    ours: list[Seen] = []
    if addresses:
        check_multicast(addresses, interfaces, report)
        if cfg.mdns:
            seen, other_types, error = await browse(addresses, timeout)
            ours = check_mdns(cfg, seen, other_types, error, addresses, local, timeout, report)
        else:
            report.add(Finding("mdns", INFO, "mDNS is off (--no-mdns): only static peers"))
        await check_connect(cfg, ours, addresses, timeout, report)
    check_local_clock(report)
    check_firewall(cfg, report)
    report.findings.sort(key=lambda f: -RANK[f.status])
    return report


def exit_code(report: Report) -> int:
    return 2 if report.problems else 0


def environ_summary() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith("P2PAI_")}
