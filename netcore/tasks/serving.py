"""Serving: the worker side of ``task`` (PROTOCOL.md §6), from a request to its reply.

A quick task runs on the receiving stack (:meth:`Worker.run_now`); the rest run as their own
coroutine through the worker's queue. A ``cancel`` right behind its task (in one burst, before
the coroutine ran) is remembered and honoured when it starts. Every outcome is one reply and
one ``task_served`` event; a task that raises never takes the node down.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from typing import Any

import numpy as np

from netcore.observe.events import Event, TaskServed
from netcore.tasks.worker import Worker
from netcore.wire import protocol
from netcore.wire.protocol import ProtocolError, TaskError

log = logging.getLogger("p2pai.node")


class TaskServer:
    """Runs the tasks peers send this node and answers each exactly once."""

    def __init__(
        self,
        worker: Worker,
        caps: tuple[str, ...],
        reply: Callable[..., None],
        publish: Callable[[Event], None],
        counters: dict[str, int],
        spawn: Callable[[Coroutine[Any, Any, None]], Any],
    ) -> None:
        self.worker = worker
        self.caps = caps
        self.reply = reply
        """``reply(rid, msg, to=peer_id)``: sent only while ``rid`` is still that peer's."""
        self.publish = publish
        self.counters = counters
        self.spawn = spawn
        self._unstarted: dict[tuple[str, bytes], bool] = {}
        """Tasks received whose coroutine has not run yet (the worker has no ticket for them
        to cancel), by (requester, id): True once a cancel came for one."""

    def on_task(self, rid: bytes, requester: str, msg: dict[str, Any]) -> None:
        """A valid ``task`` from a greeted peer."""
        if not self.serve_now(rid, requester, msg):
            self._unstarted[(requester, msg["id"])] = False
            self.spawn(self.serve(rid, requester, msg))

    def on_cancel(self, requester: str, req_id: bytes) -> None:
        if (requester, req_id) in self._unstarted:
            self._unstarted[(requester, req_id)] = True  # right behind its task, in a burst
        else:
            self.worker.cancel(requester, req_id)

    def serve_now(self, rid: bytes, requester: str, msg: dict[str, Any]) -> bool:
        """Serve a quick task on this stack (Worker.run_now); False to run it as :meth:`serve`."""
        if msg["kind"] != "infer" or "infer" not in self.caps:
            return False
        try:
            done = self.worker.run_now(
                msg["model"], msg.get("sha256"), protocol.arrays_of(msg, "inputs")
            )
            if done is None:
                return False
            self._send_result(rid, requester, msg, *done)
        except Exception as exc:
            self._task_failed(rid, requester, msg, exc)
        return True

    async def serve(self, rid: bytes, requester: str, msg: dict[str, Any]) -> None:
        req_id: bytes = msg["id"]
        try:
            if self._unstarted.pop((requester, req_id), False):
                raise TaskError("cancelled", "cancelled by the requester")
            if msg["kind"] != "infer":
                raise TaskError("unsupported", f"task kind {msg['kind'][:40]!r} is not supported")
            if "infer" not in self.caps:
                raise TaskError("unsupported", "this node does not execute tasks")
            inputs = protocol.arrays_of(msg, "inputs")
            outputs, took_us = await self.worker.execute(
                requester,
                req_id,
                msg["model"],
                msg.get("sha256"),
                inputs,
                msg["timeout_ms"] / 1000,
                via=rid,
            )
            self._send_result(rid, requester, msg, outputs, took_us)
        except Exception as exc:
            self._task_failed(rid, requester, msg, exc)

    def _task_failed(self, rid: bytes, requester: str, msg: dict[str, Any], exc: Exception) -> None:
        """Answer a task that raised (called from its ``except``): the task's own error, a
        bad request, or ``internal`` (logged: one task never takes the node down)."""
        if isinstance(exc, TaskError):
            self._send_task_error(rid, requester, msg, exc)
        elif isinstance(exc, ProtocolError):
            self.counters["protocol_errors"] += 1
            self.reply(rid, protocol.error(exc.code, exc.message, msg["id"]))
        else:
            log.exception("task %s failed", msg["id"].hex()[:16])
            self.reply(rid, protocol.error("internal", f"{type(exc).__name__}: {exc}", msg["id"]))

    def _send_result(
        self,
        rid: bytes,
        requester: str,
        msg: dict[str, Any],
        outputs: dict[str, np.ndarray],
        took_us: int,
    ) -> None:
        wire = protocol.tensor_map(outputs)
        self.reply(
            rid,
            {
                "t": "result",
                "id": msg["id"],
                "outputs": wire,
                "digest": protocol.digest_tensors(wire),
                "took_us": took_us,
            },
            to=requester,
        )
        self.counters["tasks_served"] += 1
        self.publish(
            TaskServed(
                task_id=msg["id"].hex()[:16],
                requester=requester,
                ok=True,
                took_us=took_us,
                model=msg["model"],
            )
        )

    def _send_task_error(
        self, rid: bytes, requester: str, msg: dict[str, Any], exc: TaskError
    ) -> None:
        self.counters["tasks_refused"] += 1
        self.reply(rid, protocol.error(exc.code, exc.message, msg["id"]), to=requester)
        self.publish(
            TaskServed(
                task_id=msg["id"].hex()[:16],
                requester=requester,
                ok=False,
                took_us=0,
                model=msg["model"],
                error=exc.code,
            )
        )
