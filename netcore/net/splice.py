"""Two TCP streams joined byte for byte, with limits: the relay's circuits and the nodes'
local ends of them (:mod:`netcore.net.relay_server`, :mod:`netcore.net.relay_client`).

Nothing here parses what it copies: the peers' ZMTP and CURVE run end to end inside, so the
relay sees ciphertext only. A splice ends when either side closes or fails, when the bytes
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


async def _pump(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    result: SpliceResult,
    max_bytes: int | None,
    on_bytes: Callable[[int], None] | None,
    mangle: Callable[[bytes], bytes] | None,
) -> str:
    while True:
        try:
            data = await reader.read(CHUNK)
        except (ConnectionError, OSError):
            return "error"
        if not data:
            return "eof"
        if max_bytes is not None and result.copied + len(data) > max_bytes:
            data = data[: max(0, max_bytes - result.copied)]
            if data:
                writer.write(mangle(data) if mangle else data)
                result.copied += len(data)
                if on_bytes is not None:
                    on_bytes(len(data))
            return "limit"
        writer.write(mangle(data) if mangle is not None else data)
        result.copied += len(data)
        if on_bytes is not None:
            on_bytes(len(data))
        try:
            await writer.drain()
        except (ConnectionError, OSError):
            return "error"


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
    result = SpliceResult()
    pumps = [
        asyncio.ensure_future(_pump(a[0], b[1], result, max_bytes, on_bytes, mangle)),
        asyncio.ensure_future(_pump(b[0], a[1], result, max_bytes, on_bytes, mangle)),
    ]
    try:
        done, _ = await asyncio.wait(
            pumps, timeout=max_seconds, return_when=asyncio.FIRST_COMPLETED
        )
        result.ended = next(iter(done)).result() if done else "timeout"
    finally:
        for pump in pumps:
            pump.cancel()
        for pump in pumps:
            with contextlib.suppress(BaseException):
                await pump
        await asyncio.gather(close_stream(a[1]), close_stream(b[1]))
    return result
