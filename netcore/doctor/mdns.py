"""Check 3: browse mDNS like a node, but keep every answer (other network names, records
that break the rules, duplicate ids)."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netcore.config.settings import Config
from netcore.doctor.report import INFO, OK, PROBLEM, WARN, Finding, Report


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
    from netcore.wire.addresses import is_z85_key, peer_id_for

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
        from netcore.wire.addresses import peer_id_for

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
