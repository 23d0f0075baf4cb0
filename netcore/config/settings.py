"""One ``Config`` for a node: CLI flags and ``P2PAI_*`` environment variables land here."""

from __future__ import annotations

import ipaddress
import os
import re
import socket
from dataclasses import dataclass, field
from pathlib import Path

import platformdirs

from netcore.config.errors import ConfigError
from netcore.config.peers import parse_relay, parse_static_peer
from netcore.config.sizes import GIB
from netcore.wire.addresses import is_z85_key

NETWORK_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("p2pai", appauthor=False))


def default_name() -> str:
    return socket.gethostname().split(".")[0][:63] or "p2pai"


@dataclass(slots=True)
class Config:
    """Everything a node needs to start. Times are seconds."""

    interfaces: tuple[str, ...] = ()
    """IPv4 addresses to serve on; empty means every non-loopback interface that is up (LAN)."""
    port: int = 0
    """ROUTER port; 0 picks a free one."""
    network: str = "default"
    """Swarm name: peers with another name are ignored."""
    data_dir: Path = field(default_factory=default_data_dir)
    name: str = field(default_factory=default_name)
    caps: tuple[str, ...] = ("infer",)
    """Task kinds this node executes; empty for a client-only node."""
    ping_interval: float = 1.0
    evasive_after: float = 3.0
    expired_after: float = 10.0
    dial_backoff: float = 1.0
    """The first wait between two dials of one endpoint not yet verified; doubles after each
    dial up to ``dial_backoff_max`` (netcore.net.dialer)."""
    dial_backoff_max: float = 300.0
    capacity: int = 0
    """Tasks executed at once; 0 means one per CPU core."""
    queue_limit: int = 256
    """Tasks waiting beyond ``capacity``; past it a task gets ``overloaded``."""
    max_input_bytes: int = 8 * 1024 * 1024
    """Inputs larger than this get ``too_large``."""
    task_timeout: float = 5.0
    """Default budget of one attempt of a submitted task."""
    max_attempts: int = 3
    mdns: bool = True
    """Browse for peers with mDNS."""
    advertise: bool = True
    """Register this node in mDNS; off for short-lived clients (``submit``, ``peers``)."""
    static_peers: tuple[str, ...] = ()
    """``tcp://host:port#<z85 key>`` peers to connect to where multicast does not pass;
    retried while they are down (see :mod:`netcore.net.reach`)."""
    relays: tuple[str, ...] = ()
    """Relays, ``tcp://host:port#<relay key>`` (``--relay``): a reservation at each, so that
    nodes behind other NATs reach us, and their registries of our network (netcore.net.relaying)."""
    share_peers: bool = True
    """Send the peers we know in ``hello`` (``peers``) and connect to those others send."""
    metrics_port: int | None = None
    """Serve Prometheus ``/metrics`` on this port (0 picks a free one); ``None``: off."""
    metrics_host: str = "127.0.0.1"
    models_dirs: tuple[Path, ...] = ()
    """Extra directories with ONNX models + manifests (besides the shipped ones and data_dir/models)."""
    shipped_models: bool = True
    """Load the models in assets/models and those of installed plugins (entry points
    ``p2pai.models``); off, the node holds only data_dir/models and ``models_dirs``."""
    max_model_bytes: int = 512 * 1024 * 1024
    """The largest model this node fetches from a requester (``model_get``)."""
    model_quota: int = 4 * GIB
    """Disk space all fetched models together may take (``--model-quota``): the least
    recently used fetched ones are deleted to make room; models added with ``models add``
    never are (netcore.models.quota)."""
    provider: str = ""
    """onnxruntime execution provider: cuda, rocm, coreml, directml or cpu; empty = the best available."""
    trust: str = "open"
    """``open``: any key may connect (traffic is still encrypted); ``allowlist``: only the keys
    in ``<base_dir>/trusted.json`` (and our own), for connections and workers (netcore.trust.keys)."""
    trusted_keys: tuple[str, ...] = ()
    """Z85 public keys trusted for this run only, besides ``trusted.json`` (``--trust-key``):
    the console and its ``--local`` peers trust each other this way, and nothing is written."""
    quarantine_cooldown: float = 600.0
    """Seconds a worker's first quarantine lasts; each further offence doubles it (then it is
    on probation again, netcore.trust.reputation)."""
    reputation_half_life: float = 86400.0
    """Seconds after which an observation of a worker weighs half in its score."""
    base_dir: Path | None = None
    """The base data dir holding ``trusted.json`` and ``p2pai.db``; ``None`` = ``data_dir``.
    Client commands run in ``<base>/client`` and set this to ``<base>``."""

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir).expanduser()
        if not self.capacity:
            self.capacity = max(1, os.cpu_count() or 1)

    def validate(self) -> None:
        if not NETWORK_RE.fullmatch(self.network):  # match() lets "$" accept a final "\n"
            raise ConfigError(
                f"--network {self.network!r}: use 1-63 letters, digits, '.', '_' or '-'"
            )
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"--port {self.port}: must be 0-65535")
        if len(self.name.encode("utf-8")) > 63 or not self.name:
            raise ConfigError("--name: 1 to 63 bytes of UTF-8")
        for iface in self.interfaces:
            try:
                addr = ipaddress.ip_address(iface)
            except ValueError:
                raise ConfigError(f"--interface {iface!r}: give an IPv4 address") from None
            if addr.version != 4:
                raise ConfigError(f"--interface {iface}: only IPv4 is supported")
        if not 0 < self.evasive_after < self.expired_after:
            raise ConfigError("liveness: need 0 < evasive_after < expired_after")
        if not self.ping_interval >= 0.05:  # also NaN
            raise ConfigError("liveness: ping_interval must be at least 0.05 s")
        if not 0.05 <= self.dial_backoff <= self.dial_backoff_max:  # also NaN
            raise ConfigError("dialling: need 0.05 <= dial_backoff <= dial_backoff_max (seconds)")
        self._check_reach()
        if self.trust not in ("open", "allowlist"):
            raise ConfigError(f"--trust {self.trust!r}: use 'open' or 'allowlist'")
        for key in self.trusted_keys:
            if not is_z85_key(key):
                raise ConfigError(f"--trust-key {key[:48]!r}: not a Z85 public key (40 characters)")
        if not self.model_quota > 0:
            raise ConfigError(f"--model-quota {self.model_quota}: must be more than 0 bytes")
        if not self.quarantine_cooldown > 0 or not self.reputation_half_life > 0:  # also NaN
            raise ConfigError("quarantine_cooldown and reputation_half_life must be > 0 seconds")

    def _check_reach(self) -> None:
        """validate()'s part for static peers and metrics."""
        for text in self.static_peers:
            parse_static_peer(text)
        for text in self.relays:
            parse_relay(text)
        if self.metrics_port is not None and not 0 <= self.metrics_port <= 65535:
            raise ConfigError(f"--metrics-port {self.metrics_port}: must be 0-65535")
        try:
            ipaddress.ip_address(self.metrics_host)
        except ValueError:
            raise ConfigError(
                f"--metrics-host {self.metrics_host!r}: give an IP address, e.g. 127.0.0.1"
            ) from None

    def serving_addresses(self) -> list[str]:
        """The IPv4 addresses the node binds and advertises."""
        if self.interfaces:
            return list(dict.fromkeys(self.interfaces))
        return lan_addresses()


def lan_addresses() -> list[str]:
    """IPv4 addresses of every non-loopback, non-link-local interface that is up."""
    import ifaddr  # a zeroconf dependency

    found: list[str] = []
    for adapter in ifaddr.get_adapters():
        for ip in adapter.ips:
            if not isinstance(ip.ip, str):
                continue
            addr = ipaddress.ip_address(ip.ip)
            if addr.is_loopback or addr.is_link_local:
                continue
            found.append(ip.ip)
    return list(dict.fromkeys(found))
