"""Running a job: items in, records out in input order, memory bounded.

The engine pulls items from the source a chunk at a time, hashes them, and looks their
results up in the journal in one query a chunk. An item the journal holds is its records at
once; the others are read by the kind and run through ``infer`` (the batcher), each in its
own coroutine, their results journaled. Identical inputs in flight share one computation.

At most ``window`` items are between the oldest one not written yet and the newest one
started, so memory holds at most ``window`` items and their records, however long the input;
a slow item holds the next ones back by at most that much. Records reach the writer in input
order through a reorder buffer. A ``stop`` event (Ctrl-C) ends the job early: no new item
starts, those in flight are cancelled, and what was journaled stays for the next run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from typing import Any

import numpy as np

from netcore.jobs import trace
from netcore.jobs.batcher import split_rows
from netcore.jobs.content import content_hash
from netcore.jobs.journal import JobJournal, Parts
from netcore.jobs.records import Record, failed_record, makes_chunks, ok_records
from netcore.jobs.sources import Unreadable
from netcore.models.kinds.base import Infer, InputError, Item, Kind

log = logging.getLogger("p2pai.jobs")

WINDOW = 1024
"""Items in flight (and records held for their turn) at most, by default."""
BLOCK = 256
"""Inputs of one ``infer`` call at most, by default (see :attr:`Job.block`)."""
PULL = 256
"""Items taken from the source, hashed and looked up at once."""
RATE_SPAN_S = 5.0
"""The rate (and ETA) is over the last this many seconds."""
FIRST_ERRORS = 5


@dataclass(frozen=True, slots=True)
class JobProgress:
    """How far a job is, for a progress bar."""

    done: int
    total: int | None
    failed: int
    from_journal: int
    elapsed_s: float
    rate: float
    """Inputs a second, lately."""
    eta_s: float | None


@dataclass(slots=True)
class JobStats:
    """What a job did; ``to_json`` is part of ``map --json``'s summary."""

    inputs: int = 0
    ok: int = 0
    failed: int = 0
    records: int = 0
    from_journal: int = 0
    """Inputs whose result was in the journal (not computed in this run)."""
    computed: int = 0
    """Inputs computed in this run (duplicates not counted)."""
    recomputed: int = 0
    """Of those, inputs the journal had as sent by an earlier run that died before their
    results came back (work done again)."""
    duplicates: int = 0
    """Inputs whose content another input in flight had: computed once for both."""
    failures: Counter[str] = field(default_factory=Counter)
    """Failed inputs by stage: ``read`` (the input), ``run`` (its tasks), ``internal``."""
    first_errors: list[str] = field(default_factory=list)
    interrupted: bool = False
    elapsed_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        done = self.ok + self.failed
        return {
            "inputs": self.inputs,
            "inputs_ok": self.ok,
            "inputs_failed": self.failed,
            "records": self.records,
            "from_journal": self.from_journal,
            "computed": self.computed,
            "recomputed": self.recomputed,
            "duplicates": self.duplicates,
            "failures": dict(self.failures),
            "first_errors": list(self.first_errors),
            "elapsed_s": round(self.elapsed_s, 3),
            "throughput_ips": round(done / self.elapsed_s, 1) if self.elapsed_s > 0 else 0.0,
        }


