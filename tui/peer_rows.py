"""The Peers table's rows: what the console knows of each peer between redraws.

Rows follow the node's events (joined, left, liveness) and, at each redraw, the peer table
itself: a peer seen there before its event gets a row, one that vanished without an event is
marked gone, and a departed peer stays greyed out for ``PEER_LINGER_S`` before its row goes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .state import ALIVE, CONNECTING, EVASIVE, GONE, PeerRow, peer_view

if TYPE_CHECKING:
    from netcore.net.peers import PeerTable

    from .state import PeerView

PEER_LINGER_S = 2.0
"""A departed peer stays greyed out this long before its row goes."""


class PeerRoster:
    """Rows by peer id, in the order the peers were first seen."""

    def __init__(self) -> None:
        self.rows: dict[str, PeerRow] = {}

    def joined(self, peer_id: str, name: str, endpoint: str) -> None:
        row = self.rows.get(peer_id)
        if row is None:
            self.rows[peer_id] = PeerRow(peer_id, name, endpoint)
        else:
            row.name, row.endpoint = name or row.name, endpoint or row.endpoint
            row.state, row.reason, row.gone_at = ALIVE, "", None

    def left(self, peer_id: str, reason: str, now: float) -> PeerRow | None:
        """Grey the peer's row out; returns the row, if it had one."""
        row = self.rows.get(peer_id)
        if row is not None and row.state != GONE:
            row.state, row.reason, row.gone_at = GONE, reason, now
        return row

    def liveness(self, peer_id: str, alive: bool) -> bool:
        """Mark a present peer alive or evasive; returns whether a row changed."""
        row = self.rows.get(peer_id)
        if row is None or row.state == GONE:
            return False
        row.state = ALIVE if alive else EVASIVE
        return True

    def reconcile(self, table: PeerTable, own_id: str, now: float) -> None:
        """Follow the peer table: rows for peers not yet announced, and for ones that vanished
        without an event; drop departed rows after they lingered greyed out."""
        for known in table:
            if known.peer_id not in self.rows and known.peer_id != own_id:
                self.rows[known.peer_id] = PeerRow(
                    known.peer_id,
                    known.name,
                    known.endpoint,
                    state=ALIVE if known.greeted else CONNECTING,
                )
        for peer_id, row in list(self.rows.items()):
            peer = table.get(peer_id)
            if row.state == GONE:
                if row.gone_at is not None and now - row.gone_at >= PEER_LINGER_S:
                    del self.rows[peer_id]
                continue
            if peer is None:
                row.state, row.reason, row.gone_at = GONE, "gone", now
                continue
            if peer.name and row.name != peer.name:
                row.name = peer.name  # from the authenticated hello, which may come after the row
            if row.state == CONNECTING and peer.greeted:
                row.state = ALIVE
            elif row.state in (ALIVE, EVASIVE):
                row.state = EVASIVE if peer.state.value == EVASIVE else ALIVE

    def views(self, table: PeerTable, now: float, pinned: str | None) -> list[PeerView]:
        """What the Peers pane shows of each row, with the peer table's live numbers."""
        return [
            peer_view(row, table.get(row.peer_id), now, row.peer_id == pinned)
            for row in self.rows.values()
        ]

    def live_count(self) -> int:
        return sum(1 for row in self.rows.values() if row.state != GONE)

    def name_of(self, peer_id: str, own_id: str) -> str:
        """A worker's name as the tables show it: its node name, "self", or its id's start."""
        row = self.rows.get(peer_id)
        if row is not None and row.name:
            return row.name
        if peer_id and peer_id == own_id:
            return "self"
        return peer_id[:8]
