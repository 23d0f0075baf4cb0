"""Snapshots of the console at fixed sizes with deterministic data: a fake node, fixed names
and ids, a frozen clock, log lines without timestamps. Update with ``--snapshot-update``."""

from __future__ import annotations

import logging
from typing import Any

from console_fakes import FakeNode, FrozenClock, digit_samples
from model_helpers import wait_until
from textual.pilot import Pilot

from tui.app import P2PConsole

MAIN_SIZE = (120, 40)
ALPHA, BRAVO, CHARLIE = "a1fa0000000000000001", "b2b0000000000000002", "c3c0000000000000003"


def console(node: FakeNode, clock: FrozenClock, **options: Any) -> P2PConsole:
    return P2PConsole(
        node, clock=clock, seed=11, samples=digit_samples(), log_timestamps=False, **options
    )


async def populate(pilot: Pilot[Any]) -> None:
    """Three peers (one evasive), twelve finished tasks, a few log lines."""
    app = pilot.app
    assert isinstance(app, P2PConsole)
    node = app.node
    assert isinstance(node, FakeNode)
    await wait_until(lambda: app.node_running, what="node start")
    node.add_peer(
        ALPHA,
        "alpha",
        "tcp://127.0.0.1:47101",
        rtt_ms=0.42,
        capacity=4,
        inflight=1,
        tasks_ok=57,
        tasks_failed=1,
        age=125,
    )
    node.add_peer(
        BRAVO, "bravo", "tcp://127.0.0.1:47102", rtt_ms=3.1, capacity=8, tasks_ok=12, age=3700
    )
    node.add_peer(CHARLIE, "charlie-pi", "tcp://127.0.0.1:47103", capacity=2, age=9)
    await wait_until(lambda: app.live_peer_count() == 3, what="three peers")
    node.evade(CHARLIE)
    await wait_until(lambda: app.peer_rows[CHARLIE].state == "evasive", what="evasive")
    app.dispatch(12)
    await app.wait_idle()
    log = logging.getLogger("p2pai.node")
    log.info("node 5eed5eed5eed5eed5eed (studio) serving tcp://127.0.0.1:47001 on network 'lab'")
    log.info("peer a1fa0000000000000001 (alpha) up at tcp://127.0.0.1:47101")
    log.warning("peer c3c0000000000000003 is evasive (silent for 3.0s)")
    await wait_until(lambda: app.logs_pane.lines_written >= 3, what="log lines")
    app.refresh_panes()
    await pilot.pause()


def test_main_screen(snap_compare: Any) -> None:
    clock = FrozenClock()
    app = console(FakeNode(clock=clock), clock)
    assert snap_compare(app, terminal_size=MAIN_SIZE, run_before=populate)


def test_main_screen_80x24(snap_compare: Any) -> None:
    """The smallest usual terminal: the tasks span the width, every column shows."""
    clock = FrozenClock()
    app = console(FakeNode(clock=clock), clock)
    assert snap_compare(app, terminal_size=(80, 24), run_before=populate)


def test_main_screen_160x48(snap_compare: Any) -> None:
    clock = FrozenClock()
    app = console(FakeNode(clock=clock), clock)
    assert snap_compare(app, terminal_size=(160, 48), run_before=populate)


def test_help_screen(snap_compare: Any) -> None:
    clock = FrozenClock()
    app = console(FakeNode(clock=clock), clock)

    async def open_help(pilot: Pilot[Any]) -> None:
        await populate(pilot)
        await pilot.press("question_mark")
        await pilot.pause()

    assert snap_compare(app, terminal_size=MAIN_SIZE, run_before=open_help)


def test_empty_state(snap_compare: Any) -> None:
    clock = FrozenClock()
    app = console(FakeNode(clock=clock), clock, empty_after=3.0)

    async def wait_alone(pilot: Pilot[Any]) -> None:
        assert isinstance(pilot.app, P2PConsole)
        console_app = pilot.app
        await wait_until(lambda: console_app.node_running, what="node start")
        clock.advance(12)
        console_app.refresh_panes()
        await pilot.pause()

    assert snap_compare(app, terminal_size=(100, 30), run_before=wait_alone)
