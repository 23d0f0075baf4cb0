"""Issue 16's dialling target, at full scale and default settings: a hello naming a plain TCP
listener (not a p2pai node), then the naming peer leaves without a word.

One ``p2pai node`` process on 127.0.0.1 (private network, temporary data dir); a raw CURVE
client says ``hello`` with ``endpoints`` = the listener, pings for ``--named`` seconds (30),
then closes. The listener counts the connections it accepts: while named, in all, after the
namer left, and from 15 s after it left. Target: <= 20 in all, 0 from 15 s after. Prints one
JSON object; every process is stopped by PID.

Usage: PYTHONPATH=. python benchmarks/dial_storm_bench.py [--named 30] [--after 30]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import zmq

from tests.integration.conftest import NodeProc, RawClient
from tests.integration.test_dial_storm import PlainListener


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--named", type=float, default=30.0)
    parser.add_argument("--after", type=float, default=30.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="dialstorm-"))
    network = f"dial-{uuid.uuid4().hex[:8]}"
    node = NodeProc("req", network, tmp / "req", tmp)
    listener = PlainListener()
    ctx: zmq.Context[object] = zmq.Context()
    try:
        node.start()
        node.wait_for("ready", timeout=30)
        client = RawClient(ctx, node.endpoint, node.key)
        t0 = time.monotonic()
        client.hello(network, name="namer", caps=["infer"], endpoints=[listener.endpoint])
        while time.monotonic() - t0 < args.named:
            client.ping()
            time.sleep(0.5)
        named = listener.since(t0)
        client.close()
        left = time.monotonic()
        time.sleep(args.after)
        print(
            json.dumps(
                {
                    "named_s": args.named,
                    "after_s": args.after,
                    "connections_while_named": named,
                    "connections_in_all": listener.since(t0),
                    "connections_after_namer_left": listener.since(left),
                    "connections_from_15s_after_left": listener.since(left + 15),
                    "per_second_while_named": round(named / args.named, 2),
                }
            )
        )
    finally:
        node.stop()
        listener.close()
        ctx.destroy(linger=0)


if __name__ == "__main__":
    main()
