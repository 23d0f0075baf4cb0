"""Checks 4 and 5 (peers): a throw-away client node connects to each node found and each
static peer, and compares their clocks with ours."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from netcore.config.settings import Config
from netcore.doctor.mdns import Seen
from netcore.doctor.report import INFO, OK, PROBLEM, WARN, Finding, Report

CLOCK_SKEW_WARN_S = 2.0


async def check_connect(
    cfg: Config, ours: list[Seen], addresses: list[str], timeout: float, report: Report
) -> None:
    """A throw-away client node greets the nodes found and the static peers."""
    from netcore.node import Node, NodeStartError

    tmp = Path(tempfile.mkdtemp(prefix="p2pai-doctor-"))
    probe = dataclasses.replace(
        cfg, data_dir=tmp, interfaces=tuple(addresses), caps=(), advertise=False, port=0,
        metrics_port=None, name="p2pai-doctor",
    )  # fmt: skip
    node = Node(probe)
    try:
        try:
            await node.start()
        except NodeStartError as exc:
            report.add(Finding(
                "connect", PROBLEM, f"a probe node cannot start: {exc}", "see the message"
            ))  # fmt: skip
            return
        wanted = {s.peer_id for s in ours} | {s.peer.peer_id for s in node.reach.static}
        deadline = time.monotonic() + max(timeout, 2.0)
        while time.monotonic() < deadline:
            greeted = {p.peer_id for p in node.usable_peers(kind=None)}
            if wanted <= greeted:
                break
            await asyncio.sleep(0.1)
        greeted_peers = {p.peer_id: p for p in node.usable_peers(kind=None)}
        for s in ours:
            if s.peer_id in greeted_peers:
                rtt = await node.ping(s.peer_id)
                report.add(Finding(
                    "connect", OK, f"{s.name or s.peer_id[:8]} at {s.addresses[0]}:{s.port} "
                    f"answered on TCP" + (f" ({rtt * 1000:.1f} ms)" if rtt is not None else ""),
                ))  # fmt: skip
            else:
                report.add(Finding(
                    "connect", PROBLEM, f"{s.name or s.peer_id[:8]} answered mDNS but not on TCP "
                    f"{', '.join(s.addresses)}:{s.port}",
                    f"a firewall on that machine blocks TCP {s.port}: allow it (ufw allow "
                    f"{s.port}/tcp; firewall-cmd --add-port={s.port}/tcp), or give the node a "
                    "fixed --port and allow that one",
                ))  # fmt: skip
        for row in node.reach.status():
            if row["connected"]:
                report.add(Finding("static", OK, f"static peer {row['peer']} answered"))
            else:
                report.add(Finding(
                    "static", PROBLEM, f"static peer {row['peer']} did not answer"
                    + (f" ({row['error']})" if row["error"] else ""),
                    "check host and port (`p2pai peers` or the node's log shows its endpoint), "
                    "that the key after '#' is that node's, and that no firewall blocks its TCP "
                    "port on the way",
                ))  # fmt: skip
        learned = [p for p in greeted_peers.values() if p.source == "shared"]
        if learned:
            report.add(Finding(
                "static", INFO, f"{len(learned)} more peer(s) learned from the peers' lists: "
                + ", ".join(p.name or p.peer_id[:8] for p in learned[:8]),
            ))  # fmt: skip
        check_peer_clocks(node.reach.clock_offsets, greeted_peers, report)
    finally:
        with contextlib.suppress(Exception):
            await node.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def check_peer_clocks(offsets: dict[str, float], peers: dict[str, Any], report: Report) -> None:
    skewed = {pid: off for pid, off in offsets.items() if abs(off) > CLOCK_SKEW_WARN_S}
    for pid, offset in skewed.items():
        peer = peers.get(pid)
        name = peer.name if peer is not None else pid[:8]
        report.add(Finding(
            "clock", WARN, f"the clock of {name} differs from ours by {offset:+.1f}s",
            "enable time sync on both machines (timedatectl set-ntp true); liveness uses "
            "monotonic clocks, but logs and metrics of the two will not line up",
        ))  # fmt: skip
    if offsets and not skewed:
        worst = max(abs(o) for o in offsets.values())
        report.add(Finding(
            "clock", OK, f"{len(offsets)} peer clock(s) agree with ours (within {worst:.2f}s)"
        ))  # fmt: skip
