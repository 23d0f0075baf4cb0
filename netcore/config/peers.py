"""Static peers as settings: ``tcp://host:port#<z85 key>`` (PROTOCOL.md §2), from ``--peer``
or ``peer = [...]`` in the config file. :mod:`netcore.net.reach` keeps them connected."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from netcore.config.errors import ConfigError
from netcore.wire.addresses import is_z85_key, peer_id_for

PEER_FORMAT = "tcp://host:port#<40-character Z85 key>"


@dataclass(frozen=True, slots=True)
class StaticPeer:
    text: str
    host: str
    port: int
    key: str
    peer_id: str

    @property
    def endpoint(self) -> str:
        return f"tcp://{self.host}:{self.port}"


def parse_static_peer(text: str, option: str = "--peer") -> StaticPeer:
    """``tcp://host:port#key`` as a :class:`StaticPeer`; :class:`ConfigError` names the fix."""
    raw = text.strip()

    def bad(why: str) -> ConfigError:
        return ConfigError(f"{option} {text!r}: {why}; expected {PEER_FORMAT}")

    if not raw.startswith("tcp://"):
        raise bad("it must start with tcp://")
    address, sep, key = raw.removeprefix("tcp://").partition("#")
    if not sep or not key:
        raise bad("the peer's public key is missing after '#' (`p2pai peers` shows keys)")
    if not is_z85_key(key):
        raise bad("the key is not a 40-character Z85 public key")
    host, colon, port_text = address.rpartition(":")
    if not colon or not host:
        raise bad("host and port are needed")
    if not (port_text.isascii() and port_text.isdigit() and 0 < int(port_text) < 65536):
        raise bad(f"port {port_text!r} is not 1-65535")
    try:
        if ipaddress.ip_address(host).version != 4:
            raise bad("only IPv4 addresses are supported")
    except ValueError:
        if not all(part and part.replace("-", "").isalnum() for part in host.split(".")):
            raise bad(f"{host!r} is neither an IPv4 address nor a host name") from None
    return StaticPeer(raw, host, int(port_text), key, peer_id_for(key))


def parse_relay(text: str) -> StaticPeer:
    """A relay's address, ``tcp://host:port#key`` (``--relay``, ``relay = [...]``): the key
    is the relay's CURVE key, which ``p2pai relay`` prints when it starts."""
    return parse_static_peer(text, "--relay")
