"""TCP hole punching: a simultaneous open between two nodes behind NATs, and the token check
that proves each end reached the other (:mod:`netcore.net.punching` decides when).

Each side binds a socket to a port of its own choosing and connects from it to the address
the other side announced (its NAT's public address, as a relay sees it, and the port the
other side bound: Linux ``masquerade`` and most home routers keep the source port). The
first SYN out of each NAT opens a mapping for the reply, so the other side's SYN is let in
as an answer, and the two connects meet as one TCP connection (RFC 793's simultaneous
open). The responder connects first, then answers, so its SYN is out before the initiator's.

Whoever ends up connected, the initiator writes :data:`MAGIC`, a version byte and the token
it sent over the end-to-end link; the responder checks it and writes the same back. Nothing
else is trusted: the peers' ZMTP + CURVE handshake then runs over the connection as over
any other, with the keys they hold.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import hmac
import ipaddress
import socket
import time

from netcore.net.splice import Stream, close_stream

MAGIC = b"P2PH"
VERSION = 1
TOKEN_LEN = 16
PREAMBLE_LEN = len(MAGIC) + 1 + TOKEN_LEN
RETRY_S = 0.1
"""A connect refused (an RST from a NAT that answers) is tried again this much later."""
MAX_ATTEMPTS = 10
"""Connects per punch at most: a peer that names an address where something refuses at once
gets 10 SYNs out of us, not one every RETRY_S for the whole window."""
CHECK_TIMEOUT_S = 3.0


class PunchFailed(Exception):
    """No connection in the window, or the other end did not prove the token (one line)."""


def parse_addr(text: str) -> tuple[str, int] | None:
    """``host:port`` (IPv4 or ``[IPv6]``) as (host, port); None for anything else, and for
    addresses no punch should go to (loopback, multicast, unspecified, broadcast)."""
    host, sep, port = text.rpartition(":")
    host = host.strip("[]")
    try:
        ip = ipaddress.ip_address(host)
        number = int(port)
    except ValueError:
        return None
    if not sep or not 0 < number < 65536:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if ip.is_loopback or ip.is_multicast or ip.is_unspecified or ip.is_link_local:
        return None
    if ip.is_reserved:
        return None
    if isinstance(ip, ipaddress.IPv4Address) and ip == ipaddress.IPv4Address("255.255.255.255"):
        return None
    return str(ip), number


def format_addr(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def bound_socket(local_host: str, port: int = 0) -> socket.socket:
    """A non-blocking TCP socket bound to ``local_host:port`` (0: a free port), reusable so
    that each connect attempt of one punch leaves from the same port."""
    family = socket.AF_INET6 if ":" in local_host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.setblocking(False)
        sock.bind((local_host, port))
    except OSError:
        sock.close()
        raise
    return sock


def start_connect(sock: socket.socket, remote: tuple[str, int]) -> None:
    """Send the SYN now (non-blocking): the caller answers its peer only after this."""
    code = sock.connect_ex(remote)
    if code not in (0, errno.EINPROGRESS, errno.EALREADY):
        raise OSError(code, errno.errorcode.get(code, str(code)))


async def _connected(sock: socket.socket, deadline: float) -> int:
    """Wait until the connect in progress ends: 0, or its errno (ETIMEDOUT at the deadline)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[None] = loop.create_future()
    fd = sock.fileno()

    def ready() -> None:
        if not done.done():
            done.set_result(None)

    loop.add_writer(fd, ready)
    try:
        await asyncio.wait_for(done, max(0.0, deadline - time.monotonic()))
    except asyncio.TimeoutError:
        return errno.ETIMEDOUT
    finally:
        loop.remove_writer(fd)
    return sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)


async def simultaneous_open(
    sock: socket.socket, remote: tuple[str, int], window_s: float, started: bool = False
) -> socket.socket:
    """Connect ``sock`` (bound) to ``remote`` until it works or ``window_s`` passes; each
    refused attempt is retried from the same local port. ``started``: the first connect was
    sent already (:func:`start_connect`). Returns the connected socket (maybe a new one)."""
    deadline = time.monotonic() + window_s
    local = sock.getsockname()[:2]
    last = 0
    try:
        for attempt in range(1, MAX_ATTEMPTS + 1):
            if not started:
                try:
                    start_connect(sock, remote)
                except OSError as exc:
                    last = exc.errno or errno.EINVAL
            started = False
            code = last or await _connected(sock, deadline)
            last = 0
            if code == 0:
                return sock
            sock.close()
            if attempt == MAX_ATTEMPTS or time.monotonic() + RETRY_S >= deadline:
                break
            await asyncio.sleep(RETRY_S)
            try:
                sock = bound_socket(local[0], local[1])
            except OSError as exc:
                raise PunchFailed(f"cannot bind {format_addr(*local)} again: {exc}") from None
    except BaseException:
        sock.close()  # cancelled (the node stops): no socket left behind
        raise
    raise PunchFailed(f"no direct connection to {format_addr(*remote)} in {window_s:g}s")


def preamble(token: bytes) -> bytes:
    return MAGIC + bytes([VERSION]) + token


async def prove(sock: socket.socket, token: bytes, initiator: bool) -> Stream:
    """Streams over the connected ``sock`` once both ends showed ``token``."""
    try:
        reader, writer = await asyncio.open_connection(sock=sock)
    except BaseException:
        sock.close()
        raise
    try:
        if initiator:
            writer.write(preamble(token))
        head = await asyncio.wait_for(reader.readexactly(PREAMBLE_LEN), CHECK_TIMEOUT_S)
        if not hmac.compare_digest(head, preamble(token)):
            raise PunchFailed("the direct connection did not show the punch token")
        if not initiator:
            writer.write(preamble(token))
        await writer.drain()
    except (OSError, asyncio.TimeoutError, asyncio.IncompleteReadError) as exc:
        await close_stream(writer)
        raise PunchFailed(f"the direct connection closed before the token check: {exc!r}") from None
    except BaseException:
        writer.close()  # a wrong token, or cancelled
        raise
    return reader, writer


def close_quietly(sock: socket.socket | None) -> None:
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.close()
