"""Tasks: the newest tasks this console dispatched, newest first, and the running totals.

The table is bounded (``max_rows``) and redrawn as a diff keyed by task id: a row is only
touched when its record's ``rev`` changed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Static
from textual.widgets.data_table import RowKey

from ..state import DONE, FAILED, QUEUED, RETRYING, RUNNING, TaskCounters, TaskRecord, format_ms
from .live_table import LiveTable

COLUMNS: tuple[tuple[str, str], ...] = (
    ("seq", "#"),
    ("task", "Task"),
    ("model", "Model"),
    ("worker", "Worker"),
    ("state", "State"),
    ("latency", "Latency"),
    ("result", "Result"),
)
FIXED_WIDTHS = {"model": 8, "worker": 10, "state": 8, "latency": 9, "result": 14}
"""Columns whose cells change get a fixed width: a cell update then never re-measures the
column (with ``update_width=True`` DataTable measures every cell of it, per update). With the
seq and task columns all seven take 72 columns: the table spans the width under 120 columns
(app.tcss), so each shows at 80."""
STATE_STYLE = {
    QUEUED: "cyan",
    RUNNING: "bold blue",
    RETRYING: "bold yellow",
    DONE: "green",
    FAILED: "bold red",
}


def task_cells(record: TaskRecord, worker_name: Callable[[str], str]) -> tuple[Text | str, ...]:
    if record.state == DONE:
        result = Text(str(record.label) if record.label is not None else "ok", style="bold")
        if record.confidence is not None:
            result.append(f" {record.confidence:.0%}", style="dim")
        if record.expected is not None and record.label is not None:
            right = record.expected == record.label
            result.append(
                " ✓" if right else f" ✗ {record.expected}", style="green" if right else "red"
            )
    elif record.state == FAILED:
        result = Text(record.error[:60] or "failed", style="red")
    else:
        result = Text("")
    worker = (
        worker_name(record.worker)
        if record.worker
        else (f"→{worker_name(record.pin)}" if record.pin else "-")
    )
    state = record.state if record.state != RETRYING else f"retry {record.attempts}"
    return (
        str(record.seq),
        record.task_id[:8],
        record.model,
        worker,
        Text(state, style=STATE_STYLE.get(record.state, "")),
        Text(format_ms(record.latency_ms), justify="right"),
        result,
    )


def counters_text(counters: TaskCounters, active: dict[str, int], shown: int, kept: int) -> Text:
    """The totals in one line that fits 80 columns: queued, running and retries only when
    there are some (done and failed always); it wraps to a second line when it must."""
    text = Text(overflow="fold")
    text.append(f"{counters.submitted} dispatched", style="bold")
    running = active.get(RUNNING, 0) + active.get(RETRYING, 0)
    for label, value, style, always in (
        ("queued", active.get(QUEUED, 0), "cyan", False),
        ("running", running, "blue", False),
        ("done", counters.done, "green", True),
        ("failed", counters.failed, "red" if counters.failed else "dim", True),
        ("retries", counters.retries, "yellow", False),
    ):
        if value or always:
            text.append(" · ", style="dim")
            text.append(f"{value} {label}", style=style)
    if counters.judged:
        text.append(" · ", style="dim")
        text.append(f"{counters.correct / counters.judged:.1%} right")
    if kept > shown:
        text.append(f" · newest {shown} of {kept} shown", style="dim")
    return text


def same_cell(a: Text | str, b: Text | str) -> bool:
    """Equal text *and* style (``Text.__eq__`` ignores the base style)."""
    if isinstance(a, Text) and isinstance(b, Text):
        return a.plain == b.plain and str(a.style) == str(b.style) and a.spans == b.spans
    return a == b


class TasksPane(Vertical):
    """The task queue and its counters."""

    DEFAULT_CSS = """
    TasksPane > #task-counters {
        height: auto;
        max-height: 2;
        padding: 0 1;
    }
    """

    def __init__(self, *, max_rows: int = 100, id: str | None = None) -> None:
        super().__init__(id=id)
        self.max_rows = max_rows
        self._revs: dict[str, int] = {}
        self._cells: dict[str, tuple[Text | str, ...]] = {}
        self._counters: Text | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id="task-counters")
        yield LiveTable(id="task-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.border_title = "Tasks"
        table = self.table
        for key, label in COLUMNS:
            table.add_column(label, key=key, width=FIXED_WIDTHS.get(key))

    @property
    def table(self) -> LiveTable:
        return self.query_one("#task-table", LiveTable)

    def sync(
        self,
        records: Sequence[TaskRecord],
        worker_name: Callable[[str], str],
        counters: Text,
    ) -> None:
        """Show ``records`` (newest first, at most ``max_rows``), touching only changed rows."""
        table = self.table
        records = records[: self.max_rows]
        wanted = {r.task_id for r in records}
        departed = [k for k in self._revs if k not in wanted]
        for key in departed:
            del self._revs[key]
            self._cells.pop(key, None)
        if departed:
            table.remove_rows(departed)
        added = False
        for record in records:
            rev = self._revs.get(record.task_id)
            if rev == record.rev:
                continue
            cells = task_cells(record, worker_name)
            if rev is None:
                table.add_row(*cells, key=record.task_id)
                added = True
            else:
                before = self._cells[record.task_id]
                for (column, _), old, new in zip(COLUMNS, before, cells, strict=True):
                    if not same_cell(old, new):
                        table.update_cell(RowKey(record.task_id), column, new)
            self._revs[record.task_id] = record.rev
            self._cells[record.task_id] = cells
        if added:
            table.sort("seq", key=int, reverse=True)
        if counters != self._counters:
            self._counters = counters
            self.query_one("#task-counters", Static).update(counters)

    def row_keys(self) -> list[str]:
        return [str(row.key.value) for row in self.table.ordered_rows]
