"""A ZAP handler (ZeroMQ RFC 27) for CURVE, answered on the event loop by a :class:`Pump`.

ZeroMQ asks it about every connection that completes a CURVE handshake on our ROUTER: the
trust policy decides (PROTOCOL.md §3), and the client's Z85 public key becomes the
connection's ``User-Id``, the only sender identity the node believes. pyzmq's
``AsyncioAuthenticator`` does the same with a future per request, debug logging and
several mechanisms we do not use; when a node joins, every running node connects to it at
once, and this handler is on that path.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import zmq
from zmq.utils import z85

from netcore.net.pump import Pump

log = logging.getLogger("p2pai.zap")

ZAP_ENDPOINT = "inproc://zeromq.zap.01"
VERSION = b"1.0"


class ZapHandler:
    """Answers ZAP requests for ``domain``: CURVE only, ``allow(domain, z85_key)`` decides."""

    def __init__(
        self,
        ctx: zmq.Context[zmq.Socket[bytes]],
        domain: bytes,
        allow: Callable[[str, bytes], bool],
    ) -> None:
        self.ctx = ctx
        self.domain = domain
        self.allow = allow
        self.socket: zmq.Socket[bytes] | None = None
        self.pump: Pump | None = None

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the ZAP endpoint (before any CURVE server socket binds)."""
        sock = self.ctx.socket(zmq.REP)
        sock.setsockopt(zmq.LINGER, 0)
        sock.bind(ZAP_ENDPOINT)
        self.socket = sock
        self.pump = Pump(loop, sock, self._on_request, copy=True)

    def close(self) -> None:
        if self.pump is not None:
            self.pump.close()
            self.pump = None
        if self.socket is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.socket.close(linger=0)
            self.socket = None

    def _on_request(self, frames: list[bytes]) -> None:
        # A REP socket must answer each request before it can read the next: always reply.
        request_id = frames[1] if len(frames) > 1 else b""
        try:
            code, text, user_id = self._decide(frames)
        except Exception as exc:  # never leave the REP socket without its reply
            log.debug("ZAP request failed: %s", exc)
            code, text, user_id = b"500", b"Internal error", b""
        assert self.socket is not None
        self.socket.send_multipart([VERSION, request_id, code, text, user_id, b""])

    def _decide(self, frames: list[bytes]) -> tuple[bytes, bytes, bytes]:
        if len(frames) < 7:
            return b"400", b"Not enough frames", b""
        version, _request_id, domain, _address, _identity, mechanism = frames[:6]
        if version != VERSION:
            return b"400", b"Invalid version", b""
        if mechanism != b"CURVE" or len(frames[6]) != 32:
            return b"400", b"CURVE only", b""
        if domain != self.domain:
            return b"400", b"Unknown domain", b""
        key = z85.encode(frames[6])
        if not self.allow(domain.decode("ascii", "replace"), key):
            return b"400", b"Unknown key", b""
        return b"200", b"OK", key
