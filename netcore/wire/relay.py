"""The relay's wire: control messages between a node and a relay, and the data preamble.

A relay (``p2pai relay``, docs/reach.md) serves one TCP port. A connection that opens with
the ZMTP signature (``0xFF``) is a node's **control link**: ZMTP + CURVE to the relay's key,
which is how a node holds a *reservation* (authenticated by its own key) and asks for
circuits. A connection that opens with :data:`MAGIC` is one half of a **circuit**: the
preamble names a token the relay gave out over a control link, and once both halves are in
the relay copies bytes between them without reading them (the peers' ZMTP + CURVE run end
to end inside).

Control messages are msgpack maps with ``v`` and ``t`` like the node-to-node protocol
(PROTOCOL.md §4); they travel only between a node and a relay, never between nodes. Every
field is a claim: :func:`validate` checks each before it is used.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from typing import Any

from netcore.wire import protocol
from netcore.wire.addresses import is_z85_key
from netcore.wire.protocol import ProtocolError

MAGIC = b"P2PR"
PREAMBLE_VERSION = 1
TOKEN_LEN = 16
PREAMBLE_LEN = len(MAGIC) + 1 + TOKEN_LEN
"""``P2PR``, a version byte, the circuit's token: 21 bytes before the spliced stream."""
ZMTP_SIGNATURE = 0xFF
"""The first byte of every ZMTP 3 greeting: a control link."""

RESERVE = "relay_reserve"
"""node -> relay request {id, net, name, caps}: hold (or renew) a reservation and list us in
``net``'s registry. Reply :data:`RESERVED` or ``error``."""
RESERVED = "relay_reserved"
"""relay -> node reply {id, ttl (s), peers [entry], limits {str: int|float}, observed?}:
``observed`` (optional, ``host:port``) is where the relay sees the node's control link come
from; ``p2pai doctor`` compares it with the local addresses (public or NATed)."""
MAX_OBSERVED = 64
CONNECT = "relay_connect"
"""node -> relay request {id, key}: a circuit to the reserved node ``key``. Reply
:data:`CIRCUIT` or ``error``."""
CIRCUIT = "relay_circuit"
"""relay -> node reply {id, token}: open a data connection with this token."""
INCOMING = "relay_incoming"
"""relay -> node notice {token, key}: ``key`` asks for a circuit to us; open a data
connection with ``token`` and join it to our ROUTER."""
PEERS = "relay_peers"
"""relay -> node notice {net, peers [entry]}: the registry of our network changed."""
LEAVE = "relay_leave"
"""node -> relay notice {}: drop our reservation (we are stopping)."""

REQUESTS = frozenset({RESERVE, CONNECT})
TYPES = frozenset({RESERVE, RESERVED, CONNECT, CIRCUIT, INCOMING, PEERS, LEAVE, "error"})
ERROR_CODES = frozenset(
    {"bad_request", "unsupported", "overloaded", "limit", "unknown_peer", "reservation_required"}
)
MAX_PEERS = 256
"""Registry entries in one message (the rest are not sent, nor read)."""
MAX_FRAME = 256 * 1024
"""Control frames are small; a larger one closes the control link (ZMQ_MAXMSGSIZE)."""


def preamble(token: bytes) -> bytes:
    return MAGIC + bytes([PREAMBLE_VERSION]) + token


def parse_preamble(head: bytes) -> bytes | None:
    """The token of a data connection's first :data:`PREAMBLE_LEN` bytes, else None."""
    if len(head) != PREAMBLE_LEN or not head.startswith(MAGIC):
        return None
    if head[len(MAGIC)] != PREAMBLE_VERSION:
        return None
    return head[len(MAGIC) + 1 :]


def encode(msg: Mapping[str, Any]) -> bytes:
    return protocol.encode(msg)


