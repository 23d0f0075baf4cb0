"""Peers: one DataTable row per peer, keyed by peer id, updated cell by cell.

When there are no peers for a while the table gives way to a text that says so and what to
check, rather than an empty box.
"""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static
from textual.widgets.data_table import CellDoesNotExist, RowKey

from ..state import ALIVE, CONNECTING, EVASIVE, GONE, QUARANTINED, PeerView
from .live_table import LiveTable

COLUMNS: tuple[tuple[str, str], ...] = (
    ("name", "Name"),
    ("endpoint", "Endpoint"),
    ("state", "State"),
    ("rtt", "RTT ms"),
    ("load", "Load"),
    ("done", "Done"),
    ("success", "OK %"),
    ("score", "Score"),
    ("uptime", "Up"),
)
FIXED_WIDTHS = {
    "state": 12, "rtt": 7, "load": 6, "done": 6, "success": 5, "score": 6, "uptime": 7
}  # fmt: skip
"""Columns that change often have fixed widths, so updating a cell never re-measures them.
Each width counts the one space that separates a column from the one before it: the table
has no cell padding (two spaces a column), so all nine columns fit in 80 terminal columns."""
GAP = " "
RIGHT = frozenset({"rtt", "load", "done", "success", "score", "uptime"})

STATE_STYLE = {
    ALIVE: "bold green",
    EVASIVE: "bold yellow",
    CONNECTING: "cyan",
    GONE: "grey50",
    QUARANTINED: "bold red",
}
ROW_STYLE = {EVASIVE: "yellow", GONE: "grey50 strike", QUARANTINED: "red"}
"""Whole-row styles: an evasive peer is tinted, a quarantined one red, a departed one greyed
out until it goes."""

Cell = tuple[str, str]
"""(text, style) of one cell: what the diff compares."""


def peer_cells(view: PeerView) -> dict[str, Cell]:
    row_style = ROW_STYLE.get(view.state, "")
    name_style = "bold magenta" if view.pinned and view.state != GONE else row_style
    cells: dict[str, Cell] = {
        "name": (f"{view.name} ◆" if view.pinned else view.name, name_style),
        "endpoint": (view.endpoint.removeprefix("tcp://"), row_style),
        "state": (view.state_text, STATE_STYLE.get(view.state, "")),
        "rtt": (view.rtt, row_style),
        "load": (view.load, row_style),
        "done": (view.done, row_style),
        "success": (view.success, row_style),
        "score": (view.score, row_style),
        "uptime": (view.uptime, row_style),
    }
    return cells


def to_text(column: str, cell: Cell) -> Text:
    text = Text(GAP, end="")
    text.append(cell[0], style=cell[1])
    text.justify = "right" if column in RIGHT else "left"
    return text


class PeersPane(Vertical):
    """The peers table and its empty-state text."""

    DEFAULT_CSS = """
    PeersPane > #peers-empty {
        padding: 0 1;
        color: $text-muted;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._shown: dict[str, dict[str, Cell]] = {}
        self._empty_text: str | None = None

    def compose(self) -> ComposeResult:
        yield LiveTable(id="peer-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="peers-empty")

    def on_mount(self) -> None:
        self.border_title = "Peers"
        table = self.table
        table.cell_padding = 0
        for key, label in COLUMNS:
            table.add_column(
                Text(GAP + label, justify="right" if key in RIGHT else "left"),
                key=key,
                width=FIXED_WIDTHS.get(key),
            )
        self.query_one("#peers-empty", Static).display = False

    @property
    def table(self) -> DataTable[Text]:
        return self.query_one("#peer-table", DataTable)

    @property
    def selected_peer(self) -> str | None:
        """The peer id under the table's cursor, if any."""
        table = self.table
        if table.row_count == 0:
            return None
        try:
            row_key, _ = table.coordinate_to_cell_key(table.cursor_coordinate)
        except CellDoesNotExist:
            return None
        return row_key.value

    def row_keys(self) -> list[str]:
        return [str(row.key.value) for row in self.table.ordered_rows]

    def sync(self, views: Sequence[PeerView], empty_text: str | None = None) -> None:
        """Make the table show ``views``: add, remove and update only what changed."""
        table = self.table
        wanted = {view.key: view for view in views}
        for key in [k for k in self._shown if k not in wanted]:
            del self._shown[key]
            table.remove_row(key)
        for view in views:
            cells = peer_cells(view)
            before = self._shown.get(view.key)
            if before is None:
                table.add_row(*(to_text(c, cells[c]) for c, _ in COLUMNS), key=view.key)
            else:
                for column, _ in COLUMNS:
                    if before[column] != cells[column]:
                        table.update_cell(
                            RowKey(view.key),
                            column,
                            to_text(column, cells[column]),
                            # Only name and endpoint are measured (they rarely change).
                            update_width=column in ("name", "endpoint"),
                        )
            self._shown[view.key] = cells
        self._show_empty(empty_text if not views else None)

    def _show_empty(self, text: str | None) -> None:
        if text == self._empty_text:
            return
        self._empty_text = text
        empty = self.query_one("#peers-empty", Static)
        if text is None:
            empty.display = False
            self.table.display = True
        else:
            empty.update(text)
            empty.display = True
            self.table.display = False

    @property
    def empty_text(self) -> str | None:
        return self._empty_text

    def cell(self, peer_id: str, column: str) -> Cell | None:
        """What a cell shows (for tests and the help text)."""
        row = self._shown.get(peer_id)
        return row[column] if row else None
