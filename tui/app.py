"""The console: a Textual app hosting one netcore Node on the same asyncio loop.

Data flows one way. Node events enter through one bridge worker and become messages; their
handlers update the console's state (:mod:`tui.state`, :mod:`tui.peer_rows`); a timer redraws
the panes from that state as diffs, a few times a second, so a stream of tasks never floods
the UI. Calls go down: keys start tasks (:mod:`tui.dispatch`), each a tracked asyncio task
calling ``Node.submit`` behind a semaphore. ``p2pai console`` runs it (:mod:`tui.run`).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.css.query import NoMatches
from textual.screen import ModalScreen, Screen
from textual.timer import Timer
from textual.widgets import Footer

from netcore.observe.events import Event

from .actions import BURST, DISPATCH_ACTIONS, DispatchActions
from .dispatch import MAX_CONCURRENCY, VERIFY_REDUNDANCY, TaskRunner
from .jobs import ConsoleJobs, JobRefused, JobRequest, job_models
from .keys import QUIT, key_help, palette_entries
from .lifecycle import NodeLifecycle
from .local_peers import LocalPeers
from .log_handler import ConsoleLogHandler
from .messages import (
    EventTranslator,
    LogLine,
    NodeProblem,
    NodeStarted,
    PeerJoined,
    PeerLeft,
    PeerLiveness,
    PeerLoad,
    TaskRetried,
    TasksServed,
)
from .peer_rows import PeerRoster
from .samples import CannotFeed, FeedBook
from .screens import HelpScreen, JobFormScreen, ModelPickerScreen
from .state import HeaderInfo, LatencyWindow, NodeLike, PeerRow, TaskBook, advertised_models
from .status import peers_placeholder
from .stream import STREAM_TICK_S, TaskStream
from .widgets import HeaderBar, JobsPane, LatencyPane, LogsPane, PeersPane, TasksPane
from .widgets.latency import stats_text
from .widgets.tasks import counters_text

if TYPE_CHECKING:
    from netcore.tasks.verify import Verifier

__all__ = ["P2PConsole"]

log = logging.getLogger("p2pai.console")

DISPATCH_REDRAW_S = 0.15
"""A key press's tasks show when they are done, or this long after the press."""


