"""Task execution: a bounded queue in front of onnxruntime sessions run off the event loop.

At most ``capacity`` tasks run at once, each in a thread of a pool (onnxruntime releases
the GIL while it computes); up to ``queue_limit`` more wait. Past that a task is refused
with ``overloaded`` at once, so a requester can go elsewhere instead of queueing without
bound. A task whose budget ran out while it waited is answered ``timeout`` without running.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from netcore.models.registry import InputMismatch, ModelError, ModelRegistry, ModelSpec
from netcore.wire.protocol import TaskError

log = logging.getLogger("p2pai.node")

INLINE_MAX_BYTES = 64 * 1024
"""Inputs up to this size of a quick model run on the event loop (see LoadedModel.is_quick)."""


def _inference_error(exc: Exception) -> TaskError:
    """What a failed model run answers: ``internal``, with the model error's own words."""
    if isinstance(exc, ModelError):
        return TaskError("internal", str(exc))
    return TaskError("internal", f"inference failed: {type(exc).__name__}: {exc}")


WARM_UP_MAX_BYTES = 4 * 1024 * 1024
"""Models up to this size are loaded at start (digits, iris: a first task without the wait);
bigger ones (OCR, MiniLM: tens of MB, a hundred MB of sessions) when a task first needs them,
so a node that never runs them (a Raspberry Pi) never holds them."""


@dataclass(slots=True)
class _Ticket:
    cancelled: bool = False


