"""The steady stream of tasks (key r): how many are due at each tick of its timer."""

from __future__ import annotations

from collections.abc import Callable

STREAM_TICK_S = 0.1
"""How often the stream's timer ticks."""


class TaskStream:
    """``rate`` tasks a second, credited by elapsed time rather than per tick, so a late tick
    (a busy redraw) still keeps the rate; never more than ``max_backlog`` tasks in flight."""

    def __init__(self, rate: float, clock: Callable[[], float], max_backlog: int) -> None:
        self.rate = rate
        self.clock = clock
        self.max_backlog = max_backlog
        self._credit = 0.0
        self._last = 0.0

    def restart(self) -> None:
        """Forget the credit of an earlier stream."""
        self._credit = 0.0
        self._last = 0.0

    def due(self, in_flight: int) -> int:
        """Tasks to start at this tick, given how many are in flight already."""
        # Back-pressure: never more than the backlog waiting for a slot.
        if in_flight >= self.max_backlog:
            self._credit = 0.0
            return 0
        now = self.clock()
        elapsed = min(0.5, max(0.0, now - self._last)) if self._last else STREAM_TICK_S
        self._last = now
        self._credit += self.rate * elapsed
        count = int(self._credit)
        self._credit -= count
        return count
