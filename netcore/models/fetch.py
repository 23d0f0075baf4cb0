"""Peer-to-peer model sharing: a worker fetches a model it lacks from the task's requester.

PROTOCOL.md §6: a worker asked to run a model (pinned by ``sha256``) that it does not hold
MAY fetch it with ``model_get`` from the requester, and MUST verify its SHA-256 before
loading it. Here:

* the download goes to the requester of the task only, in chunks of at most 1 MiB with a few
  in flight: back on the connection the task came on when the requester's hello says it
  answers ``model_get`` there (``dealer_serves``, docs/protocol.md: a requester that joined
  a moment ago, or a client-only one, may not be reachable any other way yet), else over our
  DEALER to it (so we wait until that connection is greeted);
* every chunk is checked (sha256, offset, length, total) and the whole file's sha256 is
  checked before it gets its final name; a corrupt or truncated transfer is refused, the
  temporary file deleted, and the download retried from scratch (a few times);
* concurrent tasks for the same sha256 share one download, which keeps running when the
  task that started it gives up (its retry then finds the model);
* models larger than ``max_bytes``, or than the whole quota of fetched models
  (:mod:`netcore.models.quota`), are refused before any byte is written; to store one, the
  least recently used fetched models make room;
* the file is written to a temporary name, fsynced and renamed to
  ``<data_dir>/models/<name>-<sha12>.onnx``, its manifest beside it;
* onnxruntime loads it once: the session that reads its inputs and outputs for the manifest
  is the one that runs its tasks (``ModelRegistry.adopt``).

An ONNX file is data: onnxruntime reads the graph, nothing received is ever executed as code.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import time
from collections import deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from netcore.models.quota import DEFAULT_QUOTA, ModelQuota, QuotaExceeded
from netcore.models.registry import ModelError, ModelRegistry, ModelSpec
from netcore.models.store import NAME_RE, SHA_RE, onnx_info, stem, store_verified
from netcore.net.peers import PeerTable
from netcore.wire import protocol
from netcore.wire.protocol import TaskError

SendBack = Callable[[bytes, str, Mapping[str, Any]], bool]
"""``send_back(routing_id, peer_id, msg)``: a request on our ROUTER's connection ``routing_id``,
only while it is still ``peer_id``'s (netcore.net.session.Session.send_back)."""

log = logging.getLogger("p2pai.fetch")

WINDOW = 4
"""``model_get`` requests in flight at once."""
CHUNK_TIMEOUT_S = 10.0
LINK_TIMEOUT_S = 5.0
ATTEMPTS = 3


class FetchError(Exception):
    """A download that cannot succeed (retrying would not help)."""


class CorruptTransfer(Exception):
    """Bytes that do not add up to the model: refused, and the download retried."""


