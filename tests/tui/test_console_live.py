"""The console against real nodes: two in-process workers and the console's own node, all on
127.0.0.1 and on a network name unique to the test."""

from __future__ import annotations

from pathlib import Path

from model_helpers import loopback_config, unique_network, wait_until

from netcore.node import Node
from tui.actions import BURST
from tui.app import P2PConsole

SIZE = (120, 40)


async def test_peers_appear_tasks_run_and_quit_leaves(tmp_path: Path) -> None:
    network = unique_network()
    workers = [Node(loopback_config(tmp_path, f"worker-{k}", network)) for k in (1, 2)]
    for worker in workers:
        await worker.start()
    node = Node(loopback_config(tmp_path, "console", network))
    app = P2PConsole(node, seed=3, log_timestamps=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            # Peers appear in the table as the node discovers them.
            await wait_until(lambda: len(app.peers_pane.row_keys()) == 2, what="two peer rows")
            ids = {w.peer_id for w in workers}
            assert set(app.peers_pane.row_keys()) == ids
            await wait_until(lambda: len(node.usable_peers(model="digits")) == 2, what="greeted")
            # Names come from the authenticated hello (never from mDNS TXT): shown once greeted.
            await wait_until(
                lambda: (
                    {(app.peers_pane.cell(i, "name") or ("",))[0] for i in ids}
                    == {"worker-1", "worker-2"}
                ),
                what="the peers' names from their hello",
            )

            # d: one task, a digit with its confidence, on one of the workers.
            await pilot.press("d")
            await wait_until(lambda: app.book.counters.done + app.book.counters.failed == 1)
            record = app.book.newest(1)[0]
            assert record.state == "done", record.error
            assert record.label is not None and 0 <= record.label <= 9
            assert record.worker in ids
            app.refresh_panes()
            shown = str(app.tasks_pane.table.get_cell(record.task_id, "result"))
            assert shown.startswith(str(record.label)) and "%" in shown
            assert str(app.tasks_pane.table.get_cell(record.task_id, "worker")).startswith(
                "worker-"
            )

            # b: a burst of 100, all finished.
            await pilot.press("b")
            await wait_until(
                lambda: app.book.counters.done + app.book.counters.failed == 1 + BURST,
                timeout=30,
                what="the burst",
            )
            assert app.book.counters.failed == 0
            assert app.latency.percentile(50) is not None
            done_for_us = sum(p.tasks_ok for p in node.peers)
            assert done_for_us == 1 + BURST

            # q: a graceful leave; the workers hear the bye at once.
            console_id = node.peer_id
            assert all(console_id in w.peers for w in workers)
            await pilot.press("q")
        assert app.return_code == 0
        await wait_until(lambda: all(console_id not in w.peers for w in workers), what="bye")
    finally:
        await node.stop()
        for worker in workers:
            await worker.stop()