class P2PConsole(DispatchActions, NodeLifecycle, App[int]):
    """Peers appear live; keys dispatch tasks; the node leaves gracefully on quit."""

    CSS_PATH = "app.tcss"
    HORIZONTAL_BREAKPOINTS = [(0, "-narrow"), (120, "-wide")]  # noqa: RUF012
    """Narrower than 120 columns the tasks table spans the width (see app.tcss). Not annotated
    ``ClassVar``: Textual declares it ``ClassVar[...] | None``, which mypy reads as an instance
    variable that a ClassVar may not override."""
    TITLE = "p2pai console"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "dispatch", "Dispatch"),
        Binding("b", "burst", "Burst"),
        Binding("r", "toggle_stream", "Stream"),
        Binding("m", "pick_model", "Model"),
        Binding("p", "toggle_pin", "Pin"),
        Binding("c", "clear_finished", "Clear"),
        Binding("v", "toggle_verify", "Verify"),
        Binding("j", "new_job", "Job"),
        Binding("l", "focus_logs", "Logs", show=False),  # in ? and the palette: 80 columns
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]
    KEY_HELP: ClassVar[list[tuple[str, str]]] = key_help(BURST, VERIFY_REDUNDANCY)

    def __init__(
        self,
        node: NodeLike,
        *,
        log_level: str = "info",
        log_format: str = "text",
        local_peers: LocalPeers | None = None,
        samples: tuple[np.ndarray, np.ndarray | None] | None = None,
        model: str = "digits",
        clock: Callable[[], float] = time.monotonic,
        seed: int | None = None,
        log_timestamps: bool = True,
        empty_after: float = 3.0,
        refresh_interval: float = 0.4,
        stream_rate: float = 100.0,
        max_concurrency: int = MAX_CONCURRENCY,
        handle_signals: bool = False,
    ) -> None:
        """``clock``, ``seed`` and ``log_timestamps`` exist so tests and snapshots are
        deterministic; ``handle_signals`` turns SIGTERM/SIGHUP into a graceful quit (only
        for the real terminal: tests share their loop)."""
        super().__init__()
        self.node = node
        self.local_peers = local_peers
        self.clock = clock
        self.model = model
        self.pinned: str | None = None
        self.streaming = False
        self.empty_after = empty_after
        self.refresh_interval = refresh_interval
        self.handle_signals = handle_signals
        self.book = TaskBook()
        self.latency = LatencyWindow()
        self.roster = PeerRoster()
        self.node_running = False
        self.node_failed: str | None = None
        self.status = "starting"
        self.served = 0
        self.tasks = TaskRunner(
            node,
            self.book,
            self.latency,
            clock,
            self.has_workers,
            max_concurrency=max_concurrency,
            seed=seed,
        )
        self.tasks.on_idle = self._tasks_idle
        self.tasks.worker_name = self.worker_name
        self.stream = TaskStream(stream_rate, clock, max_backlog=2 * max_concurrency)
        self.feeds = FeedBook(samples, given_for=model, seed=seed)
        self.jobs = ConsoleJobs(node)
        self._level = getattr(logging, log_level.upper(), logging.INFO)
        self._log_handler = ConsoleLogHandler(self, self._level, log_format)
        self._log_timestamps = log_timestamps
        self._stream_timer: Any = None
        self._redraw_timer: Timer | None = None
        self._started_at: float | None = None
        self._last_no_workers = -1e9
        self._latency_version = -1
        self._quitting = False
        self._exit_code = 0
        self._events: AsyncIterator[Event] | None = None

    @property
    def peer_rows(self) -> dict[str, PeerRow]:
        """The Peers table's rows by peer id."""
        return self.roster.rows

    @property
    def verify(self) -> bool:
        """Verified mode (v): each task on ``VERIFY_REDUNDANCY`` workers."""
        return self.tasks.verify

    @property
    def verifier(self) -> Verifier | None:
        return self.tasks.verifier

    # --- layout ----------------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield HeaderBar(id="header")
        with Vertical(id="body"):
            yield PeersPane(id="peers")
            with Horizontal(id="lower"):
                yield TasksPane(id="tasks")
                with Vertical(id="side"):
                    yield LatencyPane(id="latency")
                    yield LogsPane(id="logs", timestamps=self._log_timestamps)
            yield JobsPane(id="jobs")
        # Compact, without the palette's own entry (ctrl+p, listed by ?): every key fits in 80.
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.peers_pane = self.query_one(PeersPane)
        self.tasks_pane = self.query_one(TasksPane)
        self.latency_pane = self.query_one(LatencyPane)
        self.logs_pane = self.query_one(LogsPane)
        self.jobs_pane = self.query_one(JobsPane)
        self.header_bar = self.query_one(HeaderBar)
        self._log_handler.install()
        held = self.node.registry.names()
        if held and self.model not in held:
            self.model = held[0]
        # Subscribe before starting, so NodeReady and the first peers are not missed.
        self._events = self.node.events()
        self.bridge(self._events)
        self.set_interval(self.refresh_interval, self.refresh_panes)
        self._stream_timer = self.set_interval(STREAM_TICK_S, self.stream_tick, pause=True)
        if self.handle_signals:
            self.install_signal_handlers()
        self.peers_pane.table.focus()
        self.start_node()
        self.refresh_panes()

    async def on_unmount(self) -> None:
        # q leaves gracefully before exiting; any other way out (ctrl+q, the palette's quit,
        # an exception) still stops the node here, while the loop runs.
        if not self._quitting:
            self._quitting = True
            await self.shutdown_node()
        self._log_handler.uninstall()
        if self.handle_signals:
            self.remove_signal_handlers()

    # --- node events -----------------------------------------------------------------------

    @work(exclusive=True, group="bridge", exit_on_error=False)
    async def bridge(self, events: AsyncIterator[Event]) -> None:
        """The one place node events enter the UI: each becomes a message to the app."""
        translate = EventTranslator()
        async for event in events:
            try:
                message = translate(event)
            except Exception:  # one bad event must not stop the bridge
                log.exception("cannot show event %s", type(event).__name__)
                continue
            if message is not None:
                self.post_message(message)

    def on_node_started(self, message: NodeStarted) -> None:
        self.status = "running"
        self.refresh_panes()

    def on_node_problem(self, message: NodeProblem) -> None:
        self.notify(message.text, title="Node error", severity="error", timeout=10)

    def on_peer_joined(self, message: PeerJoined) -> None:
        self.roster.joined(message.peer_id, message.name, message.endpoint)
        self.book.promote_waiting()
        self.refresh_panes()

    def on_peer_left(self, message: PeerLeft) -> None:
        row = self.roster.left(message.peer_id, message.reason, self.clock())
        if self.pinned == message.peer_id:
            self.pinned = None
            name = row.name if row else message.peer_id[:8]
            self.notify(
                f"{name} left ({message.reason}): dispatch is no longer pinned", severity="warning"
            )
        self.refresh_panes()

    def on_peer_liveness(self, message: PeerLiveness) -> None:
        if self.roster.liveness(message.peer_id, message.alive):
            self.refresh_panes()

    def on_peer_load(self, message: PeerLoad) -> None:
        """Numbers are read from the peer table on the next tick: nothing to do per event."""

    def on_task_retried(self, message: TaskRetried) -> None:
        self.book.retry(message.task_id, message.worker)

    def on_tasks_served(self, message: TasksServed) -> None:
        self.served = message.ok + message.failed

    def on_log_line(self, message: LogLine) -> None:
        self.logs_pane.add_line(
            message.level, message.levelname, message.logger, message.text, message.created
        )

    # --- redraw ----------------------------------------------------------------------------

    def refresh_panes(self) -> None:
        """Redraw every pane from state, as diffs (the timer calls this a few times a second).

        A tick that lands while the app shuts down finds the panes' children gone (Textual
        removes them before the timers stop): nothing to draw then."""
        if not hasattr(self, "peers_pane"):
            return
        try:
            self._refresh_panes()
        except NoMatches:
            if self.is_running and not self._exit_requested():
                raise

    def _exit_requested(self) -> bool:
        return bool(getattr(self, "_exit", False)) or self._closing or self._closed

    def _refresh_panes(self) -> None:
        now = self.clock()
        self.roster.reconcile(self.node.peers, self._own_id(), now)
        placeholder = peers_placeholder(
            self.node,
            failed=self.node_failed,
            running=self.node_running,
            started_at=self._started_at,
            empty_after=self.empty_after,
            now=now,
        )
        self.peers_pane.sync(self.roster.views(self.node.peers, now, self.pinned), placeholder)
        active = self.book.active_counts()
        shown = self.book.newest(self.tasks_pane.max_rows)
        self.tasks_pane.sync(
            shown,
            self.worker_name,
            counters_text(self.book.counters, active, len(shown), len(self.book)),
        )
        samples = None
        if self.latency.version != self._latency_version:
            self._latency_version = self.latency.version
            samples = list(self.latency.samples)
        latency = self.latency
        p50, p99, rate = latency.percentile(50), latency.percentile(99), latency.rate(now)
        self.latency_pane.show(samples, stats_text(p50, p99, rate, len(latency.samples)))
        self.header_bar.show(self._header_info())
        self.jobs_pane.sync(self.jobs.entries)
        self.report_exited_local_peers()

    def redraw_soon(self) -> None:
        """Show what a key press dispatched once its tasks are done, or ``DISPATCH_REDRAW_S``
        after the press if they take longer.

        Drawing the screen takes the loop for tens of ms (the tables re-render every visible
        cell). Drawn at once after the press, it ran while the tasks were on the wire, and
        their replies waited for it: a single ``d`` measured 20-100 ms instead of ~2 ms, a
        burst's median 120 ms (profiled, see docs/benchmarks.md)."""
        if self._redraw_timer is None:
            self._redraw_timer = self.set_timer(DISPATCH_REDRAW_S, self._redraw_now)

    def _redraw_now(self) -> None:
        if self._redraw_timer is not None:
            self._redraw_timer.stop()
            self._redraw_timer = None
        self.refresh_panes()

    def _tasks_idle(self) -> None:
        if self._redraw_timer is not None:
            self._redraw_now()

    def _own_id(self) -> str:
        with contextlib.suppress(Exception):
            return self.node.peer_id
        return ""

    def live_peer_count(self) -> int:
        return self.roster.live_count()

    def worker_name(self, peer_id: str) -> str:
        return self.roster.name_of(peer_id, self._own_id())

    def _header_info(self) -> HeaderInfo:
        cfg = self.node.config
        running = self.node_running
        return HeaderInfo(
            name=cfg.name,
            peer_id=self._own_id() if running else "",
            endpoint=self.node.endpoint if running else "",
            network=cfg.network,
            peers=self.live_peer_count(),
            model=self.model,
            pinned=self.worker_name(self.pinned) if self.pinned else "",
            streaming=self.streaming,
            status=self.status,
            served=self.served,
            local=self.local_peers.count if self.local_peers else 0,
        )

    # --- keys ------------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Keys that dispatch do nothing while a modal (help, picker, error) is on top.
        return not (action in DISPATCH_ACTIONS and isinstance(self.screen, ModalScreen))

    async def wait_idle(self) -> None:
        """Wait until every dispatched task has its outcome (tests, and nothing else)."""
        await self.tasks.wait_idle()

    def action_pick_model(self) -> None:
        local = self.node.registry.names()
        remote = advertised_models(self.node.peers)
        unfed = {}
        for name in set(local) | set(remote):
            reason = self.feeds.reason(self.node, name)
            if reason is not None:
                unfed[name] = reason

        def chosen(name: str | None) -> None:
            if name and name != self.model:
                self.model = name
                try:
                    what = self.feeds.feed(self.node, name).source
                except CannotFeed as exc:
                    what = str(exc)
                self.notify(f"Dispatching model {name!r}: {what}")
                self.refresh_panes()

        self.push_screen(ModelPickerScreen(local, remote, self.model, unfed), chosen)

    def action_new_job(self) -> None:
        """j: the job form; the job it asks for runs on this node (tui.jobs)."""
        models = job_models(self.node.registry)

        def chosen(request: JobRequest | None) -> None:
            if request is None:
                return
            try:
                entry = self.jobs.start(request)
            except JobRefused as exc:
                self.notify(str(exc), severity="error")
                return
            total = entry.total if entry.total is not None else "?"
            self.notify(f"Job {entry.number}: {entry.model} on {total} inputs → {entry.output}")
            self.refresh_panes()

        self.push_screen(JobFormScreen(models, Path.cwd(), self.model), chosen)

    def action_focus_logs(self) -> None:
        self.logs_pane.focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.KEY_HELP))

    # --- command palette -------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        for entry in palette_entries(BURST, VERIFY_REDUNDANCY):
            yield SystemCommand(entry.title, entry.help, getattr(self, f"action_{entry.action}"))
        for command in super().get_system_commands(screen):
            if command.title == QUIT.title:
                yield SystemCommand(QUIT.title, QUIT.help, self.action_quit)
            else:
                yield command
