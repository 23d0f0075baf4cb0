"""Logs: the node's log lines, bounded."""

from __future__ import annotations

import logging
import time

from rich.text import Text
from textual.widgets import RichLog

LEVEL_STYLE = {
    logging.DEBUG: "dim",
    logging.INFO: "",
    logging.WARNING: "yellow",
    logging.ERROR: "bold red",
    logging.CRITICAL: "bold white on red",
}


class LogsPane(RichLog):
    """A RichLog with ``max_lines``; ``timestamps=False`` keeps snapshots free of clocks."""

    def __init__(
        self, *, max_lines: int = 1000, timestamps: bool = True, id: str | None = None
    ) -> None:
        super().__init__(
            max_lines=max_lines, min_width=20, wrap=True, markup=False, highlight=False, id=id
        )
        self.timestamps = timestamps
        self.lines_written = 0

    def on_mount(self) -> None:
        self.border_title = "Logs"

    def add_line(self, level: int, levelname: str, logger: str, text: str, created: float) -> None:
        if not logger:  # formatted already (--log-format json): shown as it is
            self.write(Text(text, style=LEVEL_STYLE.get(level, "")))
            self.lines_written += 1
            return
        line = Text(no_wrap=False)
        if self.timestamps:
            line.append(time.strftime("%H:%M:%S ", time.localtime(created)), style="dim")
        style = LEVEL_STYLE.get(level, "")
        if level >= logging.WARNING:
            line.append(f"{levelname.lower()} ", style=style)
        line.append(logger.removeprefix("p2pai.") + " ", style="dim cyan")
        line.append(text, style=style if level >= logging.WARNING else "")
        self.write(line)
        self.lines_written += 1
