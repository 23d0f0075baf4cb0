"""`p2pai map` against a real `p2pai node` on 127.0.0.1: tables in, results files out in
input order; a job killed with SIGKILL finished by the same command; the errors said before
any work (one line, exit 2, no traceback)."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from model_helpers import count_rows

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "assets" / "samples" / "digits-test.npz"
Run = Callable[..., Any]


def client_args(network: str, data_dir: Path) -> list[str]:
    return ["--interface", "127.0.0.1", "--network", network, "--data-dir", str(data_dir)]


def held_out() -> tuple[np.ndarray, np.ndarray]:
    with np.load(SAMPLES) as data:
        return np.asarray(data["x"]), np.asarray(data["y"])


def read_records(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".csv":
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
        for r in rows:
            r["class"] = int(r["class"]) if r["class"] else None
            r["ok"] = r["ok"] == "true"
        return rows
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_map_digits_tables_into_every_format_in_input_order(
    start_node: Callable[..., Any], run_cli: Run, network: str, tmp_path: Path
) -> None:
    start_node("w1")
    x, y = held_out()
    table = tmp_path / "digits.csv"
    np.savetxt(table, x, delimiter=",", fmt="%g")  # no header: 64 columns of numbers
    rows = tmp_path / "digits.npy"
    np.save(rows, x)
    client = tmp_path / "client"
    for source, out in ((table, "a.jsonl"), (rows, "b.csv"), (rows, "c.parquet")):
        res = run_cli("map", "digits", str(source), "-o", str(tmp_path / out), "--json",
                      *client_args(network, client), timeout=90)  # fmt: skip
        assert res.returncode == 0, res.stderr
        assert "Traceback" not in res.stderr
        summary = json.loads(res.stdout)
        assert summary["inputs"] == summary["ok"] == summary["records"] == len(x)
        assert summary["output"] == str(tmp_path / out)
        assert (summary["bytes_sent"] > 0) == (summary["tasks"] > 0)
        records = read_records(tmp_path / out)
        assert [str(r["input"]) for r in records] == [str(i + 1) for i in range(len(x))]
        assert all(r["ok"] and r["worker"] == "w1" for r in records)
        accuracy = np.mean([r["class"] == int(t) for r, t in zip(records, y, strict=True)])
        assert accuracy >= 0.9
        assert all(r["label"] == str(r["class"]) for r in records)
    # The second job over the .npy: every result from the journal, nothing sent.
    assert summary["from_journal"] == len(x) and summary["tasks"] == 0


def test_map_iris_picks_its_columns_and_records_the_bad_rows(
    start_node: Callable[..., Any], run_cli: Run, network: str, tmp_path: Path
) -> None:
    start_node("w1")
    table = tmp_path / "iris.csv"
    table.write_text(
        "id,sepal_length,sepal_width,petal_length,petal_width,species\n"
        "1,5.1,3.5,1.4,0.2,setosa\n2,7.0,3.2,4.7,1.4,versicolor\n3,6.3,3.3,6.0,2.5,virginica\n"
        "4,6.3,,6.0,2.5,virginica\n5,4.9,3.0,1.4,0.2,setosa\n"
    )
    out = tmp_path / "iris.jsonl"
    res = run_cli("map", "iris", str(table), "-o", str(out),
                  "--column", "sepal_length,sepal_width", "--column", "petal_length",
                  "--column", "petal_width", *client_args(network, tmp_path / "c"), timeout=90)  # fmt: skip
    assert res.returncode == 1, res.stderr  # one row failed, the others are written
    records = read_records(out)
    assert [r["input"] for r in records] == ["1", "2", "3", "4", "5"]
    assert [r.get("label") for r in records] == [
        "setosa",
        "versicolor",
        "virginica",
        None,
        "setosa",
    ]
    assert records[3] == {"input": "4", "ok": False, "error": "4: column 'sepal_width' is empty"}
    assert "4 of 5 inputs" not in res.stdout and "5 of 5 inputs: 4 ok, 1 failed" in res.stdout
    assert "Traceback" not in res.stderr


def results_stored(db: Path) -> int:
    return count_rows(db, "SELECT COUNT(*) FROM results")


ROWS = 4000


def test_a_job_killed_with_sigkill_is_finished_by_the_same_command(
    start_node: Callable[..., Any],
    popen_cli: Callable[..., Any],
    run_cli: Run,
    network: str,
    tmp_path: Path,
) -> None:
    start_node("w1")
    x, _ = held_out()
    rng = np.random.default_rng(0)
    big = np.concatenate([x] * (ROWS // len(x) + 1))[:ROWS]
    big = (big + rng.uniform(0, 0.01, big.shape)).astype(np.float32)  # distinct rows
    rows = tmp_path / "rows.npy"
    np.save(rows, big)
    out = tmp_path / "out.jsonl"
    client = tmp_path / "client"
    # Small tasks, so that the job takes long enough to be killed halfway.
    argv = ("map", "digits", str(rows), "-o", str(out), "--batch", "4", "--json",
            *client_args(network, client))  # fmt: skip
    first = popen_cli(*argv)
    db = client / "client" / "jobs.db"
    deadline = time.monotonic() + 60
    while results_stored(db) < ROWS // 2:
        assert first.poll() is None, first.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the first run made no progress"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGKILL)
    first.wait(10)
    done_before = results_stored(db)
    assert ROWS // 2 <= done_before < ROWS
    assert not out.exists()  # never half-written

    res = run_cli(*argv, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    summary = json.loads(res.stdout)
    assert summary["from_journal"] == done_before
    assert summary["computed"] == ROWS - done_before
    # Computed again: what the killed run had sent and not got back (its window), < 5%.
    assert summary["recomputed"] < 0.05 * done_before
    records = read_records(out)
    assert [r["input"] for r in records] == [str(i + 1) for i in range(ROWS)]  # once, in order
    assert all(r["ok"] for r in records)
    assert results_stored(db) == ROWS


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["digits", "{empty}", "-o", "{out}"], "an empty folder"),
        (["nosuch", "{table}", "-o", "{out}"], "unknown model 'nosuch'"),
        (["iris", "{pngs}", "-o", "{out}"], "no file that model iris (tabular) takes in it"),
        (
            ["digits", "{table}", "-o", "{tmp}/out.xlsx"],
            "'.xlsx'; map writes .jsonl, .csv, .parquet",
        ),
        (["digits", "{table}", "-o", "{tmp}/no/such/dir/out.jsonl"], "no folder"),
        (["digits", "{table}", "-o", "{tmp}"], "a folder, not a file"),
        (["iris", "{table}", "-o", "{out}", "--column", "petals"], "no column 'petals'"),
        (["digits", "{tmp}/missing.csv", "-o", "{out}"], "no such file or folder"),
    ],
)
def test_a_job_that_cannot_start_is_one_line_and_exit_2(
    run_cli: Run, network: str, tmp_path: Path, args: list[str], words: str
) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "a.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "t.csv").write_text("a,b\n1,2\n")
    names = {"empty": tmp_path / "empty", "pngs": tmp_path / "pngs", "table": tmp_path / "t.csv",
             "out": tmp_path / "out.jsonl", "tmp": tmp_path}  # fmt: skip
    argv = [a.format(**names) for a in args]
    started = time.monotonic()
    res = run_cli("map", *argv, *client_args(network, tmp_path / "client"), timeout=30)
    assert res.returncode == 2, (res.returncode, res.stderr)
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("p2pai: error: ") and words in lines[0], lines
    assert res.stdout == "" and "Traceback" not in res.stderr
    assert time.monotonic() - started < 20  # said at once, before waiting for any worker
    assert not (tmp_path / "out.jsonl").exists()


def test_ctrl_c_stops_keeps_the_journal_and_says_how_to_finish(
    start_node: Callable[..., Any],
    popen_cli: Callable[..., Any],
    run_cli: Run,
    network: str,
    tmp_path: Path,
) -> None:
    start_node("w1")
    x, _ = held_out()
    big = np.concatenate([x] * 6)[:2000] + np.linspace(0, 0.01, 2000, dtype=np.float32)[:, None]
    rows = tmp_path / "rows.npy"
    np.save(rows, big.astype(np.float32))
    out = tmp_path / "out.csv"
    client = tmp_path / "client"
    argv = ("map", "digits", str(rows), "-o", str(out), "--batch", "2",
            *client_args(network, client))  # fmt: skip
    first = popen_cli(*argv, "--fresh")
    db = client / "client" / "jobs.db"
    deadline = time.monotonic() + 60
    while results_stored(db) < 200:
        assert first.poll() is None, first.stderr.read()[-2000:]
        assert time.monotonic() < deadline, "the job made no progress"
        time.sleep(0.02)
    os.kill(first.pid, signal.SIGINT)
    assert first.wait(20) == 130
    err = first.stderr.read()
    assert "Traceback" not in err
    (line,) = [line for line in err.splitlines() if "interrupted" in line]
    assert "of 2000 inputs done, kept in the journal" in line and "was not written" in line
    hint = line.split("Finish with the same command: ", 1)[1]
    assert hint.startswith("p2pai map digits ") and "--fresh" not in hint  # a rerun finishes
    assert not out.exists() and not (tmp_path / ".out.csv.partial").exists()
    stored = results_stored(db)
    res = run_cli(*argv, "--json", timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert json.loads(res.stdout)["from_journal"] >= stored
    assert len(read_records(out)) == 2000
