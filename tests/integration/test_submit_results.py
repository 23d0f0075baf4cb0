"""What `p2pai submit` reports, against real `p2pai node` processes on 127.0.0.1: every sample
of a batched run (text, JSON, the journal, `p2pai tasks`) with the model's class names and the
workers' names, in task order; and a Ctrl-C that reports what was done, says how to resume,
exits 130, and a resume that goes on with the same task numbers."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from model_helpers import count_rows

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
DIGITS = REPO / "assets" / "models" / "digits.onnx"
NAMES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
Run = Callable[..., Any]


def client_args(network: str, data_dir: Path) -> list[str]:
    return ["--interface", "127.0.0.1", "--network", network, "--data-dir", str(data_dir)]


def add_numerals(run_cli: Run, data_dir: Path, tmp_path: Path) -> None:
    """The shipped digits graph under the name ``numerals``, with class names."""
    labels = tmp_path / "numerals.txt"
    labels.write_text("\n".join(NAMES) + "\n")
    res = run_cli("models", "add", str(DIGITS), "--name", "numerals", "--labels", str(labels),
                  "--data-dir", str(data_dir))  # fmt: skip
    assert res.returncode == 0, res.stderr


def test_a_batched_submit_reports_every_sample_by_name(
    start_node: Callable[..., Any], run_cli: Run, network: str, tmp_path: Path
) -> None:
    client = tmp_path / "client"
    for data_dir in (client, tmp_path / "nodes" / "w1", tmp_path / "nodes" / "w2"):
        add_numerals(run_cli, data_dir, tmp_path)  # the workers hold it: no fetch in this test
    start_node("w1")
    start_node("w2")

    res = run_cli("submit", "--model", "numerals", "--count", "30", "--batch", "10",
                  "--wait-peers", "2", *client_args(network, client), timeout=90)  # fmt: skip
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    heads = [line for line in lines if line.startswith("#")]
    assert [h.split()[0] for h in heads] == ["#1", "#2", "#3"]  # numbered from 1, in order
    assert all(re.search(r"10 samples  on w[12]  ", h) for h in heads), heads
    samples = [line.split() for line in lines if line.lstrip().startswith("sample ")]
    assert [int(s[1]) for s in samples] == list(range(1, 31))
    for s in samples:
        assert s[2] in NAMES, s
        assert re.fullmatch(r"\(\d{1,3}\.\d%\)", s[3]), s  # confidence to 1 decimal
        assert s[4] in ("ok", "WRONG"), s
    workers = next(line for line in lines if line.startswith("workers: "))
    assert re.fullmatch(r"workers: w[12]: \d(, w[12]: \d)?", workers), workers

    res = run_cli("submit", "--model", "numerals", "--count", "30", "--batch", "10", "--json",
                  "--wait-peers", "2", *client_args(network, client), timeout=90)  # fmt: skip
    assert res.returncode == 0, res.stderr
    out = json.loads(res.stdout)
    results = out["results"]
    assert [r["sample"] for r in results] == list(range(1, 31))
    assert [r["task"] for r in results] == [1] * 10 + [2] * 10 + [3] * 10
    assert all(r["label"] == NAMES[r["class"]] for r in results)
    assert all(len(r["probabilities"]) == 10 and 0 < r["confidence"] <= 1 for r in results)
    assert {r["worker_name"] for r in results} <= {"w1", "w2"}
    assert sum(r["right"] for r in results) == round(out["accuracy"] * 30)
    assert set(out["worker_names"].values()) <= {"w1", "w2"}

    # `infer` names the class too, and keeps the raw outputs.
    pixels = json.dumps([[0.0] * 64, [16.0] * 64])
    res = run_cli("infer", "numerals", pixels, *client_args(network, client), timeout=60)
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    assert len(answer["label"]) == 2
    assert [(r["sample"], r["label"]) for r in answer["results"]] == [
        (i + 1, NAMES[c]) for i, c in enumerate(answer["label"])
    ]
    assert [r["class"] for r in answer["results"]] == answer["label"]

    # The journal kept every sample: `p2pai tasks --samples` lists them again, by name.
    res = run_cli("tasks", "--data-dir", str(client), "--samples", "--json", "--limit", "3")
    assert res.returncode == 0, res.stderr
    rows = json.loads(res.stdout)
    assert sorted(r["seq"] for r in rows) == [1, 2, 3] and all(r["samples"] == 10 for r in rows)
    journaled = sorted((s["sample"], s["label"]) for r in rows for s in r["results"])
    assert journaled == [(r["sample"], r["label"]) for r in results]
    res = run_cli("tasks", "--data-dir", str(client), "--samples", "--limit", "3")
    assert res.returncode == 0, res.stderr
    assert sum(1 for line in res.stdout.splitlines() if line.lstrip().startswith("sample ")) == 30


def done_in_journal(db: Path) -> int:
    return count_rows(db, "SELECT COUNT(*) FROM tasks WHERE state='done'")


def numbers(text: str) -> list[int]:
    return [int(line.split()[0][1:]) for line in text.splitlines() if line.startswith("#")]


def test_ctrl_c_reports_what_was_done_and_how_to_resume(
    start_node: Callable[..., Any],
    popen_cli: Callable[..., Any],
    run_cli: Run,
    network: str,
    tmp_path: Path,
) -> None:
    tasks = 3000
    start_node("w1")
    data = tmp_path / "requester"
    first = popen_cli("submit", "--count", str(tasks), "--concurrency", "8",
                      *client_args(network, data))  # fmt: skip
    db = data / "client" / "journal.db"
    deadline = time.monotonic() + 60
    while done_in_journal(db) < 100:
        assert first.poll() is None, first.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.05)
    os.kill(first.pid, signal.SIGINT)
    out, err = first.communicate(timeout=30)
    assert first.returncode == 130, (first.returncode, err[-2000:])
    assert "Traceback" not in err
    seen_first = numbers(out)
    # Every outcome the journal holds was printed, once, in task order.
    with sqlite3.connect(db) as conn:
        done = {s for (s,) in conn.execute("SELECT seq FROM tasks WHERE state='done'")}
    assert sorted(seen_first) == seen_first and set(seen_first) == done
    assert len(seen_first) == len(done) < tasks
    assert f"interrupted after {len(done)} of {tasks} tasks" in out
    assert re.search(rf"^{len(done)}/{len(done)} ok, 0 failed", out, re.M), out[-500:]
    (hint,) = [line for line in err.splitlines() if "resume with: " in line]
    command = shlex.split(hint.split("resume with: ", 1)[1])
    assert command[:3] == ["p2pai", "submit", "--resume"]
    assert ["--network", network] == command[command.index("--network") :][:2]
    assert ["--data-dir", str(data.resolve())] == command[command.index("--data-dir") :][:2]

    second = run_cli(*command[1:], timeout=180)
    assert second.returncode == 0, second.stderr[-2000:]
    seen_second = numbers(second.stdout)
    assert sorted(seen_second) == seen_second  # in task order, the same numbering
    assert sorted(seen_first + seen_second) == list(range(1, tasks + 1))
