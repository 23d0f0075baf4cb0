"""An :class:`~netcore.models.kinds.base.Infer` that rides many items' calls on one task.

A kind runs one item at a time (``infer(model, {name: [1, ...]})``); a task costs about
0.8 ms of overhead however small it is, so a job of 1,000 small images sent one task each
spends most of its time on overhead. The batcher gathers the calls of many items with the
same model and the same per-row shape and dtype, and sends them as one task of up to
``max_rows`` rows when that many are waiting, or after ``delay_s`` (a few milliseconds) for
the rest. Rows of a batch are independent, so each caller gets its own rows of the outputs
back, checked: every output must have one row per input row (the outputs are a worker's
claim). A failed task (after the scheduler's own retries and the verifier's votes) fails each
of its calls with an :class:`InputError` carrying the task's error; a batch a worker refused
as ``bad_input`` is sent again in halves first, so that one bad item fails alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from netcore.jobs import trace
from netcore.models.kinds.base import InputError

log = logging.getLogger("p2pai.jobs")

Submit = Callable[..., Awaitable[Any]]
"""``submit(model, inputs, **options) -> TaskOutcome`` (``Node.submit``, ``Verifier.submit``)."""

DELAY_S = 0.004
"""How long the first call of a batch waits for others before the batch goes out anyway."""

Reply = tuple[dict[str, np.ndarray], str, float]
"""A call's rows of the outputs, the worker's name, the task's latency."""


@dataclass(slots=True)
class _Call:
    inputs: dict[str, np.ndarray]
    rows: int
    future: asyncio.Future[Reply]


@dataclass(slots=True)
class _Group:
    model: str
    calls: list[_Call] = field(default_factory=list)
    rows: int = 0
    nbytes: int = 0
    timer: asyncio.TimerHandle | None = None


@dataclass(slots=True)
class BatchStats:
    """The tasks a batcher sent: counts, rows, latencies, workers, errors."""

    tasks: int = 0
    ok: int = 0
    failed: int = 0
    rows: int = 0
    rows_ok: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    workers: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)


TASK_BYTES = 6 * 1024 * 1024
"""Input bytes a task carries at most: under what a node takes by default (``max_input_bytes``,
8 MiB), so that batching never makes a task of inputs that each fit one a worker refuses (two
OCR pages of 4.3 MB)."""


