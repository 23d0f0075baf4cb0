"""The console and trust: the peers pane shows each peer's score and quarantine, and `v`
turns verified mode on (each task on three workers, the majority label wins). Real nodes bind
127.0.0.1 only, on a network name unique to the test."""

from __future__ import annotations

from pathlib import Path

from console_fakes import FakeNode, FrozenClock, digit_samples
from model_helpers import loopback_config, unique_network, wait_until

from netcore.net.peers import Peer
from netcore.node import Node
from tui.app import P2PConsole
from tui.dispatch import VERIFY_REDUNDANCY
from tui.state import ALIVE, EVASIVE, GONE, QUARANTINED, PeerRow, peer_view

SIZE = (120, 40)
LIAR = "d4d0000000000000004"


def test_peer_view_shows_score_and_quarantine() -> None:
    peer = Peer(peer_id=LIAR, key="k" * 40, name="liar", endpoints=["tcp://127.0.0.1:1"])
    peer.score = 0.3125
    row = PeerRow(LIAR, "liar")
    view = peer_view(row, peer, now=0.0, pinned=False)
    assert view.score == "0.31" and view.state == ALIVE
    peer.quarantine = "score 0.31: lost 2 of 2 votes"
    view = peer_view(row, peer, now=0.0, pinned=False)
    assert view.state == QUARANTINED and view.state_text == "quarantined"
    row.state = EVASIVE
    assert peer_view(row, peer, now=0.0, pinned=False).state == QUARANTINED
    row.state = GONE  # a departed peer shows as departed, whatever its reputation
    assert peer_view(row, peer, now=0.0, pinned=False).state == GONE
    assert peer_view(PeerRow(LIAR, "liar"), None, now=0.0, pinned=False).score == "-"


async def test_the_peers_pane_shows_a_quarantined_peer() -> None:
    clock = FrozenClock()
    node = FakeNode(clock=clock)
    app = P2PConsole(node, clock=clock, seed=1, samples=digit_samples(), log_timestamps=False)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running, what="node start")
        liar = node.add_peer(LIAR, "liar", "tcp://127.0.0.1:47104")
        liar.score = 0.25
        liar.quarantine = "score 0.25: lost 3 of 3 votes"
        await wait_until(lambda: app.live_peer_count() == 1, what="the peer row")
        app.refresh_panes()
        await pilot.pause()
        assert app.peers_pane.cell(LIAR, "state") == ("quarantined", "bold red")
        assert app.peers_pane.cell(LIAR, "score") == ("0.25", "red")

        # A fake node has no scheduler: verified mode says why it cannot start.
        await pilot.press("v")
        await pilot.pause()
        assert not app.verify
        assert any("needs a running node" in n.message for n in app._notifications)


async def test_verified_mode_runs_each_task_on_three_workers(tmp_path: Path) -> None:
    network = unique_network()
    workers = [Node(loopback_config(tmp_path, f"worker-{k}", network)) for k in (1, 2, 3)]
    for worker in workers:
        await worker.start()
    node = Node(loopback_config(tmp_path, "console", network))
    app = P2PConsole(node, seed=5, log_timestamps=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: len(node.usable_peers(model="digits")) == 3, what="workers")
            await pilot.press("v")
            assert app.verify and app.verifier is not None
            await pilot.press("d")
            await wait_until(lambda: app.book.counters.done + app.book.counters.failed == 1)
            record = app.book.newest(1)[0]
            assert record.state == "done", record.error
            assert app.verifier.stats.accepted == 1
            assert app.verifier.redundancy == VERIFY_REDUNDANCY
            assert sum(w.counters["tasks_served"] for w in workers) >= 2
            await wait_until(
                lambda: all(p.score is not None for p in node.peers), what="scores in the table"
            )
            app.refresh_panes()
            scores = {app.peers_pane.cell(w.peer_id, "score") for w in workers}
            assert all(cell is not None and cell[0] != "-" for cell in scores)
            await pilot.press("v")
            assert not app.verify
            await pilot.press("q")
    finally:
        await node.stop()
        for worker in workers:
            await worker.stop()


def logged(app: P2PConsole) -> str:
    """The log pane's text, its wrapped lines joined."""
    return " ".join(" ".join(line.text.split()) for line in app.logs_pane.lines)


async def test_verified_mode_uses_the_two_workers_make_run_starts(tmp_path: Path) -> None:
    """`make run` starts 2 local peers: v runs each task on both (both must agree) and says in
    the log that the redundancy is reduced; with 1 worker, v says it needs 2."""
    from textual.widgets._footer import FooterKey

    network = unique_network()
    workers = [Node(loopback_config(tmp_path, f"worker-{k}", network)) for k in (1, 2)]
    for worker in workers:
        await worker.start()
    node = Node(loopback_config(tmp_path, "console", network))
    app = P2PConsole(node, seed=5, log_timestamps=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: len(node.usable_peers(model="digits")) == 2, what="workers")
            # The footer recomposes its keys when the bindings refresh (a peer came): wait for it.
            await wait_until(
                lambda: "v" in {key.key for key in app.query(FooterKey)}, what="v in the footer"
            )
            await pilot.press("v")
            assert app.verify and app.verifier is not None
            assert app.verifier.redundancy == 2 < VERIFY_REDUNDANCY
            await wait_until(
                lambda: "redundancy 2, not 3" in logged(app), what="the reduced redundancy logged"
            )
            await pilot.press("d")
            await wait_until(lambda: app.book.counters.done + app.book.counters.failed == 1)
            record = app.book.newest(1)[0]
            assert record.state == "done", record.error
            assert app.verifier.stats.accepted == 1 and app.verifier.stats.too_few_workers == 0
            # Both voted (and, new to this console, first passed probation trials: real
            # inputs checked on its own copy of the model).
            await wait_until(
                lambda: all(w.counters["tasks_served"] >= 1 for w in workers), what="both ran it"
            )
            assert app.verifier.stats.mismatches == 0 and app.verifier.stats.hosts_voted >= 1
            await pilot.press("v")
            assert not app.verify

            await workers[1].stop()
            await wait_until(lambda: len(node.usable_peers(model="digits")) == 1, what="1 left")
            await pilot.press("v")
            assert not app.verify
            assert any("needs 2 workers" in n.message for n in app._notifications)
            await pilot.press("q")
    finally:
        await node.stop()
        for worker in workers:
            await worker.stop()
