"""Clones: two live nodes holding one identity, usually a copied data dir.

Peers cannot tell such nodes apart (they are one key), so tasks and replies go to whichever
connection is newer, and each node sees the other's mDNS record as its own. The detector
finds them two ways and tells the user of *each* node how to fix it:

* mDNS: a record of our own ``peer_id`` that advertises endpoints we do not serve. A TXT
  record can be forged by anyone, so before raising the alarm the detector dials that
  endpoint as a CURVE client *expecting our own public key*: only a server holding our
  secret key completes the handshake. On success it sends ``hello`` there, so the other
  node also learns of it (next point) even if its own mDNS view is stale.
* ``hello``: a hello on our ROUTER authenticated with our own key, advertising endpoints we
  do not serve.

Client-only nodes are exempt: several ``p2pai submit`` at once legitimately share the
client identity, and they serve nobody.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from netcore.net.identity import SECRET_FILE, Identity
from netcore.wire import protocol

log = logging.getLogger("p2pai.trust")

PROBE_TIMEOUT_S = 2.0
REPORT_EVERY_S = 60.0
_PROBE_EVENTS = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def clone_message(peer_id: str, data_dir: Path, endpoints: list[str]) -> str:
    where = ", ".join(endpoints[:3]) or "another endpoint"
    return (
        f"copied data dir: another live node uses this node's identity (peer id {peer_id}) at "
        f"{where}, and peers cannot tell the two apart; fix: stop one of them, move its "
        f"{Path(data_dir) / SECRET_FILE} away (a new identity is created at its next start) "
        "and start it again"
    )


class CloneDetector:
    def __init__(
        self,
        identity: Identity,
        data_dir: Path,
        caps: list[str] | tuple[str, ...],
        report: Callable[[str], None],
    ) -> None:
        self.identity = identity
        self.data_dir = data_dir
        self.caps = list(caps)
        self.report = report
        self.endpoints: list[str] = []
        self.ctx: zmq.asyncio.Context | None = None
        self.hello: Callable[[bytes], Mapping[str, Any]] | None = None
        self.clones_reported = 0
        self.forged_records = 0
        """mDNS records with our id whose endpoint does not hold our key."""
        self._reported: dict[tuple[str, ...], float] = {}
        self._probing: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._sockets: set[zmq.asyncio.Socket] = set()
        self._closed = False

    def attach(
        self,
        ctx: zmq.asyncio.Context,
        endpoints: list[str],
        hello: Callable[[bytes], Mapping[str, Any]],
    ) -> None:
        self.ctx = ctx
        self.endpoints = list(endpoints)
        self.hello = hello

    def _foreign(self, endpoints: list[str]) -> list[str]:
        return [e for e in endpoints if e and e not in self.endpoints]

    # --- the two ways in -------------------------------------------------------------------

    def on_mdns_self(self, endpoints: list[str], caps: list[str]) -> None:
        """mDNS shows a record with our ``peer_id``: probe endpoints that are not ours."""
        if self._closed or not self.caps or not caps or self.ctx is None:
            return
        for endpoint in self._foreign(endpoints)[:4]:
            if endpoint in self._probing or self._recently_reported((endpoint,)):
                continue
            self._probing.add(endpoint)
            task = asyncio.get_running_loop().create_task(self._probe(endpoint))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def on_hello_from_self(self, endpoints: list[str], caps: list[str]) -> bool:
        """A ``hello`` authenticated with our own key; True if it reveals a clone."""
        foreign = self._foreign(endpoints)
        if not self.caps or not caps or not foreign:
            return False
        self.raise_alarm(foreign)
        return True

    # --- probing ---------------------------------------------------------------------------

    async def _probe(self, endpoint: str) -> None:
        assert self.ctx is not None
        sock = self.ctx.socket(zmq.DEALER)
        self._sockets.add(sock)
        monitor: zmq.asyncio.Socket | None = None
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.SNDHWM, 10)
            sock.setsockopt(zmq.CURVE_SERVERKEY, self.identity.public_key)
            sock.setsockopt(zmq.CURVE_PUBLICKEY, self.identity.public_key)
            sock.setsockopt(zmq.CURVE_SECRETKEY, self.identity.secret_key)
            monitor = sock.get_monitor_socket(_PROBE_EVENTS)
            sock.connect(endpoint)
            if await self._handshake(monitor):
                if self.hello is not None:
                    with contextlib.suppress(zmq.ZMQError):
                        await sock.send(
                            protocol.encode(self.hello(protocol.new_id())), flags=zmq.DONTWAIT
                        )
                    # Give the frame a moment to leave before the socket closes.
                    with contextlib.suppress(asyncio.TimeoutError, zmq.ZMQError):
                        await asyncio.wait_for(sock.recv(), 0.5)
                self.raise_alarm([endpoint])
            else:
                self.forged_records += 1
                log.warning(
                    "an mDNS record advertises this node's identity at %s, but that endpoint "
                    "does not hold our key: a forged or stale record, ignored",
                    endpoint,
                )
        except zmq.ZMQError as exc:
            log.debug("clone probe of %s: %s", endpoint, exc)
        finally:
            self._probing.discard(endpoint)
            if monitor is not None:
                with contextlib.suppress(zmq.ZMQError):
                    sock.disable_monitor()
                monitor.close(linger=0)
            sock.close(linger=0)
            self._sockets.discard(sock)

    async def _handshake(self, monitor: zmq.asyncio.Socket) -> bool:
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            try:
                msg = await asyncio.wait_for(monitor.recv_multipart(), remaining)
            except asyncio.TimeoutError:
                return False
            event = parse_monitor_message(msg)["event"]
            if event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                return True
            # Failures are retried by ZeroMQ until the deadline; a forged record never succeeds.

    # --- reporting -------------------------------------------------------------------------

    def _recently_reported(self, endpoints: tuple[str, ...]) -> bool:
        at = self._reported.get(tuple(sorted(endpoints)))
        return at is not None and time.monotonic() - at < REPORT_EVERY_S

    def raise_alarm(self, endpoints: list[str]) -> None:
        key = tuple(sorted(endpoints))
        if self._recently_reported(key):
            return
        self._reported[key] = time.monotonic()
        self.clones_reported += 1
        self.report(clone_message(self.identity.peer_id, self.data_dir, list(key)))

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for sock in list(self._sockets):
            sock.close(linger=0)
