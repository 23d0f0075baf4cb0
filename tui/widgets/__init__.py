"""The console's panes, one widget per module."""

from __future__ import annotations

from .header import HeaderBar
from .jobs import JobsPane
from .latency import LatencyPane
from .logs import LogsPane
from .peers import PeersPane
from .tasks import TasksPane

__all__ = ["HeaderBar", "JobsPane", "LatencyPane", "LogsPane", "PeersPane", "TasksPane"]
