"""The SQLite store: WAL, per-component schema versions, additive counters, clear errors."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from netcore.trust.store import ReputationDelta, Store, StoreError, db_path


def delta(peer_id: str = "p1", name: str = "one", **counts: int) -> ReputationDelta:
    return ReputationDelta(peer_id=peer_id, name=name, counts=counts, uptime_s=1.5, seen_at=100.0)


def test_open_creates_a_private_wal_database(tmp_path: Path) -> None:
    path = db_path(tmp_path / "base")
    store = Store.open(path)
    try:
        assert path.name == "p2pai.db"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.version("reputation") == 1
        assert store.version("journal") == 0
    finally:
        store.close()


def test_another_component_adds_its_tables(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    journal = [["CREATE TABLE task_journal (id TEXT PRIMARY KEY, state TEXT NOT NULL)"]]
    store = Store.open(path)
    assert store.migrate("journal", journal) == 1
    assert store.migrate("journal", journal) == 1  # idempotent
    store.conn.execute("INSERT INTO task_journal VALUES ('t1', 'queued')")
    journal.append(["ALTER TABLE task_journal ADD COLUMN worker TEXT"])
    assert store.migrate("journal", journal) == 2
    row = store.conn.execute("SELECT id, state, worker FROM task_journal").fetchone()
    assert row == ("t1", "queued", None)
    store.close()
    again = Store.open(path)  # reputation untouched by the journal's migrations
    assert again.version("reputation") == 1 and again.version("journal") == 2
    again.close()


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("UPDATE schema_version SET version = 99 WHERE component = 'reputation'")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError) as err:
        Store.open(path)
    message = str(err.value)
    assert "newer than this p2pai knows" in message and "upgrade p2pai" in message
    assert "\n" not in message


def test_a_corrupt_file_is_one_clear_line(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    path.write_bytes(b"this is not a database" * 200)
    with pytest.raises(StoreError) as err:
        Store.open(path)
    assert "move it away" in str(err.value) and "\n" not in str(err.value)


def test_counters_are_added_never_overwritten(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    node, client = Store.open(path), Store.open(path)  # two processes sharing the file
    try:
        node.add_reputation({"K1": delta(tasks_ok=3, votes_lost=1)})
        client.add_reputation({"K1": delta(name="", tasks_ok=2, timeouts=1)})
        client.add_reputation({"K2": delta("p2", "two", spot_failed=1)})
        rows = {r.key: r for r in node.load_reputation()}
        assert rows["K1"].counts["tasks_ok"] == 5
        assert rows["K1"].counts["votes_lost"] == 1 and rows["K1"].counts["timeouts"] == 1
        assert rows["K1"].uptime_s == 3.0
        assert rows["K1"].name == "one"  # an empty name never erases one
        assert rows["K2"].counts["spot_failed"] == 1
        node.add_reputation({})  # nothing to do
    finally:
        node.close()
        client.close()


def test_quarantine_is_recorded_and_reset_forgets(tmp_path: Path) -> None:
    store = Store.open(db_path(tmp_path))
    store.add_reputation({"K1": delta(votes_lost=3), "K2": delta("p2", tasks_ok=1)})
    store.set_quarantine("K1", 123.0, "score 0.2: lost 3 of 3 votes")
    row = next(r for r in store.load_reputation() if r.key == "K1")
    assert row.quarantined_at == 123.0 and row.quarantine_reason.startswith("score 0.2")
    store.set_quarantine("K1", None, "ignored")
    row = next(r for r in store.load_reputation() if r.key == "K1")
    assert row.quarantined_at is None and row.quarantine_reason == ""
    assert store.reset_reputation(["K1", "nope"]) == 1
    assert [r.key for r in store.load_reputation()] == ["K2"]
    assert store.reset_reputation(None) == 1
    assert store.load_reputation() == []
    store.close()


def test_an_unwritable_place_is_one_clear_line(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError) as err:
        Store.open(blocker / "p2pai.db")
    assert "cannot open the store" in str(err.value)