class ModelFetcher:
    def __init__(
        self,
        registry: ModelRegistry,
        models_dir: Path,
        peers: PeerTable,
        send: Callable[[str, Mapping[str, Any]], bool],
        *,
        max_bytes: int = 512 * 1024 * 1024,
        on_stored: Callable[[ModelSpec], None] | None = None,
        chunk_size: int = protocol.MAX_CHUNK,
        window: int = WINDOW,
        chunk_timeout: float = CHUNK_TIMEOUT_S,
        attempts: int = ATTEMPTS,
        send_back: SendBack | None = None,
        quota: int = DEFAULT_QUOTA,
    ) -> None:
        self.registry = registry
        self.quota = ModelQuota(models_dir, registry, quota)
        """The disk quota of fetched models (least recently used ones make room)."""
        self.models_dir = models_dir
        self.peers = peers
        self.send = send
        self.send_back = send_back
        self.max_bytes = max_bytes
        self.on_stored = on_stored
        self.chunk_size = min(chunk_size, protocol.MAX_CHUNK)
        self.window = max(1, window)
        self.chunk_timeout = chunk_timeout
        self.attempts = attempts
        self._downloads: dict[str, asyncio.Task[ModelSpec]] = {}
        self._pending: dict[bytes, tuple[str, asyncio.Future[dict[str, Any]]]] = {}
        self.fetched = 0
        """Models downloaded and stored."""
        self.refused = 0
        """Transfers refused as corrupt or truncated (each then retried)."""
        self.bytes_in = 0

    # --- the node's hooks ------------------------------------------------------------------

    def on_reply(self, peer_id: str, msg: dict[str, Any]) -> bool:
        """A ``model_chunk`` or ``error`` from ``peer_id`` (on our DEALER to it, or on its
        connection to our ROUTER): True if it answers one of our ``model_get``."""
        rid = msg.get("id")
        entry = self._pending.get(rid) if isinstance(rid, bytes) else None
        if entry is None or entry[0] != peer_id:
            return False
        del self._pending[rid]  # type: ignore[arg-type]
        if not entry[1].done():
            entry[1].set_result(msg)
        return True

    async def close(self) -> None:
        for task in list(self._downloads.values()):
            task.cancel()
        for task in list(self._downloads.values()):
            with contextlib.suppress(BaseException):
                await task
        self._downloads.clear()
        if self.fetched:  # keep the fetched models' last uses for the next run
            self.quota.save()

    # --- fetching --------------------------------------------------------------------------

    async def fetch(
        self, requester: str, name: str, sha256: str, timeout: float, via: bytes | None = None
    ) -> ModelSpec:
        """The model ``name`` pinned by ``sha256``, downloaded from ``requester`` if need be;
        ``via`` is the routing id of the requester's connection the task came on.

        Raises :class:`TaskError`: ``unknown_model`` when it cannot be had (the requester may
        try another worker), ``timeout`` when the task's budget ran out first.
        """
        spec = self.registry.find(name, sha256)
        if spec is not None:
            return spec
        peer = self.peers.get(requester)
        if (
            not NAME_RE.fullmatch(name)
            or not SHA_RE.fullmatch(sha256)
            or peer is None
            or not peer.has_model(name, sha256)
        ):
            # PROTOCOL.md: model_get goes to a node that advertises the model; this one does not.
            raise TaskError(
                "unknown_model",
                f"no model {name[:64]!r} with sha256 {sha256[:12]}… here, "
                "and the requester does not advertise it",
            )
        task = self._downloads.get(sha256)
        if task is None:
            task = asyncio.get_running_loop().create_task(
                self._download(requester, name, sha256, via)
            )
            self._downloads[sha256] = task
            task.add_done_callback(self._download_done)
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout)
        except asyncio.TimeoutError:
            raise TaskError(
                "timeout", f"fetching model {name} took longer than the task's budget"
            ) from None
        except FetchError as exc:
            raise TaskError("unknown_model", f"cannot fetch model {name}: {exc}") from None

    def _download_done(self, task: asyncio.Task[ModelSpec]) -> None:
        for sha, known in list(self._downloads.items()):
            if known is task:
                del self._downloads[sha]
        if not task.cancelled() and task.exception() is not None:
            log.warning("model download failed: %s", task.exception())

    async def _download(
        self, requester: str, name: str, sha256: str, via: bytes | None
    ) -> ModelSpec:
        last: Exception | None = None
        for attempt in range(1, self.attempts + 1):
            try:
                spec = await self._download_once(requester, name, sha256, via)
            except CorruptTransfer as exc:
                self.refused += 1
                last = exc
                log.warning(
                    "model %s from %s refused (%s); attempt %d of %d",
                    name,
                    requester[:8],
                    exc,
                    attempt,
                    self.attempts,
                )
                continue
            self.fetched += 1
            log.info("model %s (%s) fetched from %s", name, sha256[:12], requester[:8])
            if self.on_stored is not None:
                self.on_stored(spec)
            return spec
        raise FetchError(f"transfer refused {self.attempts} times, last: {last}")

    async def _await_link(self, requester: str) -> None:
        """Until our DEALER to the requester is greeted (the task came on our ROUTER)."""
        deadline = time.monotonic() + LINK_TIMEOUT_S
        while True:
            peer = self.peers.get(requester)
            if peer is None:
                raise FetchError(f"the requester {requester[:8]} left")
            if peer.greeted:
                return
            if not peer.endpoints:
                raise FetchError(f"no way to connect back to the requester {requester[:8]}")
            if time.monotonic() > deadline:
                raise FetchError(f"no connection back to the requester {requester[:8]}")
            await asyncio.sleep(0.01)

    def _route(self, requester: str, via: bytes | None) -> bytes | None:
        """The ROUTER connection to ask on (the task's), or None for our DEALER."""
        peer = self.peers.get(requester)
        if via is None or self.send_back is None or peer is None or not peer.serves_back:
            return None
        return via

    def _request(
        self, requester: str, name: str, sha256: str, offset: int, via: bytes | None
    ) -> asyncio.Future[dict[str, Any]]:
        rid = protocol.new_id()
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[rid] = (requester, fut)
        msg = {
            "t": "model_get",
            "id": rid,
            "name": name,
            "sha256": sha256,
            "offset": offset,
            "length": self.chunk_size,
        }
        if via is not None and self.send_back is not None:
            sent = self.send_back(via, requester, msg)
        else:
            sent = self.send(requester, msg)
        if not sent:
            self._pending.pop(rid, None)
            fut.set_exception(CorruptTransfer(f"cannot send model_get to {requester[:8]}"))
        return fut

    async def _chunk(
        self,
        fut: asyncio.Future[dict[str, Any]],
        sha256: str,
        offset: int,
        total: int | None,
        name: str = "",
    ) -> tuple[bytes, int]:
        try:
            msg = await asyncio.wait_for(fut, self.chunk_timeout)
        except asyncio.TimeoutError:
            raise CorruptTransfer(
                f"no chunk at offset {offset} within {self.chunk_timeout:g}s"
            ) from None
        if msg.get("t") == "error":
            code, text = msg.get("code"), str(msg.get("message", ""))[:200]
            if code in ("unknown_model", "too_large", "unsupported", "bad_request"):
                raise FetchError(f"the requester answered {code}: {text}")
            raise CorruptTransfer(f"the requester answered {code}: {text}")
        data, got_total = msg.get("data"), msg.get("total")
        if msg.get("sha256") != sha256 or msg.get("offset") != offset:
            raise CorruptTransfer(f"chunk at offset {offset} is for another model or offset")
        if not isinstance(data, bytes) or not isinstance(got_total, int) or got_total < 0:
            raise CorruptTransfer(f"malformed chunk at offset {offset}")
        if total is not None and got_total != total:
            raise CorruptTransfer(
                f"model size changed from {total} to {got_total} bytes mid-transfer"
            )
        if got_total > self.max_bytes:
            raise FetchError(
                f"model is {got_total} bytes, this node fetches at most {self.max_bytes}"
            )
        self._check_quota(name or sha256[:12], got_total)
        expected = min(self.chunk_size, max(0, got_total - offset))
        if len(data) != expected:
            raise CorruptTransfer(
                f"chunk at offset {offset} has {len(data)} bytes, expected {expected} (truncated)"
            )
        return data, got_total

    async def _download_once(
        self, requester: str, name: str, sha256: str, via: bytes | None
    ) -> ModelSpec:
        route = self._route(requester, via)
        if route is None:
            await self._await_link(requester)
        peer = self.peers.get(requester)
        entry = next(
            (
                m
                for m in (peer.models if peer else [])
                if m.get("name") == name and m.get("sha256") == sha256
            ),
            None,
        )
        advertised = entry.get("size") if entry else None
        if isinstance(advertised, int) and advertised > self.max_bytes:
            raise FetchError(
                f"model is {advertised} bytes, this node fetches at most {self.max_bytes}"
            )
        if isinstance(advertised, int):
            self._check_quota(name, advertised)
        self.models_dir.mkdir(parents=True, exist_ok=True)
        part = self.models_dir / f".{stem(name, sha256)}.{os.urandom(4).hex()}.part"
        queue: deque[tuple[int, asyncio.Future[dict[str, Any]]]] = deque()
        digest = hashlib.sha256()
        loop = asyncio.get_running_loop()
        try:
            with open(part, "wb") as fh:
                data, total = await self._chunk(
                    self._request(requester, name, sha256, 0, route), sha256, 0, None, name
                )
                digest.update(data)
                fh.write(data)
                received = len(data)
                next_offset = received
                while received < total:
                    while len(queue) < self.window and next_offset < total:
                        queue.append(
                            (
                                next_offset,
                                self._request(requester, name, sha256, next_offset, route),
                            )
                        )
                        next_offset += self.chunk_size
                    offset, fut = queue.popleft()
                    data, _ = await self._chunk(fut, sha256, offset, total)
                    digest.update(data)
                    fh.write(data)
                    received += len(data)
                self.bytes_in += received
                actual = digest.hexdigest()
                if actual != sha256:
                    raise CorruptTransfer(f"sha256 is {actual[:12]}…, the task pins {sha256[:12]}…")
                fh.flush()
                await loop.run_in_executor(None, os.fsync, fh.fileno())
            extra: dict[str, Any] = {"fetched_from": requester}
            if entry is not None:
                for key in ("version", "label_output", "description"):
                    if isinstance(entry.get(key), str):
                        extra[key] = entry[key]
            try:
                self.quota.make_room(name, sha256, received)
            except QuotaExceeded as exc:
                raise FetchError(str(exc)) from None
            try:
                spec, session = await loop.run_in_executor(
                    None, self._store, name, sha256, part, extra
                )
            except ModelError as exc:
                raise FetchError(str(exc)) from None
            finally:
                self.quota.release(sha256)
            self.registry.adopt(spec, session)
            return spec
        finally:
            for _, fut in queue:
                if fut.done() and not fut.cancelled():
                    fut.exception()  # retrieved: a failed send, already reported
                fut.cancel()
            for rid, (_, fut) in list(self._pending.items()):
                if fut.done() or fut.cancelled():
                    self._pending.pop(rid, None)
            with contextlib.suppress(OSError):
                part.unlink()

    def _check_quota(self, name: str, size: int) -> None:
        try:
            self.quota.check(name, size)
        except QuotaExceeded as exc:
            raise FetchError(str(exc)) from None

    def _store(
        self, name: str, sha256: str, part: Path, extra: dict[str, Any]
    ) -> tuple[ModelSpec, tuple[Any, list[str]]]:
        """Off the loop: one onnxruntime session on the checked file, which both describes
        it for the manifest and runs its tasks; then the file gets its final name."""
        label = f"model {name}"
        session = self.registry.open_session(part, label)
        info = onnx_info(session[0], label)
        spec = store_verified(self.models_dir, name, sha256, part, extra, info=info)
        return spec, session


def model_chunk_reply(registry: ModelRegistry, msg: Mapping[str, Any]) -> dict[str, Any]:
    """The answer to a peer's ``model_get``: a chunk of a model we hold, or an error."""
    req_id = msg["id"]
    spec = registry.find(msg["name"], msg["sha256"])
    if spec is None:
        return protocol.error(
            "unknown_model", f"no model {msg['name'][:64]!r} with that sha256", req_id
        )
    if msg["length"] > protocol.MAX_CHUNK:
        return protocol.error("too_large", f"length over {protocol.MAX_CHUNK} bytes", req_id)
    try:
        with open(spec.path, "rb") as fh:
            # Past the end the chunk is empty; clamping also keeps a peer's offset of
            # 2**62..2**64-1 from failing lseek (EINVAL) or seek itself (ValueError).
            fh.seek(min(msg["offset"], spec.size))
            data = fh.read(msg["length"])
    except OSError as exc:
        return protocol.error("internal", f"cannot read model: {exc.strerror}", req_id)
    return {
        "t": "model_chunk",
        "id": req_id,
        "sha256": spec.sha256,
        "offset": msg["offset"],
        "data": data,
        "total": spec.size,
    }
