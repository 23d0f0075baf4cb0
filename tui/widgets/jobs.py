"""Jobs: one row per job the console runs (key j), with its progress bar, rate, ETA, failures
and output file. Hidden until the first job; a row is redrawn only when its job moved."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical

from ..jobs import DONE, FAILED, PARTLY, RUNNING, STOPPED, JobEntry
from .live_table import LiveTable

COLUMNS: tuple[tuple[str, str, int | None], ...] = (
    ("job", "#", 3),
    ("model", "Model", 8),
    ("progress", "Progress", 22),
    ("rate", "Rate", 8),
    ("eta", "ETA", 6),
    ("failed", "Failed", 6),
    ("output", "Output", None),
)
BAR = 10
STATE_STYLE = {
    RUNNING: "bold blue",
    DONE: "green",
    PARTLY: "yellow",
    STOPPED: "dim",
    FAILED: "bold red",
}


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    seconds = int(seconds)
    return f"{seconds // 60}:{seconds % 60:02d}" if seconds < 3600 else f"{seconds // 3600}h"


def bar(done: int, total: int | None) -> Text:
    """``█████░░░░░ 512/1000``: a bar of BAR cells and the count."""
    text = Text()
    if total:
        filled = min(BAR, round(BAR * done / total))
        text.append("█" * filled, style="green")
        text.append("░" * (BAR - filled), style="dim")
        text.append(f" {done}/{total}")
    else:
        text.append(f"{done} done")
    return text


def job_cells(entry: JobEntry) -> tuple[Text | str, ...]:
    p = entry.progress
    if entry.state == RUNNING:
        progress = bar(entry.done, entry.total)
        rate = f"{p.rate:,.0f}/s" if p is not None and p.rate else "-"
        eta = clock(p.eta_s) if p is not None else "-"
    else:
        progress = Text(entry.state if not entry.error else entry.error[:40],
                        style=STATE_STYLE.get(entry.state, ""))  # fmt: skip
        if entry.state != FAILED:
            progress.append(f" {entry.done}/{entry.total if entry.total is not None else '?'}")
        rate = f"{entry.done / p.elapsed_s:,.0f}/s" if p is not None and p.elapsed_s > 0 else "-"
        eta = "-"
    failed = Text(str(entry.failed), style="red" if entry.failed else "dim")
    return (str(entry.number), entry.model, progress, rate, eta, failed, str(entry.output))


class JobsPane(Vertical):
    """The console's jobs."""

    DEFAULT_CSS = """
    JobsPane {
        height: auto;
        max-height: 8;
        display: none;
    }
    JobsPane.-has-jobs {
        display: block;
    }
    JobsPane > #job-table {
        height: auto;
        max-height: 6;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._revs: dict[int, int] = {}

    def compose(self) -> ComposeResult:
        yield LiveTable(id="job-table", cursor_type="row", zebra_stripes=True)

    def on_mount(self) -> None:
        self.border_title = "Jobs"
        for key, label, width in COLUMNS:
            self.table.add_column(label, key=key, width=width)

    @property
    def table(self) -> LiveTable:
        return self.query_one("#job-table", LiveTable)

    def sync(self, entries: Sequence[JobEntry]) -> None:
        """Rows for ``entries`` (oldest first); only the jobs that moved are redrawn."""
        self.set_class(bool(entries), "-has-jobs")
        table = self.table
        for entry in entries:
            key = str(entry.number)
            if self._revs.get(entry.number) == entry.rev:
                continue
            cells = job_cells(entry)
            if entry.number not in self._revs:
                table.add_row(*cells, key=key)
            else:
                for (column, _, _), cell in zip(COLUMNS, cells, strict=True):
                    table.update_cell(key, column, cell)
            self._revs[entry.number] = entry.rev
        running = sum(1 for e in entries if e.state == RUNNING)
        self.border_subtitle = f"{running} running" if running else ""
