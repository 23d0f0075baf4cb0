"""The dispatch keys: one task (d), a burst (b), a stream (r), a pinned peer (p), verified
mode (v), clearing finished tasks (c).

:class:`DispatchActions` is mixed into the App, because Textual runs a binding's action as a
method of the App; it says what it needs of the App in :class:`DispatchHost`. The tasks
themselves run in :class:`tui.dispatch.TaskRunner`: these actions decide what to start and
tell the user what happened.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from .dispatch import MIN_VERIFY_REDUNDANCY, VERIFY_REDUNDANCY
from .samples import CannotFeed
from .state import GONE

if TYPE_CHECKING:
    import numpy as np
    from textual.notifications import SeverityLevel

    from .dispatch import TaskRunner
    from .samples import FeedBook
    from .state import NodeLike, PeerRow, TaskBook
    from .stream import TaskStream
    from .widgets import PeersPane

log = logging.getLogger("p2pai.console")

BURST = 100
"""Tasks one press of b dispatches."""
NO_WORKERS_NOTICE_S = 5.0
"""At most one "no workers yet" notice this often."""
DISPATCH_ACTIONS = frozenset(
    {"dispatch", "burst", "toggle_stream", "pick_model", "toggle_pin", "clear_finished"}
)
"""Actions that do nothing while a modal screen (help, model picker, error) is on top."""


class DispatchHost(Protocol):
    """What the dispatch keys read and change in the App."""

    node: NodeLike
    tasks: TaskRunner
    stream: TaskStream
    book: TaskBook
    clock: Callable[[], float]
    model: str
    pinned: str | None
    streaming: bool
    node_running: bool
    node_failed: str | None
    peers_pane: PeersPane
    feeds: FeedBook
    _last_no_workers: float
    _stream_timer: Any

    @property
    def peer_rows(self) -> dict[str, PeerRow]: ...

    def notify(
        self,
        message: str,
        *,
        title: str = ...,
        severity: SeverityLevel = ...,
        timeout: float | None = ...,
    ) -> None: ...

    def refresh_panes(self) -> None: ...

    def redraw_soon(self) -> None: ...

    def worker_name(self, peer_id: str) -> str: ...

    def samples(self) -> tuple[np.ndarray, np.ndarray | None] | None: ...

    def dispatch(self, count: int, redraw: bool = True) -> int: ...

    def has_workers(self) -> bool: ...

    def fit_verify(self, announce: bool) -> bool: ...


class DispatchActions:
    """The dispatch keys' actions, and ``dispatch`` itself."""

    # What these actions change (the App sets them first, in its __init__).
    pinned: str | None
    streaming: bool
    _last_no_workers: float

    def samples(self: DispatchHost) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The samples the current model's tasks pick from (see :mod:`tui.samples`)."""
        try:
            feed = self.feeds.feed(self.node, self.model)
        except CannotFeed as exc:
            self.notify(f"Cannot feed {self.model!r}: {exc}", title="No samples", severity="error")
            return None
        return feed.x, feed.y

    def dispatch(self: DispatchHost, count: int, redraw: bool = True) -> int:
        """Queue ``count`` tasks with random held-out samples; returns how many.

        ``redraw`` shows them soon (a key press: see ``P2PConsole.redraw_soon``); the stream
        leaves it to the next tick.
        """
        if not self.node_running:
            why = self.node_failed or "it is still starting"
            self.notify(f"The node is not running: {why}", severity="warning")
            return 0
        loaded = self.samples()
        if loaded is None:
            return 0
        if self.tasks.verify and not self.fit_verify(announce=False):
            return 0
        if not self.has_workers():
            now = self.clock()
            if now - self._last_no_workers > NO_WORKERS_NOTICE_S:
                self._last_no_workers = now
                target = f"pinned peer {self.worker_name(self.pinned)}" if self.pinned else "peer"
                self.notify(
                    f"No workers yet for {self.model!r}: tasks stay queued and run when a "
                    f"{target} appears (each waits up to its deadline).",
                    title="No workers yet",
                    severity="warning",
                )
        self.tasks.dispatch_samples(count, loaded, self.model, self.pinned)
        if redraw:
            self.redraw_soon()
        return count

    def fit_verify(self: DispatchHost, announce: bool) -> bool:
        """Size verified mode to the workers there are now; False (and says why) when fewer
        than two: a task checked by one worker is not verified. A reduced redundancy is
        logged when ``announce`` (v pressed) or when it changed since the last task."""
        before = self.tasks.redundancy
        workers = self.tasks.verify_workers(self.model)
        redundancy = self.tasks.fit_redundancy(workers)
        if redundancy is None:
            self.notify(
                f"Verified mode (v) needs {MIN_VERIFY_REDUNDANCY} workers with model "
                f"{self.model!r}; {workers} usable now",
                title="Too few workers",
                severity="warning",
            )
            return False
        if redundancy < VERIFY_REDUNDANCY and (announce or redundancy != before):
            log.warning(
                "verified mode: redundancy %d, not %d: only %d workers hold %r (all must agree)",
                redundancy,
                VERIFY_REDUNDANCY,
                workers,
                self.model,
            )
        elif redundancy != before and not announce:
            log.info("verified mode: redundancy %d again (%d workers)", redundancy, workers)
        return True

    def has_workers(self: DispatchHost) -> bool:
        """A worker can take tasks for the current model (and the pinned peer, if any)."""
        workers = self.node.usable_peers(model=self.model)
        if self.pinned is not None:
            workers = [p for p in workers if p.peer_id == self.pinned]
        return bool(workers)

    def stream_tick(self: DispatchHost) -> None:
        """The stream's timer: start the tasks due since the last tick."""
        if self.streaming and self.node_running:
            count = self.stream.due(self.tasks.in_flight)
            if count:
                self.dispatch(count, redraw=False)

    def action_dispatch(self: DispatchHost) -> None:
        self.dispatch(1)

    def action_burst(self: DispatchHost) -> None:
        self.dispatch(BURST)

    def action_toggle_stream(self: DispatchHost) -> None:
        if not self.streaming and not self.node_running:
            self.notify("The node is not running", severity="warning")
            return
        self.streaming = not self.streaming
        if self.streaming:
            self.stream.restart()
            self._stream_timer.resume()
            self.notify(f"Streaming {self.stream.rate:g} tasks/s (r stops)")
        else:
            self._stream_timer.pause()
            self.notify("Stream stopped")
        self.refresh_panes()

    def action_toggle_pin(self: DispatchHost) -> None:
        if self.pinned is not None:
            name = self.worker_name(self.pinned)
            self.pinned = None
            self.notify(f"Unpinned from {name}: any worker again")
        else:
            selected = self.peers_pane.selected_peer
            row = self.peer_rows.get(selected) if selected else None
            if row is None or row.state == GONE:
                self.notify("Select a peer in the Peers table first", severity="warning")
                return
            self.pinned = row.peer_id
            self.notify(f"Dispatch pinned to {row.name or row.peer_id[:8]} (p again unpins)")
        self.refresh_panes()

    def action_toggle_verify(self: DispatchHost) -> None:
        if not self.tasks.can_verify():
            self.notify("Verified mode needs a running node", severity="warning")
        elif self.tasks.verify:
            self.tasks.toggle_verify()
            self.notify("Verified mode off: one worker per task")
            self.refresh_panes()
        elif self.fit_verify(announce=True):
            self.tasks.toggle_verify()
            k = self.tasks.redundancy
            rule = "the majority label wins" if k > 2 else "both must give the same label"
            fewer = f" (only {k} workers: not {VERIFY_REDUNDANCY})" if k < VERIFY_REDUNDANCY else ""
            self.notify(
                f"Verified mode: each task runs on {k} distinct workers{fewer} and {rule} "
                "(v again stops; pins are ignored)"
            )
            self.refresh_panes()

    def action_clear_finished(self: DispatchHost) -> None:
        cleared = self.book.clear_finished()
        self.refresh_panes()
        self.notify(f"Cleared {cleared} finished task(s)")
