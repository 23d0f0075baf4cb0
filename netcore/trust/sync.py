"""One exchange between a process's :class:`~netcore.trust.reputation.Reputation` and the
shared store: write what was observed and decided here, then read every row back (other
processes' observations and decisions too)."""

from __future__ import annotations

import time

from netcore.trust.reputation import Change, Reputation
from netcore.trust.store import ReputationDelta, Store


def sync(store: Store, reputation: Reputation) -> list[Change]:
    """Pending observations added, quarantine decisions written, rows loaded; returns the
    quarantines that began or ended (raises ``sqlite3.Error``: the caller retries later)."""
    now = time.time()
    store.add_reputation(
        {
            key: ReputationDelta(
                peer_id=r.peer_id,
                name=r.name,
                counts={k: int(v) for k, v in r.pending.counts.items()},
                uptime_s=r.pending.uptime_s,
                seen_at=now,
                weights={**r.pending_w.counts, "uptime_s": r.pending_w.uptime_s},
            )
            for key, r in reputation.take_pending().items()
        },
        reputation.policy.half_life_s,
    )
    save_decisions(store, reputation)
    return reputation.load(store.load_reputation())


def save_decisions(store: Store, reputation: Reputation) -> None:
    """Quarantines begun or ended here, written before the rows are read back. A write that
    another process's decision made moot is a no-op, and the row's state then wins."""
    bad = reputation.policy.bad
    for key, record in reputation.records.items():
        if record.unsaved == "begin" and record.quarantined_at is not None:
            store.set_quarantine(
                key,
                record.quarantined_at,
                record.quarantined,
                record.quarantined_until,
                record.offences,
            )
        elif record.unsaved in ("end", "pardon") and record.ended is not None:
            pardon = record.unsaved == "pardon"
            store.end_quarantine(
                key, record.ended, int(record.probation_from), () if pardon else bad, pardon
            )
        record.unsaved = ""
        record.ended = None
