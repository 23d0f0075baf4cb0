"""The console: a Textual app hosting one netcore Node on the same asyncio loop.

Data flows one way. Node events enter through one bridge worker and become messages; their
handlers update the console's state (:mod:`tui.state`); a timer redraws the panes from that
state as diffs, a few times a second, so a stream of tasks never floods the UI. Calls go down:
keys call ``Node.submit``, each as a tracked asyncio task behind a semaphore.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import random
import secrets
import signal
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from textual import work
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen, Screen
from textual.widgets import Footer

from netcore.config.settings import Config
from netcore.models.registry import ModelError, load_samples
from netcore.observe.events import Event

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
from .screens import HelpScreen, ModelPickerScreen, NodeErrorScreen
from .state import (
    ALIVE,
    CONNECTING,
    EVASIVE,
    GONE,
    HeaderInfo,
    LatencyWindow,
    NodeLike,
    PeerRow,
    TaskBook,
    TaskRecord,
    advertised_models,
    no_peers_text,
    peer_view,
)
from .widgets import HeaderBar, LatencyPane, LogsPane, PeersPane, TasksPane
from .widgets.latency import stats_text
from .widgets.tasks import counters_text

if TYPE_CHECKING:
    from netcore.tasks.journal import Journal

log = logging.getLogger("p2pai.console")

BURST = 100
VERIFY_REDUNDANCY = 3
"""Workers per task in verified mode (v): the majority label wins (netcore.tasks.verify)."""
MAX_CONCURRENCY = 64
"""Tasks inside ``Node.submit`` at once; the rest wait for a slot, shown as queued."""
STREAM_TICK_S = 0.1
PEER_LINGER_S = 2.0
"""A departed peer stays greyed out this long before its row goes."""
NO_WORKERS_NOTICE_S = 5.0
DISPATCH_ACTIONS = frozenset(
    {"dispatch", "burst", "toggle_stream", "pick_model", "toggle_pin", "clear_finished"}
)


class P2PConsole(App[int]):
    """Peers appear live; keys dispatch tasks; the node leaves gracefully on quit."""

    CSS_PATH = "app.tcss"
    TITLE = "p2pai console"
    ENABLE_COMMAND_PALETTE = True

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("d", "dispatch", "Dispatch"),
        Binding("b", "burst", f"Burst {BURST}"),
        Binding("r", "toggle_stream", "Stream"),
        Binding("m", "pick_model", "Model"),
        Binding("p", "toggle_pin", "Pin peer"),
        Binding("c", "clear_finished", "Clear"),
        Binding("v", "toggle_verify", "Verify", show=False),
        Binding("l", "focus_logs", "Logs"),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("q", "quit", "Quit"),
    ]
    KEY_HELP: ClassVar[list[tuple[str, str]]] = [
        ("d", "dispatch one task: a random held-out digit to a worker"),
        ("b", f"dispatch a burst of {BURST} tasks"),
        ("r", "start or stop a steady stream of tasks"),
        ("m", "pick the model (held here or advertised by peers)"),
        ("p", "pin dispatch to the peer selected in the Peers table (again to unpin)"),
        ("c", "clear finished tasks from the table (totals stay)"),
        ("v", f"verified mode: each task on {VERIFY_REDUNDANCY} workers, majority label wins"),
        ("l", "focus the logs (scroll them with the arrows)"),
        ("tab", "move focus between the tables and the logs"),
        ("?", "this help"),
        ("q", "quit: leave the network gracefully (peers see a goodbye at once)"),
    ]

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
        self.rng = random.Random(seed)
        self.model = model
        self.pinned: str | None = None
        self.streaming = False
        self.empty_after = empty_after
        self.refresh_interval = refresh_interval
        self.stream_rate = stream_rate
        self.handle_signals = handle_signals
        self.book = TaskBook()
        self.latency = LatencyWindow()
        self.peer_rows: dict[str, PeerRow] = {}
        self.node_running = False
        self.node_failed: str | None = None
        self.status = "starting"
        self.served = 0
        self._samples = samples
        self._level = getattr(logging, log_level.upper(), logging.INFO)
        self._log_handler = ConsoleLogHandler(self, self._level, log_format)
        self._log_timestamps = log_timestamps
        self._slots = asyncio.Semaphore(max_concurrency)
        self._max_concurrency = max_concurrency
        self._dispatch: set[asyncio.Task[None]] = set()
        self.journal: Journal | None = None
        """This console's task journal (netcore.tasks.journal), once the node runs."""
        self._journal_run: str | None = None
        self._stream_credit = 0.0
        self._stream_last = 0.0
        self._stream_timer: Any = None
        self._started_at: float | None = None
        self._last_no_workers = -1e9
        self._latency_version = -1
        self._quitting = False
        self._exit_code = 0
        self._events: AsyncIterator[Event] | None = None
        self.verify = False
        self.verifier: Any = None

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
        yield Footer()

    def on_mount(self) -> None:
        self.peers_pane = self.query_one(PeersPane)
        self.tasks_pane = self.query_one(TasksPane)
        self.latency_pane = self.query_one(LatencyPane)
        self.logs_pane = self.query_one(LogsPane)
        self.header_bar = self.query_one(HeaderBar)
        self._log_handler.install()
        held = self.node.registry.names()
        if held and self.model not in held:
            self.model = held[0]
        # Subscribe before starting, so NodeReady and the first peers are not missed.
        self._events = self.node.events()
        self.bridge(self._events)
        self.set_interval(self.refresh_interval, self.refresh_panes)
        self._stream_timer = self.set_interval(STREAM_TICK_S, self._stream_tick, pause=True)
        if self.handle_signals:
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGTERM, signal.SIGHUP):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal)
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
            with contextlib.suppress(Exception):
                loop = asyncio.get_running_loop()
                for sig in (signal.SIGTERM, signal.SIGHUP):
                    loop.remove_signal_handler(sig)

    def _on_signal(self) -> None:
        self.call_later(self.action_quit)

    # --- the node --------------------------------------------------------------------------

    @work(group="node", exit_on_error=False)
    async def start_node(self) -> None:
        from netcore.node import NodeStartError

        try:
            await self.node.start()
        except NodeStartError as exc:
            self._node_failed(str(exc))
            return
        except Exception as exc:  # an unexpected failure is still one line, not a traceback
            self._node_failed(f"{type(exc).__name__}: {exc}")
            return
        self.node_running = True
        self.status = "running"
        self._started_at = self.clock()
        self._open_journal()
        if self.local_peers is not None:
            log.info(
                "%d local peer(s) on network %r, pids %s",
                self.local_peers.count,
                self.node.config.network,
                ", ".join(map(str, self.local_peers.pids)),
            )
        self.refresh_panes()

    def _open_journal(self) -> None:
        """Journal this console's tasks (netcore.tasks.journal) and finish those a previous console
        left unfinished (it was killed): each outcome then still arrives, once."""
        config = getattr(self.node, "config", None)
        if config is None or not Path(config.data_dir).is_dir():
            return  # not a real node (the node creates its data dir when it starts)
        from netcore.tasks.journal import Journal, JournalError
        from netcore.tasks.resume import interrupted_runs

        try:
            self.journal = Journal(config.data_dir)
            stale = interrupted_runs(self.journal)
        except JournalError as exc:
            log.warning("tasks are not journaled: %s", exc)
            self.journal = None
            return
        pending = [(run, entry) for run in stale for entry in self.journal.pending(run.run_id)]
        for run in stale:
            self.journal.claim(run.run_id)
        if pending:
            log.info("resuming %d task(s) a previous console left unfinished", len(pending))
            self.notify(f"Resuming {len(pending)} unfinished task(s) from the last session")
        for run, entry in pending:
            record = self.book.add(entry.task_id, entry.model, expected=entry.expected)
            record.journaled = run.run_id
            sample = next(iter(entry.inputs.values()))
            task = asyncio.get_running_loop().create_task(self._run_task(record, sample))
            self._dispatch.add(task)
            task.add_done_callback(self._dispatch.discard)

    def _node_failed(self, reason: str) -> None:
        self.node_failed = reason
        self.status = "failed"
        self._exit_code = 1
        log.error("the node cannot start: %s", reason)
        self.notify(reason, title="The node cannot start", severity="error", timeout=30)
        self.push_screen(NodeErrorScreen("The node cannot start", reason))
        self.refresh_panes()

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
        row = self.peer_rows.get(message.peer_id)
        if row is None:
            self.peer_rows[message.peer_id] = PeerRow(
                message.peer_id, message.name, message.endpoint
            )
        else:
            row.name, row.endpoint = message.name or row.name, message.endpoint or row.endpoint
            row.state, row.reason, row.gone_at = ALIVE, "", None
        self.book.promote_waiting()
        self.refresh_panes()

    def on_peer_left(self, message: PeerLeft) -> None:
        row = self.peer_rows.get(message.peer_id)
        if row is not None and row.state != GONE:
            row.state, row.reason, row.gone_at = GONE, message.reason, self.clock()
        if self.pinned == message.peer_id:
            self.pinned = None
            name = row.name if row else message.peer_id[:8]
            self.notify(
                f"{name} left ({message.reason}): dispatch is no longer pinned", severity="warning"
            )
        self.refresh_panes()

    def on_peer_liveness(self, message: PeerLiveness) -> None:
        row = self.peer_rows.get(message.peer_id)
        if row is not None and row.state != GONE:
            row.state = ALIVE if message.alive else EVASIVE
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
        """Redraw every pane from state, as diffs (the timer calls this a few times a second)."""
        if not hasattr(self, "peers_pane"):
            return
        now = self.clock()
        self._reconcile_peers(now)
        pinned = self.pinned
        views = [
            peer_view(row, self.node.peers.get(row.peer_id), now, row.peer_id == pinned)
            for row in self.peer_rows.values()
        ]
        self.peers_pane.sync(views, self._empty_text(now))
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
        self.latency_pane.show(
            samples,
            stats_text(
                self.latency.percentile(50),
                self.latency.percentile(99),
                self.latency.rate(now),
                len(self.latency.samples),
            ),
        )
        self.header_bar.show(self._header_info())
        self._check_local_peers()

    def _reconcile_peers(self, now: float) -> None:
        """Follow the peer table: rows for peers not yet announced, and for ones that vanished
        without an event; drop departed rows after they lingered greyed out."""
        table = self.node.peers
        for known in table:
            if known.peer_id not in self.peer_rows and known.peer_id != self._own_id():
                self.peer_rows[known.peer_id] = PeerRow(
                    known.peer_id,
                    known.name,
                    known.endpoint,
                    state=ALIVE if known.greeted else CONNECTING,
                )
        for peer_id, row in list(self.peer_rows.items()):
            peer = table.get(peer_id)
            if row.state == GONE:
                if row.gone_at is not None and now - row.gone_at >= PEER_LINGER_S:
                    del self.peer_rows[peer_id]
            elif peer is None:
                row.state, row.reason, row.gone_at = GONE, "gone", now
            elif row.state == CONNECTING and peer.greeted:
                row.state = ALIVE
            elif row.state in (ALIVE, EVASIVE):
                row.state = EVASIVE if peer.state.value == EVASIVE else ALIVE

    def _own_id(self) -> str:
        with contextlib.suppress(Exception):
            return self.node.peer_id
        return ""

    def _empty_text(self, now: float) -> str | None:
        if self.node_failed is not None:
            return f"The node is not running: {self.node_failed}"
        if not self.node_running or self._started_at is None:
            return "Starting the node…"
        waited = now - self._started_at
        cfg = self.node.config
        if waited < self.empty_after:
            return f"Looking for peers on network {cfg.network!r}…"
        addresses = list(cfg.interfaces) or ["every LAN interface"]
        return no_peers_text(cfg.network, self.node.endpoint, addresses, waited)

    def live_peer_count(self) -> int:
        return sum(1 for row in self.peer_rows.values() if row.state != GONE)

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

    def worker_name(self, peer_id: str) -> str:
        row = self.peer_rows.get(peer_id)
        if row is not None and row.name:
            return row.name
        if peer_id and peer_id == self._own_id():
            return "self"
        return peer_id[:8]

    def _check_local_peers(self) -> None:
        if self.local_peers is None:
            return
        for peer, code, last in self.local_peers.exited():
            log.error(
                "local peer %s exited with code %s: %s", peer.name, code, last or "(no output)"
            )
            self.notify(f"local peer {peer.name} exited (code {code})", severity="error")

    # --- dispatch --------------------------------------------------------------------------

    def samples(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        if self._samples is None:
            try:
                self._samples = load_samples()
            except ModelError as exc:
                self.notify(str(exc), title="No samples", severity="error")
                return None
        return self._samples

    def dispatch(self, count: int, redraw: bool = True) -> int:
        """Queue ``count`` tasks with random held-out samples; returns how many.

        ``redraw`` shows them at once (a key press); the stream leaves it to the next tick.
        """
        if not self.node_running:
            why = self.node_failed or "it is still starting"
            self.notify(f"The node is not running: {why}", severity="warning")
            return 0
        loaded = self.samples()
        if loaded is None:
            return 0
        x, y = loaded
        if not self._has_workers():
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
        for _ in range(count):
            index = self.rng.randrange(len(x))
            expected = int(y[index]) if y is not None else None
            task_id = f"{self.rng.getrandbits(64):016x}"
            record = self.book.add(task_id, self.model, pin=self.pinned, expected=expected)
            task = asyncio.get_running_loop().create_task(
                self._run_task(record, x[index : index + 1])
            )
            self._dispatch.add(task)
            task.add_done_callback(self._dispatch.discard)
        if redraw:
            self.refresh_panes()
        return count

    def _has_workers(self) -> bool:
        workers = self.node.usable_peers(model=self.model)
        if self.pinned is not None:
            workers = [p for p in workers if p.peer_id == self.pinned]
        return bool(workers)

    async def _run_task(self, record: TaskRecord, sample: np.ndarray) -> None:
        options: dict[str, Any] = {"task_id": record.task_id}
        journal = self.journal
        if journal is not None and not record.journaled:
            try:
                if self._journal_run is None:
                    self._journal_run = journal.start_run(record.model)
                journal.add(
                    self._journal_run,
                    record.model,
                    {"": sample},
                    expected=record.expected,
                    task_id=record.task_id,
                )
                record.journaled = self._journal_run
            except Exception as exc:  # the journal is a safety net: never block the task
                log.warning("task %s is not journaled: %s", record.task_id[:8], exc)
        if record.pin is not None:
            options["pin"] = record.pin
        try:
            async with self._slots:
                self.book.start(record.task_id, self._has_workers())
                submitter = self.verifier if self.verify else self.node
                outcome = await submitter.submit(record.model, sample, **options)
        except asyncio.CancelledError:
            self.book.forget(record.task_id)
            raise
        except Exception as exc:
            self.book.fail(record.task_id, f"{type(exc).__name__}: {exc}")
            log.warning("task %s: %s: %s", record.task_id[:8], type(exc).__name__, exc)
            return
        if journal is not None and record.journaled:
            try:
                journal.finish(record.task_id, outcome)
            except Exception as exc:
                log.warning("task %s outcome is not journaled: %s", record.task_id[:8], exc)
        if self.book.finish(record.task_id, outcome) is not None:
            self.latency.add(outcome.latency_s * 1000, self.clock())

    async def wait_idle(self) -> None:
        """Wait until every dispatched task has its outcome (tests, and nothing else)."""
        while self._dispatch:
            await asyncio.gather(*list(self._dispatch), return_exceptions=True)

    def _stream_tick(self) -> None:
        if not self.streaming or not self.node_running:
            return
        # Back-pressure: never more than twice the concurrency waiting for a slot.
        if len(self._dispatch) >= 2 * self._max_concurrency:
            self._stream_credit = 0.0
            return
        # Credit by elapsed time, not per tick: a late tick (a busy redraw) still keeps the rate.
        now = self.clock()
        elapsed = (
            min(0.5, max(0.0, now - self._stream_last)) if self._stream_last else STREAM_TICK_S
        )
        self._stream_last = now
        self._stream_credit += self.stream_rate * elapsed
        count = int(self._stream_credit)
        if count:
            self._stream_credit -= count
            self.dispatch(count, redraw=False)

    # --- actions ---------------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # Keys that dispatch do nothing while a modal (help, picker, error) is on top.
        return not (action in DISPATCH_ACTIONS and isinstance(self.screen, ModalScreen))

    def action_dispatch(self) -> None:
        self.dispatch(1)

    def action_burst(self) -> None:
        self.dispatch(BURST)

    def action_toggle_stream(self) -> None:
        if not self.streaming and not self.node_running:
            self.notify("The node is not running", severity="warning")
            return
        self.streaming = not self.streaming
        if self.streaming:
            self._stream_credit = 0.0
            self._stream_last = 0.0
            self._stream_timer.resume()
            self.notify(f"Streaming {self.stream_rate:g} tasks/s (r stops)")
        else:
            self._stream_timer.pause()
            self.notify("Stream stopped")
        self.refresh_panes()

    def action_pick_model(self) -> None:
        local = self.node.registry.names()
        remote = advertised_models(self.node.peers)

        def chosen(name: str | None) -> None:
            if name and name != self.model:
                self.model = name
                self.notify(f"Dispatching model {name!r}")
                self.refresh_panes()

        self.push_screen(ModelPickerScreen(local, remote, self.model), chosen)

    def action_toggle_pin(self) -> None:
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

    def action_toggle_verify(self) -> None:
        if getattr(self.node, "scheduler", None) is None:
            self.notify("Verified mode needs a running node", severity="warning")
            return
        if self.verifier is None:
            from netcore.tasks.verify import Verifier

            self.verifier = Verifier(self.node, redundancy=VERIFY_REDUNDANCY, vote="label")
        self.verify = not self.verify
        if self.verify:
            self.notify(
                f"Verified mode: each task runs on {VERIFY_REDUNDANCY} distinct workers and the "
                "majority label wins (v again stops; pins are ignored)"
            )
        else:
            self.notify("Verified mode off: one worker per task")

    def action_clear_finished(self) -> None:
        cleared = self.book.clear_finished()
        self.refresh_panes()
        self.notify(f"Cleared {cleared} finished task(s)")

    def action_focus_logs(self) -> None:
        self.logs_pane.focus()

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.KEY_HELP))

    async def action_quit(self) -> None:
        """Leave gracefully: stop the stream, cancel pending tasks, ``await node.stop()``."""
        if self._quitting:
            return
        self._quitting = True
        self.status = "stopping"
        self.refresh_panes()
        await self.shutdown_node()
        self.exit(self._exit_code, return_code=self._exit_code)

    async def shutdown_node(self) -> None:
        self.streaming = False
        if self.verifier is not None:
            await self.verifier.aclose()
        if self._stream_timer is not None:
            self._stream_timer.pause()
        pending = list(self._dispatch)
        for task in pending:
            task.cancel()
        if pending:
            await asyncio.gather(*pending, return_exceptions=True)
        try:
            await asyncio.wait_for(self.node.stop(), timeout=10)
        except Exception as exc:
            log.warning("the node did not stop cleanly: %s: %s", type(exc).__name__, exc)
        self.node_running = False
        self.status = "stopped"

    # --- command palette -------------------------------------------------------------------

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Dispatch one task",
            "Send a random held-out digit to a worker (d)",
            self.action_dispatch,
        )
        yield SystemCommand(
            f"Dispatch a burst of {BURST}", f"Send {BURST} tasks at once (b)", self.action_burst
        )
        yield SystemCommand(
            "Toggle the task stream",
            "Start or stop a steady stream of tasks (r)",
            self.action_toggle_stream,
        )
        yield SystemCommand(
            "Pick the model", "Choose which model tasks use (m)", self.action_pick_model
        )
        yield SystemCommand(
            "Pin to the selected peer",
            "Send tasks only to the selected peer, or unpin (p)",
            self.action_toggle_pin,
        )
        yield SystemCommand(
            "Clear finished tasks",
            "Remove done and failed tasks from the table (c)",
            self.action_clear_finished,
        )
        yield SystemCommand(
            "Toggle verified mode",
            f"Run each task on {VERIFY_REDUNDANCY} workers and take the majority answer (v)",
            self.action_toggle_verify,
        )
        yield SystemCommand(
            "Focus the logs", "Move focus to the log pane (l)", self.action_focus_logs
        )
        yield SystemCommand("Help", "Keys and what the panes show (?)", self.action_help)
        for command in super().get_system_commands(screen):
            if command.title == "Quit":
                yield SystemCommand(
                    "Quit", "Leave the network gracefully and quit (q)", self.action_quit
                )
            else:
                yield command


