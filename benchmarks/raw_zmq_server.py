"""Baseline server: a bare pyzmq asyncio ROUTER that runs the digits model on each request.

No CURVE, no validation, no scheduling: the floor a p2pai task round trip is compared with.
Usage: python raw_zmq_server.py PORT   (binds 127.0.0.1 only; prints "ready" when serving)
"""

from __future__ import annotations

import asyncio
import sys

import msgpack
import numpy as np
import onnxruntime as ort
import zmq
import zmq.asyncio

from netcore.models.registry import assets_dir


async def serve(port: int) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(assets_dir() / "models" / "digits.onnx"), options, providers=["CPUExecutionProvider"]
    )
    ctx = zmq.asyncio.Context()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(f"tcp://127.0.0.1:{port}")
    print("ready", flush=True)
    try:
        while True:
            rid, payload = await router.recv_multipart()
            msg = msgpack.unpackb(payload, raw=False)
            if msg.get("t") == "stop":
                break
            tensor = msg["inputs"]["input"]
            x = np.frombuffer(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
            label, probs = session.run(None, {"input": x})
            reply = msgpack.packb(
                {
                    "t": "result",
                    "id": msg["id"],
                    "outputs": {
                        "label": {
                            "dtype": "int64",
                            "shape": list(label.shape),
                            "data": label.tobytes(),
                        },
                        "probabilities": {
                            "dtype": "float32",
                            "shape": list(probs.shape),
                            "data": probs.tobytes(),
                        },
                    },
                },
                use_bin_type=True,
            )
            await router.send_multipart([rid, reply])
    finally:
        router.close(0)
        ctx.term()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
