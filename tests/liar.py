"""A worker that speaks the protocol perfectly but lies: for the trust tests and demos.

A real :class:`netcore.node.Node` whose answers are falsified after honest inference:

* ``wrong_label``: the class label is shifted by one (probabilities rolled to match), with a
  digest that matches those false outputs, so only a vote or a spot check can catch it;
* ``other_label``: the same, shifted by two (it never agrees with ``wrong_label``);
* ``random``: random outputs of the right names, shapes and dtypes (digest consistent);
* ``bad_digest``: true outputs, but a digest that does not match them (a corrupt result);
* ``slow``: true outputs, sent ``delay`` seconds late (past the requester's timeout);
* ``no_model``: every task answered ``unknown_model``, as a worker that cannot fetch the
  model would (the requester must not loop on it, nor blame honest workers);
* ``evader``: honest only on inputs it recognises as checks (the bundled held-out samples'
  exact bytes, which known-answer checks use), ``wrong_label`` on every other input.

``--identities N`` runs N such nodes in one process (a Sybil farm: N keys, one host).

Use it in-process (``LyingNode(config, mode)``) or as a script on 127.0.0.1::

    python tests/liar.py --mode wrong_label --network NET --data-dir DIR

which prints one JSON ``ready`` line and runs until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcore.config.settings import Config
from netcore.node import Node
from netcore.wire.protocol import TaskError

MODES = ("wrong_label", "other_label", "random", "bad_digest", "slow", "no_model", "evader")


def held_out_rows() -> set[bytes]:
    """The bytes of each bundled held-out sample (what an evader takes for a check)."""
    from netcore.models.registry import load_samples

    x = np.ascontiguousarray(load_samples()[0].astype(np.float32))
    return {x[i].tobytes() for i in range(len(x))}


def falsify(outputs: dict[str, np.ndarray], mode: str, rng: np.random.Generator) -> None:
    """Change ``outputs`` in place as ``mode`` says (``wrong_label``, ``other_label`` and
    ``random``)."""
    if mode in ("wrong_label", "other_label"):
        shift = 1 if mode == "wrong_label" else 2
        if "label" in outputs:
            outputs["label"] = (outputs["label"] + shift) % 10
        if "probabilities" in outputs:
            outputs["probabilities"] = np.roll(outputs["probabilities"], shift, axis=-1)
    elif mode == "random":
        for name, arr in list(outputs.items()):
            if np.issubdtype(arr.dtype, np.integer):
                outputs[name] = rng.integers(0, 10, size=arr.shape).astype(arr.dtype)
            else:
                outputs[name] = rng.random(arr.shape).astype(arr.dtype)


class LyingNode(Node):
    """A node whose worker lies in one of :data:`MODES`."""

    def __init__(self, config: Config, mode: str, delay: float = 1.0) -> None:
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}")
        super().__init__(config)
        self.mode = mode
        self.delay = delay
        self.lies = 0
        self.asked = 0
        """Tasks that reached the worker (lying or not)."""
        rng = np.random.default_rng()
        honest = self.worker.execute
        known = held_out_rows() if mode == "evader" else set()

        async def lying_execute(
            requester: str,
            task_id: bytes,
            model: str,
            sha256: str | None,
            inputs: Mapping[str, np.ndarray],
            timeout_s: float,
            via: bytes | None = None,
        ) -> tuple[dict[str, np.ndarray], int]:
            self.asked += 1
            if self.mode == "no_model":
                self.lies += 1
                raise TaskError("unknown_model", f"cannot fetch model {model}: no, never")
            outputs, took_us = await honest(
                requester, task_id, model, sha256, inputs, timeout_s, via
            )
            outputs = dict(outputs)
            if self.mode == "slow":
                await asyncio.sleep(self.delay)
            elif self.mode == "evader":
                rows = next(iter(inputs.values()))
                if np.ascontiguousarray(rows, dtype=np.float32).reshape(-1).tobytes() in known:
                    return outputs, took_us
                falsify(outputs, "wrong_label", rng)
            else:
                falsify(outputs, self.mode, rng)
            self.lies += 1
            return outputs, took_us

        self.worker.execute = lying_execute  # type: ignore[method-assign]
        # Every task takes execute's way (the quick synchronous path would be honest).
        self.worker.run_now = lambda *_args: None  # type: ignore[method-assign]
        honest_reply = self.server.reply

        def lying_reply(rid: bytes, msg: Mapping[str, Any], to: str | None = None) -> None:
            if self.mode == "bad_digest" and msg.get("t") == "result":
                msg = {**msg, "digest": os.urandom(32)}
            honest_reply(rid, msg, to)

        self.server.reply = lying_reply  # results go out through the task server's reply


async def _main(args: argparse.Namespace) -> None:
    nodes = []
    for i in range(args.identities):
        config = Config(
            interfaces=(args.interface,),
            network=args.network,
            data_dir=Path(args.data_dir) / str(i) if args.identities > 1 else Path(args.data_dir),
            name=f"{args.name}-{i}" if args.identities > 1 else args.name,
            capacity=args.capacity,
        )
        node = LyingNode(config, args.mode, args.delay)
        await node.start()
        nodes.append(node)
    print(
        json.dumps(
            {
                "event": "ready",
                "peer_id": nodes[0].peer_id,
                "endpoint": nodes[0].endpoint,
                "peer_ids": [n.peer_id for n in nodes],
            }
        ),
        flush=True,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        print(json.dumps({"event": "lies", "lies": sum(n.lies for n in nodes),
                          "asked": sum(n.asked for n in nodes)}), flush=True)  # fmt: skip
        for node in nodes:
            await node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mode", choices=MODES, default="wrong_label")
    parser.add_argument("--network", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--name", default="liar")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds late (slow mode)")
    parser.add_argument("--identities", type=int, default=1, help="nodes in this process")
    parser.add_argument(
        "--capacity", type=int, default=0, help="claimed capacity of each (0: cores)"
    )
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