def decode(frame: bytes | memoryview) -> dict[str, Any]:
    """One control frame, checked: :class:`ProtocolError` says what is wrong in one line."""
    raw = protocol._unpack(frame)
    if not isinstance(raw, dict):
        raise ProtocolError("bad_request", "a message must be a msgpack map")
    t = raw.get("t")
    if not isinstance(t, str):
        raise ProtocolError("bad_request", "message has no str field 't'")
    if type(raw.get("v")) is not int or raw["v"] != protocol.VERSION:
        raise ProtocolError("unsupported", "protocol version not supported", _rid(raw))
    if t not in TYPES:
        raise ProtocolError("unsupported", f"unknown relay message type {t[:40]!r}", _rid(raw))
    validate(raw)
    return raw


def _rid(msg: Mapping[str, Any]) -> bytes | None:
    rid = msg.get("id")
    return rid if isinstance(rid, bytes) and len(rid) == protocol.ID_LEN else None


def _bad(msg: Mapping[str, Any], why: str) -> ProtocolError:
    return ProtocolError("bad_request", f"{msg['t']}: {why}", _rid(msg))


def _text(msg: Mapping[str, Any], key: str, limit: int) -> str:
    value = msg.get(key)
    if not isinstance(value, str) or len(value) > limit:
        raise _bad(msg, f"{key} must be a str of at most {limit} characters")
    return value


def validate(msg: dict[str, Any]) -> None:
    t = msg["t"]
    if (t in REQUESTS or t in (RESERVED, CIRCUIT)) and _rid(msg) is None:
        raise _bad(msg, "id must be 16 bytes")
    if t == RESERVE:
        _text(msg, "net", 63)
        _text(msg, "name", 63)
        caps = msg.get("caps")
        if (
            not isinstance(caps, list)
            or len(caps) > 16
            or not all(isinstance(c, str) and len(c) <= 32 for c in caps)
        ):
            raise _bad(msg, "caps must be a list of at most 16 short str")
    elif t == CONNECT:
        if not is_z85_key(msg.get("key", "")):
            raise _bad(msg, "key must be a Z85 public key")
    elif t in (CIRCUIT, INCOMING):
        token = msg.get("token")
        if not isinstance(token, bytes) or len(token) != TOKEN_LEN:
            raise _bad(msg, f"token must be {TOKEN_LEN} bytes")
        if t == INCOMING and not is_z85_key(msg.get("key", "")):
            raise _bad(msg, "key must be a Z85 public key")
    elif t in (RESERVED, PEERS):
        if not isinstance(msg.get("peers"), list):
            raise _bad(msg, "peers must be a list")
        if t == RESERVED:
            ttl = msg.get("ttl")
            if not isinstance(ttl, (int, float)) or isinstance(ttl, bool) or not 1 <= ttl <= 3600:
                raise _bad(msg, "ttl must be 1-3600 seconds")
            observed = msg.get("observed")
            if observed is not None and not isinstance(observed, str):
                msg.pop("observed")  # optional and informational: a bad one is dropped
    elif t == "error":
        _text(msg, "code", 40)
        _text(msg, "message", 300)


def entries(msg: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The registry entries of a ``relay_reserved`` or ``relay_peers``: those well formed,
    at most :data:`MAX_PEERS`. Each is ``{key, name, caps}``."""
    found = []
    for entry in msg.get("peers", [])[:MAX_PEERS]:
        if not isinstance(entry, dict) or not is_z85_key(entry.get("key", "")):
            continue
        name, caps = entry.get("name", ""), entry.get("caps", [])
        if not isinstance(name, str) or not isinstance(caps, list):
            continue
        found.append(
            {
                "key": entry["key"],
                "name": name[:63],
                "caps": [c for c in caps[:16] if isinstance(c, str) and len(c) <= 32],
            }
        )
    return found


def observed_address(msg: Mapping[str, Any]) -> tuple[str, int] | None:
    """``relay_reserved``'s ``observed`` as (host, port), or None (absent, or not an
    IPv4/IPv6 ``host:port``: a claim of the relay, checked before it is shown)."""
    text = msg.get("observed")
    if not isinstance(text, str) or len(text) > MAX_OBSERVED:
        return None
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        return None
    if not sep or not 0 < number < 65536:
        return None
    return host, number


def error(code: str, message: str, rid: bytes | None = None) -> dict[str, Any]:
    msg: dict[str, Any] = {"t": "error", "code": code, "message": protocol.one_line(message)}
    if rid is not None:
        msg["id"] = rid
    return msg
