"""mDNS / DNS-SD discovery with python-zeroconf (PROTOCOL.md §2).

One ``AsyncZeroconf`` per node, bound to the interfaces the node serves on. Browser
handlers are synchronous and never block: a record already in the cache is handled at once,
otherwise an ``async_request`` is scheduled as a tracked task. Records that break the rules
(wrong version, an ``id`` that is not the hash of ``key``, another swarm, undecodable
fields) are ignored and counted, never raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from zeroconf import DNSQuestionType, IPVersion, ServiceStateChange, Zeroconf
from zeroconf.asyncio import AsyncServiceBrowser, AsyncServiceInfo, AsyncZeroconf

from netcore.net.identity import Identity
from netcore.wire.addresses import is_z85_key, peer_id_for

log = logging.getLogger("p2pai.discovery")

SERVICE_TYPE = "_p2pai._tcp.local."
RESOLVE_TIMEOUT_MS = 3000


@dataclass(frozen=True, slots=True)
class DiscoveredPeer:
    peer_id: str
    key: str
    name: str
    caps: list[str]
    endpoints: list[str]


def parse_service(
    properties: dict[bytes, bytes | None], addresses: list[str], port: int | None, network: str
) -> DiscoveredPeer | None:
    """A TXT record plus addresses as a peer, or ``None`` when the record must be ignored."""

    def text(key: bytes) -> str | None:
        value = properties.get(key)
        if value is None:
            return None
        try:
            return value.decode("utf-8")
        except UnicodeDecodeError:
            return None

    if text(b"v") != "1":
        return None
    key = text(b"key")
    peer_id = text(b"id")
    if not key or not peer_id or not is_z85_key(key) or peer_id_for(key) != peer_id:
        return None
    if text(b"net") != network:
        return None
    if properties.get(b"name") is not None and text(b"name") is None:
        return None  # present but not UTF-8: an undecodable field, like any other
    name = text(b"name") or peer_id[:8]
    if len(name.encode("utf-8")) > 63:
        return None
    caps_text = text(b"caps")
    if caps_text is None:
        return None
    caps = [c for c in caps_text.split(",") if c]
    if not port or not addresses:
        return None
    endpoints = [f"tcp://{addr}:{port}" for addr in addresses]
    return DiscoveredPeer(peer_id, key, name, caps, endpoints)


class Discovery:
    """Registers this node and reports peers of the same swarm as they come and go."""

    def __init__(
        self,
        identity: Identity,
        network: str,
        name: str,
        caps: list[str],
        interfaces: list[str],
        on_seen: Callable[[DiscoveredPeer], None],
        on_gone: Callable[[str], None],
    ) -> None:
        self.identity = identity
        self.network = network
        self.name = name
        self.caps = caps
        self.interfaces = interfaces
        self.on_seen = on_seen
        self.on_gone = on_gone
        self.azc: AsyncZeroconf | None = None
        self.browser: AsyncServiceBrowser | None = None
        self.info: AsyncServiceInfo | None = None
        self.ignored_records = 0
        self.on_self: Callable[[DiscoveredPeer], None] | None = None
        """Told of records that carry our own ``peer_id`` (clone detection, netcore.net.clones)."""
        self.other_networks: dict[str, set[str]] = {}
        """Swarm names seen in mDNS other than ours -> instance names (doctor, metrics)."""
        self._pending: set[asyncio.Task[None]] = set()
        self._announcing: asyncio.Future[Any] | None = None

    async def prepare(self) -> None:
        """Open the mDNS sockets; done before the node binds, so that announcing once the
        ROUTER's port is known costs only the announcement."""
        if self.azc is None:
            self.azc = AsyncZeroconf(interfaces=self.interfaces, ip_version=IPVersion.V4Only)
            await self.azc.zeroconf.async_wait_for_start()

    async def start(self, addresses: list[str], port: int, advertise: bool = True) -> None:
        await self.prepare()
        assert self.azc is not None
        if advertise:
            await self._register(addresses, port)
        # Multicast (QM) questions: with several processes sharing port 5353 on one host,
        # unicast answers would reach only one of them.
        self.browser = AsyncServiceBrowser(
            self.azc.zeroconf,
            [SERVICE_TYPE],
            handlers=[self._on_change],
            question_type=DNSQuestionType.QM,
        )

    async def _register(self, addresses: list[str], port: int) -> None:
        assert self.azc is not None
        peer_id = self.identity.peer_id
        self.info = AsyncServiceInfo(
            SERVICE_TYPE,
            f"{peer_id}.{SERVICE_TYPE}",
            addresses=[socket.inet_aton(a) for a in addresses],
            port=port,
            properties={
                "v": "1",
                "id": peer_id,
                "key": self.identity.public_text,
                "net": self.network,
                "name": self.name,
                "caps": ",".join(self.caps),
            },
            server=f"{peer_id}.local.",
        )
        # The instance name is the hash of our key, unique by construction: skip the
        # ~1.2 s name probe (cooperating_responders) and announce at once.
        announcing = await self.azc.async_register_service(
            self.info, cooperating_responders=True, strict=False
        )
        # The first announcement leaves at once; the repeats (RFC 6762 §8.3) take ~0.5 s and
        # must not delay browsing, so they finish in the background.
        self._announcing = asyncio.ensure_future(announcing)

    async def stop(self) -> None:
        """Goodbye (TTL 0) and close; waits until the goodbye is sent."""
        if self.azc is None:
            return
        for task in list(self._pending):
            task.cancel()
        if self._announcing is not None and not self._announcing.done():
            self._announcing.cancel()
            with contextlib.suppress(BaseException):
                await self._announcing
        if self.browser is not None:
            with contextlib.suppress(Exception):
                await self.browser.async_cancel()
        if self.info is not None:
            with contextlib.suppress(Exception):
                goodbye = await self.azc.async_unregister_service(self.info)
                await goodbye
        with contextlib.suppress(Exception):
            await self.azc.async_close()
        self.azc = None

    # Called by zeroconf on the event loop; must not block.
    def _on_change(
        self,
        zeroconf: Zeroconf,
        service_type: str,
        name: str,
        state_change: ServiceStateChange,
    ) -> None:
        instance = name.removesuffix("." + SERVICE_TYPE)
        if instance == self.identity.peer_id and (
            self.on_self is None or state_change is ServiceStateChange.Removed
        ):
            return
        if state_change is ServiceStateChange.Removed:
            self.on_gone(instance)
            return
        info = AsyncServiceInfo(service_type, name)
        if info.load_from_cache(zeroconf):
            self._handle_info(info)
            return
        task = asyncio.get_running_loop().create_task(self._resolve(zeroconf, info))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _resolve(self, zeroconf: Zeroconf, info: AsyncServiceInfo) -> None:
        try:
            if await info.async_request(zeroconf, RESOLVE_TIMEOUT_MS):
                self._handle_info(info)
        except Exception as exc:  # garbage records must never take the node down
            self.ignored_records += 1
            log.debug("could not resolve %s: %s", info.name, exc)

    def _handle_info(self, info: AsyncServiceInfo) -> None:
        net = (info.properties or {}).get(b"net")
        if isinstance(net, bytes) and net != self.network.encode("utf-8"):
            self._on_other_network(net.decode("utf-8", "replace")[:63], info.name)
        try:
            peer = parse_service(
                dict(info.properties or {}),
                info.parsed_addresses(IPVersion.V4Only),
                info.port,
                self.network,
            )
        except Exception as exc:
            peer = None
            log.debug("bad record %s: %s", info.name, exc)
        if peer is None or peer.peer_id == self.identity.peer_id:
            if peer is None:
                self.ignored_records += 1
            elif self.on_self is not None:
                self.on_self(peer)
            return
        self.on_seen(peer)

    def _on_other_network(self, network: str, instance: str) -> None:
        """A p2pai node of another swarm: ignored, but counted and said once per name."""
        seen = self.other_networks.get(network)
        if seen is None:
            if len(self.other_networks) >= 64:
                return
            seen = self.other_networks[network] = set()
            log.info(
                "ignoring p2pai node(s) on network %r (this node is on %r); "
                "use the same --network on every node, `p2pai doctor` lists them",
                network,
                self.network,
            )
        if len(seen) < 1024:
            seen.add(instance)
