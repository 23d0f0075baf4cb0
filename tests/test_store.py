"""The SQLite store: WAL, per-component schema versions, additive counters, clear errors."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from netcore.trust.store import (
    REPUTATION_MIGRATIONS,
    ReputationDelta,
    Store,
    StoreError,
    db_path,
)


def delta(peer_id: str = "p1", name: str = "one", **counts: int) -> ReputationDelta:
    return ReputationDelta(peer_id=peer_id, name=name, counts=counts, uptime_s=1.5, seen_at=100.0)


def test_open_creates_a_private_wal_database(tmp_path: Path) -> None:
    path = db_path(tmp_path / "base")
    store = Store.open(path)
    try:
        assert path.name == "p2pai.db"
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.version("reputation") == len(REPUTATION_MIGRATIONS)
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
    assert again.version("reputation") == len(REPUTATION_MIGRATIONS)
    assert again.version("journal") == 2
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


# --- issue 16: quarantines that end, evidence that decays ----------------------------------


def test_an_old_store_is_migrated_and_its_quarantine_gets_an_end(tmp_path: Path) -> None:
    path = db_path(tmp_path)
    conn = sqlite3.connect(path)
    conn.execute(
        "CREATE TABLE schema_version (component TEXT PRIMARY KEY, version INTEGER NOT NULL,"
        " updated REAL NOT NULL)"
    )
    for statement in REPUTATION_MIGRATIONS[0]:  # the store as p2pai wrote it before issue 16
        conn.execute(statement)
    conn.execute("INSERT INTO schema_version VALUES ('reputation', 1, 0)")
    conn.execute(
        "INSERT INTO peer_reputation (key, peer_id, name, votes_lost, tasks_ok, first_seen,"
        " last_seen, quarantined_at, quarantine_reason) VALUES"
        " ('K1', 'p1', 'liar', 3, 7, 10, 20, 1000, 'score 0.2: lost 3 of 3 votes'),"
        " ('K2', 'p2', 'good', 0, 9, 10, 30, NULL, '')"
    )
    conn.commit()
    conn.close()
    store = Store.open(path)
    try:
        assert store.version("reputation") == 2
        rows = {r.key: r for r in store.load_reputation()}
        liar, good = rows["K1"], rows["K2"]
        assert liar.counts["votes_lost"] == 3 and liar.quarantine_reason.startswith("score 0.2")
        assert liar.offences == 1 and liar.quarantined_until == 1600.0  # 10 min after it began
        assert liar.weights is not None and liar.weights["votes_lost"] == 3.0
        assert liar.decayed_at == 20.0
        assert good.offences == 0 and good.quarantined_until is None
        assert good.weights is not None and good.weights["tasks_ok"] == 9.0
    finally:
        store.close()


def test_evidence_decays_with_the_half_life_and_totals_do_not(tmp_path: Path) -> None:
    store = Store.open(db_path(tmp_path))
    try:
        day = 86400.0
        first = ReputationDelta("p1", "one", {"votes_lost": 4}, seen_at=1000.0)
        store.add_reputation({"K1": first}, half_life=day)
        later = ReputationDelta("p1", "one", {"votes_won": 1}, seen_at=1000.0 + day)
        store.add_reputation({"K1": later}, half_life=day)
        (row,) = store.load_reputation()
        assert row.counts["votes_lost"] == 4 and row.counts["votes_won"] == 1
        assert row.weights is not None
        assert row.weights["votes_lost"] == pytest.approx(2.0)  # a day old: half
        assert row.weights["votes_won"] == pytest.approx(1.0)
        assert row.decayed_at == 1000.0 + day
        back = ReputationDelta(
            "p1", "one", {"votes_lost": -1, "votes_won": 1}, seen_at=1000.0 + day,
            weights={"votes_lost": -5.0, "votes_won": 1.0},
        )  # fmt: skip
        store.add_reputation({"K1": back}, half_life=day)
        (row,) = store.load_reputation()
        assert row.counts["votes_lost"] == 3 and row.weights["votes_lost"] == 0.0  # never < 0
    finally:
        store.close()


def test_one_quarantine_at_a_time_and_its_end_is_conditional(tmp_path: Path) -> None:
    store = Store.open(db_path(tmp_path))
    try:
        store.add_reputation({"K1": delta(votes_lost=3, spot_passed=2)})
        assert store.set_quarantine("K1", 100.0, "why", until=700.0, offences=1)
        # A second process deciding the same a moment later does not count a second offence.
        assert not store.set_quarantine("K1", 101.0, "again", until=701.0, offences=1)
        (row,) = store.load_reputation()
        assert (row.quarantine_reason, row.quarantined_until, row.offences) == ("why", 700.0, 1)
        assert not store.end_quarantine("K1", 123.0, 2, ("votes_lost",), pardon=False)
        assert store.end_quarantine("K1", 700.0, 2, ("votes_lost",), pardon=False)
        (row,) = store.load_reputation()
        assert row.quarantined_until is None and row.quarantined_at is None
        assert row.offences == 1 and row.probation_from == 2
        assert row.weights is not None and row.weights["votes_lost"] == 0.0  # served: wiped
        assert row.counts["votes_lost"] == 3  # the lifetime total keeps it
        assert store.set_quarantine("K1", 800.0, "twice", until=2000.0, offences=2)
        assert store.end_quarantine("K1", 2000.0, 2, (), pardon=True)
        (row,) = store.load_reputation()
        assert row.offences == 1, "a pardon takes the offence back"
    finally:
        store.close()
