"""A requester killed with SIGKILL half way through, restarted with ``--resume``.

The rest of the run completes; the outcomes the caller saw across both runs are each seen
once; the journal holds every task exactly once, done.
"""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

TASKS = 2000


def journal_counts(db: Path) -> dict[str, int]:
    if not db.exists():
        return {}
    try:
        with sqlite3.connect(db, timeout=5) as conn:
            return dict(conn.execute("SELECT state, COUNT(*) FROM tasks GROUP BY state").fetchall())
    except sqlite3.OperationalError:  # created a moment ago: no tables yet
        return {}


def printed_task_ids(text: str) -> list[str]:
    """Task ids of the outcome lines (`#index task_id ...`) a submit printed."""
    return [line.split()[1] for line in text.splitlines() if line.startswith("#")]


def test_killed_requester_resumes_and_reports_each_outcome_once(
    start_node: Callable[..., Any],
    popen_cli: Callable[..., Any],
    run_cli: Callable[..., Any],
    network: str,
    tmp_path: Path,
) -> None:
    for name in ("w1", "w2"):
        start_node(name)
    data = tmp_path / "requester"
    common = ("--interface", "127.0.0.1", "--network", network, "--data-dir", str(data))
    first = popen_cli("submit", *common, "--wait-peers", "2", "--count", str(TASKS),
                      "--concurrency", "8")  # fmt: skip
    db = data / "client" / "journal.db"
    deadline = time.monotonic() + 60
    while journal_counts(db).get("done", 0) < TASKS // 2:
        assert first.poll() is None, first.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the first run made no progress"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    seen_first = printed_task_ids(first.stdout.read())
    before = journal_counts(db)
    assert 0 < before.get("done", 0) < TASKS, before

    listed = run_cli("tasks", "--data-dir", str(data), "--runs", "--json")
    assert listed.returncode == 0, listed.stderr
    (run,) = json.loads(listed.stdout)
    assert run["total"] == TASKS and run["pending"] == TASKS - before["done"] and not run["running"]

    second = run_cli("submit", *common, "--resume", timeout=120)
    assert second.returncode == 0, second.stderr[-2000:]
    assert "Traceback" not in second.stderr
    seen_second = printed_task_ids(second.stdout)

    after = journal_counts(db)
    assert after == {"done": TASKS}, after
    seen = Counter(seen_first + seen_second)
    assert all(n == 1 for n in seen.values()), "an outcome was reported twice"
    # At most the outcomes in flight at the kill, or waiting to be printed in task order
    # (4 x --concurrency, netcore.tasks.ordered), were committed but never printed.
    assert len(seen) >= TASKS - 4 * 8
    assert len(seen_second) == TASKS - before["done"]
    with sqlite3.connect(db) as conn:
        ids = [r[0] for r in conn.execute("SELECT task_id FROM tasks")]
    assert len(ids) == len(set(ids)) == TASKS
    assert set(seen) <= set(ids)

    nothing = run_cli("submit", *common, "--resume")
    assert nothing.returncode == 1 and "nothing to resume" in nothing.stderr
