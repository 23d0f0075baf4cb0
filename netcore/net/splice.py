"""Two TCP streams joined byte for byte, with limits: the relay's circuits and the nodes'
local ends of them (:mod:`netcore.net.relay_server`, :mod:`netcore.net.relay_client`).

Nothing here parses what it copies: the peers' ZMTP and CURVE run end to end inside, so the
relay sees ciphertext only. Bytes are forwarded from the transport's ``data_received`` (a
protocol installed on each side once the setup, which reads preambles with streams, is
done): no task wakes per chunk, so each hop adds one callback, not a loop turn or two
(the relayed and punched round trips cross two or three splices each). A splice ends when either side closes or fails, when the bytes
copied (both ways together) reach ``max_bytes``, or after ``max_seconds``; then both sides
are closed (the peers' ZeroMQ sees a dropped connection and reconnects, a new circuit).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass

CHUNK = 64 * 1024

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


@dataclass(slots=True)
class SpliceResult:
    copied: int = 0
    """Bytes written, both directions together."""
    ended: str = "eof"
    """``eof`` (a side closed), ``limit`` (max_bytes), ``timeout`` (max_seconds), ``error``."""


class _Pipe(asyncio.Protocol):
    """Installed on the transport ``src``: what it receives goes to ``dst`` at once."""

    def __init__(
        self, run: _Run, src: asyncio.Transport, dst: asyncio.Transport, old: asyncio.BaseProtocol
    ) -> None:
        self.run, self.src, self.dst, self.old = run, src, dst, old

    def data_received(self, data: bytes) -> None:
        self.run.forward(self.dst, data)

    def eof_received(self) -> bool:
        self.run.finish("eof")
        return False  # the transport closes itself

    def connection_lost(self, exc: Exception | None) -> None:
        self.run.finish("eof" if exc is None else "error")
        self.old.connection_lost(exc)  # the stream's writer sees it closed (wait_closed)

    def pause_writing(self) -> None:
        self.dst.pause_reading()  # our transport's send buffer is full: stop what fills it

    def resume_writing(self) -> None:
        self.dst.resume_reading()


class _Run:
    def __init__(
        self,
        done: asyncio.Future[str],
        max_bytes: int | None,
        on_bytes: Callable[[int], None] | None,
        mangle: Callable[[bytes], bytes] | None,
    ) -> None:
        self.result = SpliceResult()
        self.done, self.max_bytes, self.on_bytes, self.mangle = done, max_bytes, on_bytes, mangle

    def finish(self, why: str) -> None:
        if not self.done.done():
            self.done.set_result(why)

    def forward(self, dst: asyncio.Transport, data: bytes) -> None:
        if self.done.done() or not data:
            return
        result, limit = self.result, self.max_bytes
        over = limit is not None and result.copied + len(data) > limit
        if over:
            assert limit is not None
            data = data[: max(0, limit - result.copied)]
        if data:
            dst.write(self.mangle(data) if self.mangle is not None else data)
            result.copied += len(data)
            if self.on_bytes is not None:
                self.on_bytes(len(data))
        if over:
            self.finish("limit")


async def close_stream(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), 1.0)


async def splice(
    a: Stream,
    b: Stream,
    *,
    max_bytes: int | None = None,
    max_seconds: float | None = None,
    on_bytes: Callable[[int], None] | None = None,
    mangle: Callable[[bytes], bytes] | None = None,
) -> SpliceResult:
    """Copy ``a`` to ``b`` and ``b`` to ``a`` until one ends; close both; say why it ended.

    ``mangle`` rewrites each chunk before it is written: only a test's hostile relay uses it
    (tests/flipping_relay.py), to show that CURVE refuses altered bytes."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future[str] = loop.create_future()
    run = _Run(done, max_bytes, on_bytes, mangle)
    ta, tb = a[1].transport, b[1].transport
    assert isinstance(ta, asyncio.Transport) and isinstance(tb, asyncio.Transport)
    pipes = []
    for (reader, _), src, dst in ((a, ta, tb), (b, tb, ta)):
        if src.is_closing():
            run.finish("eof")
            continue
        pipe = _Pipe(run, src, dst, src.get_protocol())
        pipes.append(pipe)
        # What the stream read already but nobody took (StreamReader's buffer), first.
        buffer: bytearray = reader._buffer  # type: ignore[attr-defined]  # no public way to it
        held = bytes(buffer)
        buffer.clear()
        run.forward(dst, held)
        if reader.at_eof():  # (empty now) the other end had closed already
            run.finish("eof")
    for pipe in pipes:
        pipe.src.set_protocol(pipe)
        if not pipe.src.is_reading():
            pipe.src.resume_reading()  # the stream may have paused it (a full buffer)
    try:
        try:
            run.result.ended = await asyncio.wait_for(asyncio.shield(done), max_seconds)
        except asyncio.TimeoutError:
            run.result.ended = "timeout"
    finally:
        for transport in (ta, tb):
            transport.close()
        await asyncio.gather(close_stream(a[1]), close_stream(b[1]))
    return run.result
