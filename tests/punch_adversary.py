"""A hostile relayed peer that abuses ``punch``: for the issue 18 tests (test_punch_nat.py).

A real client-only :class:`netcore.node.Node` that reaches its victim through a relay (so it
passes the victim's "link through a relay" rule), with its own hole punching off, and then:

* ``--mode flood``: asks ``--count`` punches at once, each toward another address (a
  third party it would like the victim to hit with SYNs);
* ``--mode bad-token``: asks one punch toward itself, then completes the simultaneous open
  from the port it named, but shows a wrong token (it wants its connection spliced into the
  victim's ROUTER without proving it is the peer that asked).

Run it as a script::

    python tests/punch_adversary.py --network NET --data-dir DIR --interface IP --relay ADDR

It prints one JSON line: ``{"event": "done", "ok": N, "errors": {code: N}, ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from netcore.config.settings import Config
from netcore.net import punch
from netcore.node import Node
from netcore.wire import protocol


async def _victim(node: Node, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for peer in node.peers:
            if peer.greeted and "infer" in peer.caps:
                return peer.peer_id
        await asyncio.sleep(0.05)
    raise SystemExit(json.dumps({"event": "error", "why": "no victim greeted"}))


async def _ask(node: Node, victim: str, msg: dict[str, Any]) -> dict[str, Any] | None:
    punching = node.membership.punching
    rid = protocol.new_id()
    fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    punching._waiting[rid] = fut  # its on_reply hands us the answer
    node.membership.send_request(victim, {**msg, "id": rid})
    try:
        return await asyncio.wait_for(fut, 5.0)
    except asyncio.TimeoutError:
        return None


def _punch(addr: str) -> dict[str, Any]:
    return {"t": "punch", "addr": addr, "token": secrets.token_bytes(16)}


def _punch(addr: str) -> dict[str, Any]:
    return {"t": "punch", "addr": addr, "token": secrets.token_bytes(16)}


async def _main(args: argparse.Namespace) -> None:
    config = Config(
        interfaces=(args.interface,),
        network=args.network,
        data_dir=Path(args.data_dir),
        name="punch-adversary",
        caps=(),
        relays=(args.relay,),
        mdns=False,
    )
    node = Node(config)
    await node.start()
    node.membership.punching.enabled = False  # we punch by hand, not by the rules
    out: dict[str, Any] = {"event": "done", "ok": 0, "errors": {}}
    try:
        victim = await _victim(node, 20.0)
        own = None
        for _ in range(100):
            own = node.membership.punching.own_address()
            if own is not None:
                break
            await asyncio.sleep(0.05)
        assert own is not None, "the relay did not say where it sees us"
        if args.mode == "flood":
            asks = [
                _ask(node, victim, _punch(f"198.51.100.{1 + i % 250}:{1000 + i}"))
                for i in range(args.count)
            ]
            for reply in await asyncio.gather(*asks):
                if reply is None:
                    out["errors"]["no_reply"] = out["errors"].get("no_reply", 0) + 1
                elif reply["t"] == "punch_ok":
                    out["ok"] += 1
                else:
                    out["errors"][reply["code"]] = out["errors"].get(reply["code"], 0) + 1
        else:
            sock = punch.bound_socket(args.interface)
            port = sock.getsockname()[1]
            token = secrets.token_bytes(16)
            reply = await _ask(
                node,
                victim,
                {"t": "punch", "addr": punch.format_addr(own[0], port), "token": token},
            )
            assert reply is not None and reply["t"] == "punch_ok", reply
            out["ok"] = 1
            remote = punch.parse_addr(reply["addr"])
            assert remote is not None
            connected = await punch.simultaneous_open(sock, remote, 5.0)
            out["connected"] = True
            _reader, writer = await asyncio.open_connection(sock=connected)
            writer.write(punch.preamble(secrets.token_bytes(16)))  # not the token it sent
            await writer.drain()
            await asyncio.sleep(1.0)
            writer.write(b"\xff" + b"\x00" * 8 + b"\x7f")  # a ZMTP greeting's start, in case
            await writer.drain()
            await asyncio.sleep(1.0)
            out["closed_by_victim"] = writer.is_closing() or _reader.at_eof()
            writer.close()
    finally:
        await node.stop()
    print(json.dumps(out), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", required=True)
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--interface", required=True)
    parser.add_argument("--relay", required=True)
    parser.add_argument("--mode", choices=("flood", "bad-token"), default="flood")
    parser.add_argument("--count", type=int, default=50)
    asyncio.run(_main(parser.parse_args()))


if __name__ == "__main__":
    main()