def run_console(
    config: Config, local: int = 0, log_level: str = "info", log_format: str = "text"
) -> int:
    """Run the console in this terminal until the user quits; returns the exit code.

    With ``local`` > 0 it first starts that many headless peers on 127.0.0.1 as child
    processes, forces its own node onto 127.0.0.1 and onto their network (a private random
    name unless ``--network`` named one), and stops the children however the console ends.
    """
    from netcore.node import Node

    local_peers: LocalPeers | None = None
    if local > 0:
        network = config.network if config.network != "default" else f"local-{secrets.token_hex(4)}"
        config = replace(config, interfaces=("127.0.0.1",), network=network)
        local_peers = LocalPeers(local, network, log_level="info")
    try:
        if local_peers is not None:
            try:
                local_peers.start()
            except OSError as exc:
                print(f"p2pai: error: cannot start local peers: {exc}")
                return 1
        app = P2PConsole(
            Node(config),
            log_level=log_level,
            local_peers=local_peers,
            handle_signals=True,
            log_format=log_format,
        )
        # Everything imported so far lives as long as the process: keep it out of the
        # collector's full passes, which otherwise stall the UI for tens of ms each.
        gc.collect()
        gc.freeze()
        app.run()
        return app.return_code or 0
    finally:
        if local_peers is not None:
            local_peers.stop()
