"""Latency: a sparkline of recent round trips with p50, p99 and tasks/s."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Sparkline, Static

from ..state import format_ms


def stats_text(p50: float | None, p99: float | None, rate: float, samples: int) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("p50 ", style="dim")
    text.append(format_ms(p50), style="bold")
    text.append("  p99 ", style="dim")
    text.append(format_ms(p99), style="bold")
    text.append("  ", style="dim")
    text.append(f"{rate:.1f}", style="bold")
    text.append(" tasks/s", style="dim")
    if not samples:
        text = Text("no tasks yet: press d", style="dim")
    return text


class LatencyPane(Vertical):
    """Redrawn on the console's refresh tick, only when a new sample arrived."""

    DEFAULT_CSS = """
    LatencyPane > Sparkline {
        height: 1fr;
        margin: 0 1;
    }
    LatencyPane > #latency-stats {
        height: 1;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._stats: Text | None = None

    def compose(self) -> ComposeResult:
        yield Sparkline([], id="latency-spark")
        yield Static(stats_text(None, None, 0.0, 0), id="latency-stats")

    def on_mount(self) -> None:
        self.border_title = "Latency"

    def show(self, samples: Sequence[float] | None, stats: Text) -> None:
        """``samples`` is None when they did not change since the last call."""
        if samples is not None:
            self.query_one(Sparkline).data = list(samples)
        if stats != self._stats or (self._stats is not None and stats.style != self._stats.style):
            self._stats = stats
            self.query_one("#latency-stats", Static).update(stats)