class Batcher:
    """``await batcher(model, inputs)``: an Infer over ``submit``, batching (module doc)."""

    def __init__(
        self,
        submit: Submit,
        max_rows: int | Mapping[str, int] = 64,
        delay_s: float = DELAY_S,
        options: Mapping[str, Mapping[str, Any]] | None = None,
        worker_name: Callable[[str | None], str] | None = None,
        max_bytes: int = TASK_BYTES,
    ) -> None:
        self.submit = submit
        self.max_bytes = max_bytes
        self.max_rows = max_rows
        """Rows a task carries at most (per model: a model whose batch axis is fixed, 1)."""
        self.delay_s = delay_s
        self.options = dict(options or {})
        """Options of ``submit`` by model (``sha256``: the version we hold)."""
        self.worker_name = worker_name or (lambda peer_id: peer_id or "?")
        self.stats = BatchStats()
        self._groups: dict[tuple[Any, ...], _Group] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def rows_for(self, model: str) -> int:
        if isinstance(self.max_rows, Mapping):
            return max(1, int(self.max_rows.get(model, 1)))
        return max(1, self.max_rows)

    async def __call__(self, model: str, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = {name: np.asarray(arr) for name, arr in inputs.items()}
        rows = {a.shape[0] if a.ndim else -1 for a in arrays.values()}
        if len(rows) != 1 or -1 in rows or 0 in rows:
            shapes = ", ".join(f"{n} {list(a.shape)}" for n, a in arrays.items())
            raise InputError(f"inputs of {model} need one batch axis of the same size ({shapes})")
        (n,) = rows
        key = (model, *sorted((name, a.dtype.str, a.shape[1:]) for name, a in arrays.items()))
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        size = sum(a.nbytes for a in arrays.values())
        group = self._groups.get(key)
        if group is not None and group.calls and group.nbytes + size > self.max_bytes:
            self._flush(key)  # this call would make the task too big: it starts the next one
            group = None
        if group is None:
            group = self._groups[key] = _Group(model)
        group.calls.append(_Call(arrays, n, future))
        group.rows += n
        group.nbytes += size
        if group.rows >= self.rows_for(model):
            self._flush(key)
        elif group.timer is None:
            group.timer = loop.call_later(self.delay_s, self._flush, key)
        outputs, worker, latency_s = await future
        found = trace.current.get()
        if found is not None:
            found.add(worker, latency_s)
        return outputs

    def _flush(self, key: tuple[Any, ...]) -> None:
        group = self._groups.pop(key, None)
        if group is None:
            return
        if group.timer is not None:
            group.timer.cancel()
        calls = [c for c in group.calls if not c.future.done()]  # not cancelled meanwhile
        if not calls:
            return
        task = asyncio.get_running_loop().create_task(self._send(group.model, calls))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, model: str, calls: list[_Call]) -> None:
        names = list(calls[0].inputs)
        batch = (
            calls[0].inputs
            if len(calls) == 1
            else {name: np.concatenate([c.inputs[name] for c in calls]) for name in names}
        )
        total = sum(c.rows for c in calls)
        stats = self.stats
        stats.tasks += 1
        stats.rows += total
        try:
            outcome = await self.submit(model, batch, **self.options.get(model, {}))
        except asyncio.CancelledError:
            for c in calls:
                c.future.cancel()
            raise
        except Exception as exc:  # a bug below us: each item's record says it, the job goes on
            log.warning("task of %d rows of %s raised", total, model, exc_info=True)
            stats.failed += 1
            stats.errors["internal"] += 1
            self._fail(calls, f"internal error: {type(exc).__name__}: {exc}")
            return
        stats.latencies_ms.append(round(float(outcome.latency_s) * 1000, 3))
        if not outcome.ok and outcome.error_code == "bad_input" and len(calls) > 1:
            # One item's input may spoil the batch: the halves go again, so only it fails.
            stats.failed += 1
            stats.errors["bad_input_split"] += 1
            half = len(calls) // 2
            await asyncio.gather(self._send(model, calls[:half]), self._send(model, calls[half:]))
            return
        if not outcome.ok:
            stats.failed += 1
            stats.errors[outcome.error_code or "error"] += 1
            self._fail(calls, f"{outcome.error_code}: {outcome.error}".strip(": "))
            return
        worker = self.worker_name(outcome.worker)
        parts, problem = split_rows(outcome.outputs, [c.rows for c in calls])
        if problem is not None:
            stats.failed += 1
            stats.errors["bad_output"] += 1
            self._fail(calls, f"worker {worker}: {problem}")
            return
        stats.ok += 1
        stats.rows_ok += total
        stats.workers[outcome.worker or "?"] += 1
        for c, outputs in zip(calls, parts, strict=True):
            if not c.future.done():
                c.future.set_result((outputs, worker, float(outcome.latency_s)))

    @staticmethod
    def _fail(calls: list[_Call], message: str) -> None:
        for c in calls:
            if not c.future.done():
                c.future.set_exception(InputError(message))

    async def aclose(self) -> None:
        """Send what is waiting, then wait for every task still out."""
        for key in list(self._groups):
            self._flush(key)
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def cancel(self) -> None:
        """Drop what is waiting and cancel the tasks still out (a job stopped)."""
        for group in self._groups.values():
            if group.timer is not None:
                group.timer.cancel()
            for c in group.calls:
                c.future.cancel()
        self._groups.clear()
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task


def split_rows(
    outputs: Mapping[str, Any], rows: list[int]
) -> tuple[list[dict[str, np.ndarray]], str | None]:
    """``outputs`` of a batch cut into the callers' rows, or why they cannot be."""
    total = sum(rows)
    arrays = {}
    for name, value in outputs.items():
        arr = np.asarray(value)
        if arr.ndim == 0 or arr.shape[0] != total:
            return [], f"output '{name}' has shape {list(arr.shape)} for {total} input rows"
        arrays[name] = arr
    if not arrays:
        return [], "no outputs"
    if len(rows) == 1:
        return [arrays], None
    parts: list[dict[str, np.ndarray]] = []
    start = 0
    for n in rows:
        parts.append({name: arr[start : start + n] for name, arr in arrays.items()})
        start += n
    return parts, None
