"""A worker that answers ``bad_input`` to every task, however valid: for the issue 16 tests.

A real :class:`netcore.node.Node` on 127.0.0.1 (it greets, pings and advertises its models
like any other) whose worker refuses everything. Run it as a script::

    python tests/refuser.py --network NET --data-dir DIR

It prints one JSON ``ready`` line, runs until SIGINT/SIGTERM, then prints
``{"event": "stopped", "asked": N}``: the tasks that reached it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import signal
import sys
from collections.abc import Mapping
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcore.config.settings import Config
from netcore.node import Node
from netcore.wire.protocol import TaskError


class RefusingNode(Node):
    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self.asked = 0

        async def refuse(
            requester: str,
            task_id: bytes,
            model: str,
            sha256: str | None,
            inputs: Mapping[str, np.ndarray],
            timeout_s: float,
            via: bytes | None = None,
        ) -> tuple[dict[str, np.ndarray], int]:
            self.asked += 1
            raise TaskError("bad_input", f"input 'input' must have shape [N, 65], says {model}")

        self.worker.execute = refuse  # type: ignore[method-assign]
        self.worker.run_now = lambda *_args: None  # type: ignore[method-assign]


async def _main(args: argparse.Namespace) -> None:
    config = Config(
        interfaces=(args.interface,),
        network=args.network,
        data_dir=Path(args.data_dir),
        name=args.name,
    )
    node = RefusingNode(config)
    await node.start()
    print(json.dumps({"event": "ready", "peer_id": node.peer_id}), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await node.stop()
        print(json.dumps({"event": "stopped", "asked": node.asked}), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--name", default="refuser")
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
