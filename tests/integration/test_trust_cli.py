"""Trust from the command line, with real ``p2pai node`` processes on 127.0.0.1:
``submit --redundancy/--vote/--spot-check``, ``peers`` with scores, ``--trust allowlist``
set up with ``p2pai keys``, and a trust list others may write."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

pytestmark = pytest.mark.integration

LOOPBACK = "127.0.0.1"


def net_args(network: str, data_dir: Path) -> list[str]:
    return ["--interface", LOOPBACK, "--network", network, "--data-dir", str(data_dir)]


def summary_of(stdout: str) -> dict[str, Any]:
    data = json.loads(stdout.strip().splitlines()[-1])
    assert isinstance(data, dict)
    return data


def test_submit_with_redundancy_and_spot_checks(
    start_node: Callable[..., Any],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    network: str,
    tmp_path: Path,
) -> None:
    nodes = [start_node(name) for name in ("w1", "w2", "w3")]
    base = tmp_path / "client"
    res = run_cli(
        "submit", *net_args(network, base), "--count", "60", "--redundancy", "3",
        "--vote", "label", "--spot-check", "0.2", "--timeout", "20", "--json", timeout=120,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    assert "Traceback" not in res.stderr
    summary = summary_of(res.stdout)
    assert summary["ok"] == 60 and summary["failed"] == 0
    verify = summary["verify"]
    assert verify["accepted"] == 60 and verify["no_majority"] == 0
    assert verify["votes_lost"] == 0 and verify["votes_won"] >= 120
    assert verify["spot_checks"] >= 10 and verify["spot_failed"] == 0
    # New workers are on probation: trials of real inputs, checked here, none a mismatch.
    assert verify["checked"] >= 9 and verify["mismatches"] == 0 and verify["quarantined"] == 0
    # What the client saw is kept in the base dir's store, and `peers` shows it.
    assert (base / "p2pai.db").exists()
    peers = run_cli("peers", *net_args(network, base), "--json", "--timeout", "2", timeout=60)
    assert peers.returncode == 0, peers.stderr
    rows = {row["peer_id"]: row for row in json.loads(peers.stdout)}
    assert set(rows) == {n.peer_id for n in nodes}
    for row in rows.values():
        assert row["score"] > 0.8 and row["quarantined"] == "" and row["trusted"] is False
    table = run_cli("peers", *net_args(network, base), "--timeout", "2", timeout=60)
    assert "SCORE" in table.stdout and "STATE" in table.stdout

    text = run_cli(
        "submit", *net_args(network, base), "--count", "5", "--redundancy", "3", timeout=120
    )
    assert text.returncode == 0, text.stderr
    assert "verified x3 by digest (quorum 2): 5 accepted" in text.stdout


def test_submit_redundancy_needs_enough_workers(
    start_node: Callable[..., Any],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    network: str,
    tmp_path: Path,
) -> None:
    start_node("only")
    res = run_cli(
        "submit", *net_args(network, tmp_path / "c"), "--redundancy", "3", "--timeout", "2",
        timeout=60,
    )  # fmt: skip
    assert res.returncode == 1
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    # A vote of 3 needs a quorum of 2 voters: it waited --timeout for a second one.
    assert len(lines) == 1 and "found 1 of 2 worker(s)" in lines[0], res.stderr


def test_allowlist_set_up_with_keys(
    start_node: Callable[..., Any],
    run_cli: Callable[..., subprocess.CompletedProcess[str]],
    network: str,
    tmp_path: Path,
) -> None:
    friend, stranger, worker_dir = tmp_path / "friend", tmp_path / "stranger", tmp_path / "worker"
    exported = run_cli("keys", "show", "--export", "--name", "friend", "--data-dir", str(friend))
    assert exported.returncode == 0, exported.stderr
    keyfile = tmp_path / "friend.keys"
    keyfile.write_text(exported.stdout)
    keyfile.chmod(0o644)
    trusted = run_cli("keys", "trust", str(keyfile), "--data-dir", str(worker_dir))
    assert trusted.returncode == 0, trusted.stderr

    worker = start_node("worker", "--trust", "allowlist", data_dir=worker_dir)
    ok = run_cli(
        "submit", *net_args(network, friend), "--count", "10", "--timeout", "20", "--json",
        timeout=120,
    )  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    assert summary_of(ok.stdout)["workers"] == {worker.peer_id: 10}

    refused = run_cli(
        "submit", *net_args(network, stranger), "--count", "3", "--timeout", "3", timeout=60
    )
    assert refused.returncode == 1
    lines = [line for line in refused.stderr.splitlines() if line.strip()]
    assert lines[-1].startswith("p2pai: error: found 0 of 1 worker"), refused.stderr
    assert f"peer {worker.peer_id} (worker) refused our key" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert worker.count("task_served") == 10
    assert "Traceback" not in worker.stderr()


def test_a_trust_list_others_may_write_stops_the_node(
    start_node: Callable[..., Any], tmp_path: Path
) -> None:
    data_dir = tmp_path / "n"
    data_dir.mkdir()
    (data_dir / "trusted.json").write_text('{"version": 1, "keys": []}')
    (data_dir / "trusted.json").chmod(0o666)
    node = start_node("n", "--trust", "allowlist", data_dir=data_dir, wait_ready=False)
    assert node.wait_exit(20) == 1
    error = node.wait_for("error", timeout=5)
    assert "writable by other users" in error["message"] and "chmod 600" in error["message"]
    lines = [line for line in node.stderr().splitlines() if line.strip()]
    assert lines == [f"p2pai: error: {error['message']}"]
