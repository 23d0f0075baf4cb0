"""How peers are named on the wire (PROTOCOL.md §1-2): Z85 CURVE keys, peer ids, endpoints.

Everything here reads strings that came from peers, so each memo refuses strings longer than a
key or an endpoint: a peer cannot fill it with large ones."""

from __future__ import annotations

import functools
import hashlib
import ipaddress

from zmq.utils import z85


@functools.lru_cache(maxsize=4096)
def peer_id_for(z85_public_key: bytes | str) -> str:
    """First 20 hex chars of SHA-256 over the 32 raw public-key bytes (PROTOCOL.md §1).

    Memoised: keys come back with every hello, shared peer list and discovery update, and a
    Z85 decode in Python plus a hash cost ~20 us each time."""
    key = z85_public_key.encode("ascii") if isinstance(z85_public_key, str) else z85_public_key
    raw = z85.decode(key)
    if len(raw) != 32:
        raise ValueError("a CURVE public key has 32 bytes")
    return hashlib.sha256(raw).hexdigest()[:20]


def is_z85_key(text: str | bytes) -> bool:
    """True for a 40-character Z85 string that decodes to 32 bytes (memoised for 40-character
    strings only, as :func:`peer_id_for`: every hello's shared peer list is checked with it,
    and a peer must not be able to fill the memo with large strings)."""
    return isinstance(text, (str, bytes)) and len(text) == 40 and _decodes_to_32(text)


@functools.lru_cache(maxsize=4096)
def _decodes_to_32(text: str | bytes) -> bool:
    try:
        key = text.encode("ascii") if isinstance(text, str) else text
        return len(z85.decode(key)) == 32
    except Exception:
        return False


@functools.lru_cache(maxsize=64)
def subnets(
    addresses: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    """The subnets we serve on (/8 for loopback, /24 otherwise), to prefer a peer's endpoint
    that is on one of them."""
    return tuple(
        ipaddress.ip_network(f"{addr}/{8 if addr.startswith('127.') else 24}", strict=False)
        for addr in addresses
    )


def endpoint_ip(endpoint: str) -> ipaddress.IPv4Address | None:
    """The address of a ``tcp://<IPv4>:<1-65535>`` endpoint, else None.

    Anything else from a peer's hello would make ZeroMQ's connect() raise EINVAL inside the
    inbound handler. Such an endpoint has at most 27 characters: longer strings are refused
    before the memo, so a peer cannot fill it with large ones."""
    if len(endpoint) > 32:
        return None
    return parse_endpoint(endpoint)


@functools.lru_cache(maxsize=4096)
def parse_endpoint(endpoint: str) -> ipaddress.IPv4Address | None:
    """(memoised: every hello and shared peer list names endpoints, most of them known)"""
    if not endpoint.startswith("tcp://"):
        return None
    host, _, port = endpoint.removeprefix("tcp://").rpartition(":")
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return None
    if ip.version != 4 or not (port.isascii() and port.isdigit() and 0 < int(port) < 65536):
        return None
    assert isinstance(ip, ipaddress.IPv4Address)
    return ip
