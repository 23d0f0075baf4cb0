"""Issue 16, scheduling and reputation: hostile workers as real processes beside honest
``p2pai node`` processes, a real ``p2pai submit`` requester, on 127.0.0.1.

* A worker answering ``bad_input`` to every (valid) task: before, 58/60 tasks failed at
  ``--redundancy 3`` and 60/60 at 1; now its refusal is its failure, retried elsewhere.
* Colluders that come and go: two identities giving the same wrong label outvote and
  quarantine honest workers; before, quarantine never ended and, after the colluders left,
  the same requester's runs failed ``too_few_workers``. Now quarantines end after their
  cool-down (made short here with ``P2PAI_QUARANTINE_COOLDOWN``) and the runs succeed.

Each test prints its figures (``-s`` shows them); none asserts a time.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import child_env, cli_argv, stop_pid

pytestmark = pytest.mark.integration

TESTS = Path(__file__).resolve().parents[1]
GUARD_S = 120.0
"""A hang guard for waits on a condition (normally met within seconds)."""


def client_args(network: str, data_dir: Path) -> list[str]:
    return ["--interface", "127.0.0.1", "--network", network, "--data-dir", str(data_dir)]


@pytest.fixture
def hostile(tmp_path: Path, network: str) -> Iterator[Callable[..., subprocess.Popen[str]]]:
    """Start ``tests/<script>.py`` on this test's network; stopped by PID after the test."""
    started: list[subprocess.Popen[str]] = []

    def start(script: str, name: str, *extra: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, str(TESTS / script), "--network", network,
             "--data-dir", str(tmp_path / "hostile" / name), "--name", name, *extra],
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=open(tmp_path / f"{name}.stderr", "wb"),  # noqa: SIM115 (closed by exit)
            text=True, env=child_env(),
        )  # fmt: skip
        started.append(proc)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert '"ready"' in line, f"{script} did not start: {line!r}"
        return proc

    yield start
    for proc in started:
        stop_pid(proc)


def finish(proc: subprocess.Popen[str]) -> dict[str, Any]:
    """Stop a hostile process and return its last JSON line (the refuser's ``asked``)."""
    stop_pid(proc)
    assert proc.stdout is not None
    lines = [json.loads(x) for x in proc.stdout.read().splitlines() if x.startswith("{")]
    return lines[-1] if lines else {}


def submit(
    network: str, data_dir: Path, *args: str, env: dict[str, str] | None = None
) -> dict[str, Any]:
    res = subprocess.run(
        [*cli_argv(), "submit", *client_args(network, data_dir), "--json", *args],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=300,
        env=env or child_env(), check=False,
    )  # fmt: skip
    assert res.stdout.strip(), f"submit printed nothing: {res.stderr[-2000:]}"
    summary: dict[str, Any] = json.loads(res.stdout)
    summary["_exit"] = res.returncode
    summary["_stderr"] = res.stderr
    return summary


def reputation(data_dir: Path) -> list[dict[str, Any]]:
    res = subprocess.run(
        [*cli_argv(), "reputation", "show", "--json", "--data-dir", str(data_dir)],
        capture_output=True, text=True, timeout=60, env=child_env(), check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    rows: list[dict[str, Any]] = json.loads(res.stdout)
    return rows


def test_a_worker_answering_bad_input_to_everything_fails_no_task(
    start_node: Callable[..., Any], hostile: Callable[..., Any], network: str, tmp_path: Path
) -> None:
    honest = [start_node(f"honest{i}") for i in range(3)]
    refuser = hostile("refuser.py", "refuser")
    figures = {}
    for k in (3, 1):
        client = tmp_path / f"client-r{k}"
        out = submit(network, client, "--count", "60", "--redundancy", str(k), "--vote",
                     "label", "--wait-peers", "4")  # fmt: skip
        figures[k] = (out["ok"], out["failed"])
        assert out["failed"] == 0, (k, out["_stderr"][-2000:])
        rows = {r["name"]: r for r in reputation(client)}
        assert rows.get("refuser", {}).get("failures", 0) >= 1, "counted against the refuser"
        assert all(rows[n.name]["failures"] == 0 for n in honest if n.name in rows)
    asked = finish(refuser).get("asked", 0)
    print(f"\n3 honest + 1 bad_input worker: r=3 ok/failed {figures[3]}, r=1 {figures[1]}; "
          f"tasks that reached the refuser: {asked}")  # fmt: skip
    assert asked > 0, "the refuser was never asked: the test proves nothing"


# Colluders that come and go: since probation and host-distinct votes (netcore.tasks.verify)
# they no longer outvote an honest worker at all, so the scene where they put honest workers
# in quarantine is tests/integration/test_adversaries.py::test_colluders_lose_and_leave_the_
# honest_usable; that the quarantine they could cause ends is the next test.


def test_quarantined_honest_workers_come_back_and_the_runs_succeed(
    start_node: Callable[..., Any], network: str, tmp_path: Path
) -> None:
    """The state colluders leave behind, written straight into the requester's store (what
    the test above reaches by voting, deterministically): two of three honest workers
    quarantined for lost votes. Before issue 16 that quarantine never ended."""
    from netcore.trust.store import ReputationDelta, Store, db_path

    honest = [start_node(f"honest{i}") for i in range(3)]
    client = tmp_path / "requester"
    store = Store.open(db_path(client))
    for node in honest[:2]:
        store.add_reputation(
            {node.key: ReputationDelta(node.peer_id, node.name, {"votes_lost": 3})}
        )
        store.set_quarantine(node.key, time.time(), "score 0.20: lost 3 of 3 votes")
    store.close()
    env = {**child_env(), "P2PAI_QUARANTINE_COOLDOWN": "2"}
    states = {r["name"]: r["state"] for r in reputation(client)}
    assert states == {"honest0": "quarantined", "honest1": "quarantined"}, states
    # Too few usable workers for redundancy 3 right now; redundancy 1 has one and runs.
    first = submit(network, client, "--count", "20", "--wait-peers", "3", env=env)
    assert first["failed"] == 0, first["_stderr"][-2000:]
    deadline = time.monotonic() + 60.0
    while any(r["state"] == "quarantined" for r in reputation(client)):
        assert time.monotonic() < deadline, f"the quarantines never ended: {reputation(client)}"
        time.sleep(0.2)
    figures = {}
    for k in (3, 1):
        out = submit(network, client, "--count", "20", "--redundancy", str(k), "--vote",
                     "label", "--wait-peers", "3", env=env)  # fmt: skip
        figures[k] = (out["ok"], out["failed"])
        assert out["failed"] == 0, (k, out["_stderr"][-2000:])
    rows = {r["name"]: r for r in reputation(client)}
    assert rows["honest0"]["tasks_ok"] > 0 and rows["honest1"]["tasks_ok"] > 0, rows
    print(f"\n2 of 3 honest quarantined by colluders: after the cool-down r=3 ok/failed "
          f"{figures[3]}, r=1 {figures[1]}; states {[r['state'] for r in rows.values()]}")  # fmt: skip
