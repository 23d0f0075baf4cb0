"""A hostile relay: the real :class:`netcore.net.relay_server.RelayServer` whose circuits flip
one bit of a chunk once ``--after`` bytes of that circuit went through untouched (so the
peers' CURVE handshake and hellos pass, and tasks are flowing when it strikes). Run it::

    python tests/flipping_relay.py --interface IP --port 0 --data-dir DIR [--after BYTES]

It prints a JSON ``ready`` line like ``p2pai relay --json``, one ``flipped`` line on stderr
for each circuit it altered, and runs until SIGINT/SIGTERM. Nodes behind it must never accept
an altered answer: CURVE authenticates every message, so the link fails instead.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcore.net.identity import load_or_create
from netcore.net.relay_server import RelayServer


def flipper(after: int) -> Callable[[], Callable[[bytes], bytes]]:
    def make() -> Callable[[bytes], bytes]:
        seen = 0
        done = False

        def mangle(data: bytes) -> bytes:
            nonlocal seen, done
            seen += len(data)
            if done or seen < after:
                return data
            done = True  # one bit, once a circuit: enough for CURVE to refuse the message
            print(json.dumps({"event": "flipped", "at": seen}), file=sys.stderr, flush=True)
            return data[:-1] + bytes([data[-1] ^ 0x01])

        return mangle

    return make


async def main(args: argparse.Namespace) -> None:
    identity = load_or_create(Path(args.data_dir), "flipping-relay")
    server = RelayServer(identity, mangle=flipper(args.after))
    endpoint = await server.start(args.interface, args.port)
    print(
        json.dumps(
            {
                "event": "ready",
                "t": time.time(),
                "peer_id": identity.peer_id,
                "endpoint": endpoint,
                "key": identity.public_text,
                "address": server.address,
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    with contextlib.suppress(Exception):
        await server.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--after", type=int, default=20_000)
    asyncio.run(main(parser.parse_args()))
