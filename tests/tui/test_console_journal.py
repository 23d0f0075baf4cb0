"""The console journals its tasks and, on restart, finishes what a killed console left."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

from model_helpers import loopback_config, unique_network, wait_until

from netcore.models.registry import load_samples
from netcore.node import Node
from netcore.tasks.journal import Journal
from tui.app import P2PConsole

SIZE = (120, 40)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


async def test_tasks_are_journaled_and_a_killed_sessions_tasks_resume(tmp_path: Path) -> None:
    network = unique_network()
    worker = Node(loopback_config(tmp_path, "worker", network))
    await worker.start()
    console_dir = tmp_path / "console"
    # A previous console was killed with two tasks in flight: journaled, no outcome.
    x, y = load_samples()
    journal = Journal(console_dir)
    run = journal.start_run("digits")
    left = [journal.add(run, "digits", {"": x[i : i + 1]}, expected=int(y[i])) for i in (0, 1)]
    with sqlite3.connect(journal.path) as conn:
        conn.execute("UPDATE runs SET pid=? WHERE run_id=?", (dead_pid(), run))
    journal.close()

    node = Node(loopback_config(tmp_path, "console", network))
    app = P2PConsole(node, seed=3, log_timestamps=False)
    try:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(lambda: app.book.counters.done == 2, timeout=30, what="resumed tasks")
            assert {r.task_id for r in app.book.newest(10)} == set(left)
            await wait_until(lambda: len(node.usable_peers(model="digits")) == 1, what="worker")
            await pilot.press("d")
            await wait_until(lambda: app.book.counters.done == 3, timeout=30, what="a new task")
            await pilot.press("q")
        rows = Journal(console_dir).history(limit=10)
        assert len(rows) == 3 and {r["state"] for r in rows} == {"done"}
        assert set(left) <= {r["task_id"] for r in rows}
        assert Journal(console_dir).runs(unfinished_only=True) == [] or all(
            r.pending == 0 for r in Journal(console_dir).runs(unfinished_only=True)
        )
    finally:
        await node.stop()
        await worker.stop()