class Worker:
    def __init__(
        self,
        registry: ModelRegistry,
        capacity: int,
        queue_limit: int,
        max_input_bytes: int,
    ) -> None:
        self.registry = registry
        self.capacity = capacity
        self.queue_limit = queue_limit
        self.max_input_bytes = max_input_bytes
        self._pool = ThreadPoolExecutor(max_workers=capacity, thread_name_prefix="p2pai-infer")
        self._slots = asyncio.Semaphore(capacity)
        self._tickets: dict[tuple[str, bytes], _Ticket] = {}
        self.inflight = 0
        self.queued = 0
        self.served = 0
        self.failed = 0
        self.fetch: Callable[[str, str, str, float, bytes | None], Awaitable[ModelSpec]] | None
        self.fetch = None
        """Called with (requester, model, sha256, budget, via) for a pinned model not held here;
        ``via`` is the routing id of the connection the task came on (to fetch back on it)."""

    async def warm_up(self, delay: float) -> None:
        """Load every model off the loop, so the first task does not pay for the session.

        It waits ``delay`` first: loading holds the GIL in bursts, and the first moments
        after the announcement are when every running node connects and greets us (a task
        that comes meanwhile loads its model itself)."""
        await asyncio.sleep(delay)
        loop = asyncio.get_running_loop()
        for spec in self.registry.specs():
            if spec.size > WARM_UP_MAX_BYTES:
                continue  # loaded by its first task: a node need not hold every big model
            try:
                loaded = await loop.run_in_executor(None, self.registry.load, spec)
            except Exception as exc:
                log.warning("model %s cannot be loaded: %s", spec.name, exc)
                continue
            sample = {s.name: warm_up_input(s.shape or (), s.dtype) for s in spec.inputs}
            try:
                # The first run is slow (lazy allocations): time only the ones after it.
                # Warming up is no use (netcore.models.quota): ``use=False`` leaves the last
                # use alone, also when a real task runs the model meanwhile (saving and
                # restoring it here lost that task's use: the quota test's flake).
                await loop.run_in_executor(None, loaded.run, sample, False)
                loaded.typical_run_s = None
                for _ in range(5):
                    await loop.run_in_executor(None, loaded.run, sample, False)
            except Exception as exc:  # a graph that zeros do not suit: its first task warms it
                log.debug("model %s: no warm-up run (%s)", spec.name, exc)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def cancel(self, requester: str, task_id: bytes) -> bool:
        """Mark a queued or running task cancelled; its reply becomes ``cancelled``."""
        ticket = self._tickets.get((requester, task_id))
        if ticket is None:
            return False
        ticket.cancelled = True
        return True

    def run_now(
        self, model: str, sha256: str | None, inputs: Mapping[str, np.ndarray]
    ) -> tuple[dict[str, np.ndarray], int] | None:
        """Run a quick task at once, on the caller's stack, when nothing stands in its way:
        the model is loaded here, quick (LoadedModel.is_quick), the inputs small, a slot free
        and no task waiting for one (order is kept). Returns None to take :meth:`execute`'s
        way instead; raises :class:`TaskError` as it would.

        This is the hot path of a busy worker: no task, semaphore or ticket per request. A
        quick run cannot be cancelled anyway: it is over before a ``cancel`` could be read.
        """
        spec = self.registry.find(model, sha256)
        if spec is None or self.queued or self.inflight >= self.capacity:
            return None
        loaded = self.registry.loaded(spec)
        if loaded is None or not loaded.is_quick():
            return None
        size = 0
        for arr in inputs.values():
            size += arr.nbytes
        if size > INLINE_MAX_BYTES or size > self.max_input_bytes:
            return None
        try:
            spec.check_inputs(inputs)
        except InputMismatch as exc:
            self.failed += 1
            raise TaskError("bad_input", str(exc)) from None
        started = time.perf_counter_ns()
        self.inflight += 1
        try:
            outputs = loaded.run(inputs)
        except Exception as exc:
            self.failed += 1
            raise _inference_error(exc) from None
        finally:
            self.inflight -= 1
        self.served += 1
        return outputs, (time.perf_counter_ns() - started) // 1000

    async def execute(
        self,
        requester: str,
        task_id: bytes,
        model: str,
        sha256: str | None,
        inputs: Mapping[str, np.ndarray],
        timeout_s: float,
        via: bytes | None = None,
    ) -> tuple[dict[str, np.ndarray], int]:
        """Run one task; returns ``(outputs, took_us)`` or raises :class:`TaskError`.
        ``via``: the ROUTER connection the task came on (a model we lack is fetched on it)."""
        spec = self.registry.find(model, sha256)
        if spec is None and sha256 and self.fetch is not None:
            # Not held here: fetch it from the requester (netcore.models.fetch), within the budget.
            fetch_started = time.monotonic()
            spec = await self.fetch(requester, model, sha256, timeout_s, via)
            timeout_s -= time.monotonic() - fetch_started
        if spec is None:
            pinned = f" with sha256 {sha256[:12]}…" if sha256 else ""
            raise TaskError("unknown_model", f"no model {model!r}{pinned} on this node")
        size = sum(arr.nbytes for arr in inputs.values())
        if size > self.max_input_bytes:
            raise TaskError(
                "too_large",
                f"inputs are {size} bytes, this node takes at most {self.max_input_bytes}",
            )
        try:
            spec.check_inputs(inputs)
        except InputMismatch as exc:
            raise TaskError("bad_input", str(exc)) from None
        if self.inflight + self.queued >= self.capacity + self.queue_limit:
            raise TaskError(
                "overloaded", f"queue full ({self.queue_limit} waiting); try another peer"
            )
        deadline = time.monotonic() + timeout_s
        key = (requester, task_id)
        ticket = _Ticket()
        self._tickets[key] = ticket
        self.queued += 1
        try:
            try:
                await self._slots.acquire()
            finally:
                self.queued -= 1
            self.inflight += 1
            try:
                if ticket.cancelled:
                    raise TaskError("cancelled", "cancelled by the requester")
                if time.monotonic() > deadline:
                    raise TaskError("timeout", "the task's budget ran out while it waited")
                started = time.perf_counter_ns()
                try:
                    loaded = self.registry.load(spec)
                    if size <= INLINE_MAX_BYTES and loaded.is_quick():
                        # Cheaper than the two thread hops it saves; see LoadedModel.is_quick.
                        outputs = loaded.run(inputs)
                    else:
                        loop = asyncio.get_running_loop()
                        outputs = await loop.run_in_executor(self._pool, loaded.run, inputs)
                except TaskError:
                    raise
                except Exception as exc:
                    raise _inference_error(exc) from None
                took_us = (time.perf_counter_ns() - started) // 1000
                if ticket.cancelled:
                    raise TaskError("cancelled", "cancelled by the requester")
                self.served += 1
                return outputs, took_us
            finally:
                self.inflight -= 1
                self._slots.release()
        except TaskError:
            self.failed += 1
            raise
        finally:
            self._tickets.pop(key, None)


def warm_up_input(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """Zeros a graph takes: one row, and 32 for every other free axis (an image's height and
    width: a detection graph down-samples them by 32)."""
    dims = [(1 if axis == 0 else 32) if d == -1 else d for axis, d in enumerate(shape)]
    return np.zeros(dims, dtype=dtype)