class Job:
    """One run of a job over ``items`` (see the module's doc)."""

    def __init__(
        self,
        kind: Kind,
        infer: Infer,
        write: Callable[[Sequence[Record]], None],
        *,
        journal: JobJournal | None = None,
        identity: str = "",
        fresh: bool = False,
        window: int = WINDOW,
        block: int = BLOCK,
        total: int | None = None,
        on_progress: Callable[[JobProgress], None] | None = None,
        progress_every_s: float = 0.1,
    ) -> None:
        self.kind = kind
        self.infer = infer
        self.write = write
        self.journal = journal
        self.identity = identity
        self.fresh = fresh
        self.window = max(1, window)
        self.block = max(1, block)
        """Inputs read and sent as one call of ``infer`` (the rows of a task, ``--batch``)
        when the kind runs one sample an input (:meth:`Kind.run` not overridden)."""
        self.total = total
        self.on_progress = on_progress
        self.progress_every_s = progress_every_s
        self.stats = JobStats()
        self.chunked = makes_chunks(kind)
        self.blocks = type(kind).run is Kind.run and not self.chunked
        self._inflight: dict[bytes, tuple[asyncio.Future[Parts], str]] = {}
        """Content hash -> the computation of the input that has it, and that input's key."""
        self._running: set[asyncio.Task[None]] = set()
        self._early: dict[int, list[Record]] = {}
        self._next_emit = 0
        self._wake = asyncio.Event()
        self._fatal: BaseException | None = None
        self._started = 0.0
        self._last_progress = 0.0
        self._rates: deque[tuple[float, int]] = deque()
        self._sent_before: set[bytes] = set()

    # --- the main loop ---------------------------------------------------------------------

    async def run(self, items: Iterable[Item], stop: asyncio.Event | None = None) -> JobStats:
        self._started = time.monotonic()
        if self.journal is not None and not self.fresh:
            self._sent_before = self.journal.sent_before(self.identity)
        source: Iterator[Item] = iter(items)
        watcher = asyncio.ensure_future(self._watch(stop)) if stop is not None else None
        started = 0
        exhausted = False
        try:
            while True:
                if self._fatal is not None:
                    raise self._fatal
                if stop is not None and stop.is_set():
                    self.stats.interrupted = True
                    break
                room = self.window - (started - self._next_emit)
                while room > 0 and not exhausted:
                    chunk = list(islice(source, min(room, PULL)))
                    if not chunk:
                        exhausted = True
                        break
                    self._start(chunk, started)
                    started += len(chunk)
                    room -= len(chunk)
                if exhausted and self._next_emit >= started:
                    break
                self._wake.clear()
                if self._fatal is None and self._next_emit < started:
                    await self._wake.wait()
        finally:
            if watcher is not None:
                watcher.cancel()
            if self.stats.interrupted or self._fatal is not None:
                await self._cancel_running()
        self.stats.elapsed_s = time.monotonic() - self._started
        self._report(force=True)
        return self.stats

    async def _watch(self, stop: asyncio.Event) -> None:
        await stop.wait()
        self._wake.set()

    async def _cancel_running(self) -> None:
        for task in list(self._running):
            task.cancel()
        if self._running:
            await asyncio.gather(*list(self._running), return_exceptions=True)
        await asyncio.sleep(0)  # the journal's grouped commit of what did finish

    # --- starting items --------------------------------------------------------------------

    def _start(self, chunk: list[Item], first: int) -> None:
        self.stats.inputs += len(chunk)
        waiting: list[tuple[int, Item, bytes]] = []
        for i, item in enumerate(chunk):
            index = first + i
            if isinstance(item, Unreadable):
                self._failed(index, item.key, item.error, "read")
                continue
            try:
                content = content_hash(item)
            except InputError as exc:
                self._failed(index, item.key, str(exc), "read")
                continue
            waiting.append((index, item, content))
        found: dict[bytes, Parts] = {}
        if self.journal is not None and not self.fresh and waiting:
            found = self.journal.lookup(self.identity, [c for _, _, c in waiting])
        loop = asyncio.get_running_loop()
        work: list[_Work] = []
        for index, item, content in waiting:
            parts = found.get(content)
            if parts is not None:
                self.stats.from_journal += 1
                self._emitted_ok(index, ok_records(item.key, parts, self.chunked))
                continue
            shared = self._inflight.get(content)
            if shared is not None:
                self.stats.duplicates += 1
                self._spawn(self._share(index, item, shared))
                continue
            future: asyncio.Future[Parts] = loop.create_future()
            future.add_done_callback(_retrieve)
            self._inflight[content] = (future, item.key)
            work.append(_Work(index, item, content, future, content in self._sent_before))
        if self.blocks:
            for start in range(0, len(work), self.block):
                self._spawn(self._compute_block(work[start : start + self.block]))
        else:
            for w in work:
                self._spawn(self._compute(w))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.get_running_loop().create_task(coro)
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    # --- settling an input -----------------------------------------------------------------

    def _settle(self, w: _Work, parts: Parts) -> None:
        self._inflight.pop(w.content, None)
        if not w.future.done():
            w.future.set_result(parts)
        self.stats.computed += 1
        if w.again:
            self.stats.recomputed += 1
        self._emitted_ok(w.index, ok_records(w.item.key, parts, self.chunked))

    def _settle_failed(self, w: _Work, exc: BaseException) -> None:
        self._inflight.pop(w.content, None)
        if isinstance(exc, InputError):
            stage = "read" if isinstance(exc, _ReadFailed) else "run"
            message = str(exc)
        else:  # a kind's bug on this input: its record says so, the job goes on
            log.warning("input %s raised", w.item.key, exc_info=exc)
            stage, message = "internal", f"internal error: {type(exc).__name__}: {exc}"
            exc = InputError(message)
        if not w.future.done():
            w.future.set_exception(exc)
        self._failed(w.index, w.item.key, message, stage)

    def _cancelled(self, work: Sequence[_Work]) -> None:
        for w in work:
            self._inflight.pop(w.content, None)
            w.future.cancel()

    # --- one input at a time (a kind with its own run: pipelines, chunks) ------------------

    async def _compute(self, w: _Work) -> None:
        try:
            parts = await self._run_item(w.item, w.content)
        except asyncio.CancelledError:
            self._cancelled([w])
            raise
        except Exception as exc:
            self._settle_failed(w, exc)
        else:
            self._settle(w, parts)

    async def _run_item(self, item: Item, content: bytes) -> Parts:
        try:
            prepared = self.kind.read(item)
            pieces = self.kind.parts(prepared)
        except InputError as exc:
            raise _ReadFailed(str(exc)) from None
        if not pieces:
            raise _ReadFailed(f"{item.key}: nothing in it to compute")
        if self.journal is not None:
            await self.journal.mark_sent(self.identity, [content])
        if len(pieces) == 1:
            parts = [await self._run_part(pieces[0])]
        else:
            results = await asyncio.gather(
                *(self._run_part(p) for p in pieces), return_exceptions=True
            )
            failed = next((r for r in results if isinstance(r, BaseException)), None)
            if failed is not None:
                raise failed
            parts = [r for r in results if not isinstance(r, BaseException)]
        if self.journal is not None:
            await self.journal.put_done(self.identity, [(content, parts)])
        return parts

    # --- a block of inputs at once (a kind that runs one sample an input) ------------------

    async def _compute_block(self, work: list[_Work]) -> None:
        """Read each input, send their samples as one call (a group per sample shape), then
        finish each: the per-input cost is the kind's own work, not a coroutine each."""
        groups: dict[tuple[Any, ...], list[tuple[_Work, Any, dict[str, np.ndarray]]]] = {}
        for w in work:
            try:
                prepared = self.kind.read(w.item)
                sample = {n: np.asarray(a) for n, a in self.kind.sample(prepared).items()}
                key = tuple(sorted((n, a.dtype.str, a.shape[1:]) for n, a in sample.items()))
            except InputError as exc:
                self._settle_failed(w, _ReadFailed(str(exc)))
                continue
            except Exception as exc:
                self._settle_failed(w, exc)
                continue
            groups.setdefault(key, []).append((w, prepared, sample))
        if not groups:
            return
        ready = [entry[0] for group in groups.values() for entry in group]
        try:
            if self.journal is not None:
                await self.journal.mark_sent(self.identity, [w.content for w in ready])
            if len(groups) == 1:
                done = await self._run_group(next(iter(groups.values())))
            else:
                found = await asyncio.gather(*(self._run_group(g) for g in groups.values()))
                done = [d for group in found for d in group]
            if self.journal is not None and done:
                await self.journal.put_done(self.identity, [(w.content, p) for w, p in done])
        except asyncio.CancelledError:
            self._cancelled([w for w in ready if not w.future.done()])
            raise
        except Exception as exc:
            for w in ready:
                if not w.future.done():
                    self._settle_failed(w, exc)
            return
        for w, parts in done:
            self._settle(w, parts)

    async def _run_group(
        self, group: list[tuple[_Work, Any, dict[str, np.ndarray]]]
    ) -> list[tuple[_Work, Parts]]:
        """One infer call for a group's samples; the inputs that failed are settled here,
        those that did are returned with their parts (journaled, then settled, by the
        caller)."""
        names = list(group[0][2])
        rows = [sample[names[0]].shape[0] for _, _, sample in group]
        inputs = (
            group[0][2]
            if len(group) == 1
            else {n: np.concatenate([sample[n] for _, _, sample in group]) for n in names}
        )
        found = trace.Trace()
        token = trace.current.set(found)
        try:
            outputs = await self.infer(self.kind.spec.name, inputs)
        except InputError as exc:
            for w, _, _ in group:
                self._settle_failed(w, exc)
            return []
        finally:
            trace.current.reset(token)
        split, problem = split_rows(outputs, rows)
        if problem is not None:
            for w, _, _ in group:
                self._settle_failed(w, InputError(problem))
            return []
        done = []
        worker, latency_ms = found.worker, found.latency_ms
        for (w, prepared, _), outs in zip(group, split, strict=True):
            try:
                fields = self.kind.finish(prepared, outs)
            except Exception as exc:
                self._settle_failed(w, exc)
                continue
            done.append(
                (w, [{"fields": plain(fields), "worker": worker, "latency_ms": latency_ms}])
            )
        return done

    # --- one input shared with another of the same content ---------------------------------

    async def _share(
        self, index: int, item: Item, shared: tuple[asyncio.Future[Parts], str]
    ) -> None:
        future, owner = shared
        try:
            parts = await asyncio.shield(future)
        except InputError as exc:
            message = str(exc)
            if message.startswith(f"{owner}: "):  # said of the other input: of this one
                message = f"{item.key}: {message.removeprefix(f'{owner}: ')}"
            stage = "read" if isinstance(exc, _ReadFailed) else "run"
            self._failed(index, item.key, message, stage)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            self._failed(index, item.key, str(exc), "internal")
        else:
            self.stats.ok += 1
            self._put(index, ok_records(item.key, parts, self.chunked))

    async def _run_part(self, piece: Any) -> dict[str, Any]:
        found = trace.Trace()
        token = trace.current.set(found)
        try:
            fields = await self.kind.run(piece, self.infer)
        finally:
            trace.current.reset(token)
        return {"fields": plain(fields), "worker": found.worker, "latency_ms": found.latency_ms}

    # --- records, in order -----------------------------------------------------------------

    def _failed(self, index: int, key: str, error: str, stage: str) -> None:
        self.stats.failed += 1
        self.stats.failures[stage] += 1
        if len(self.stats.first_errors) < FIRST_ERRORS:
            self.stats.first_errors.append(f"input {key}: {error.removeprefix(f'{key}: ')}")
        self._put(index, [failed_record(key, error)])

    def _emitted_ok(self, index: int, records: list[Record]) -> None:
        self.stats.ok += 1
        self._put(index, records)

    def _put(self, index: int, records: list[Record]) -> None:
        if index != self._next_emit:
            self._early[index] = records
            self._report()
            return
        out = list(records)
        self._next_emit += 1
        while self._next_emit in self._early:
            out.extend(self._early.pop(self._next_emit))
            self._next_emit += 1
        try:
            self.write(out)
        except Exception as exc:  # the output cannot be written: the job stops
            self._fatal = exc
        self.stats.records += len(out)
        self._wake.set()
        self._report()

    # --- progress --------------------------------------------------------------------------

    def progress(self) -> JobProgress:
        now = time.monotonic()
        done = self.stats.ok + self.stats.failed
        self._rates.append((now, done))
        while len(self._rates) > 2 and now - self._rates[0][0] > RATE_SPAN_S:
            self._rates.popleft()
        t0, d0 = self._rates[0]
        span = now - t0
        if span < 0.2:  # too short to say: since the start
            span, d0 = now - self._started, 0
        rate = (done - d0) / span if span > 0 else 0.0
        eta = None
        if self.total is not None and rate > 0:
            eta = max(0.0, (self.total - done) / rate)
        return JobProgress(
            done, self.total, self.stats.failed, self.stats.from_journal,
            now - self._started, rate, eta,
        )  # fmt: skip

    def _report(self, force: bool = False) -> None:
        if self.on_progress is None:
            return
        now = time.monotonic()
        if not force and now - self._last_progress < self.progress_every_s:
            return
        self._last_progress = now
        self.on_progress(self.progress())


@dataclass(slots=True)
class _Work:
    """An input to compute: its place, its content hash, the future its duplicates await."""

    index: int
    item: Item
    content: bytes
    future: asyncio.Future[Parts]
    again: bool
    """An earlier run sent it and died before its result came back."""


class _ReadFailed(InputError):
    """The kind could not read the input (as opposed to its tasks failing)."""


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a shared result's exception as seen (its owner reported it)."""
    if not future.cancelled():
        future.exception()


def plain(value: Any) -> Any:
    """``value`` with numpy scalars and arrays as Python numbers and lists (JSON-able)."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value
