"""Hosting the node: starting it, showing why it cannot start, leaving gracefully; and
reporting the local peers (``--local``) that exited.

:class:`NodeLifecycle` is mixed into the App (quit is a binding's action, start a Textual
worker); it says what it needs of the App in :class:`LifecycleHost`. Leaving gracefully means
stopping the stream, cancelling the tasks in flight, then ``await node.stop()``, so peers see
a goodbye at once; SIGTERM and SIGHUP leave the same way as q.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from textual import work

from .screens import NodeErrorScreen

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from .dispatch import TaskRunner
    from .jobs import ConsoleJobs
    from .local_peers import LocalPeers
    from .state import NodeLike

log = logging.getLogger("p2pai.console")

QUIT_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class LifecycleHost(Protocol):
    """What starting and stopping the node read and change in the App."""

    node: NodeLike
    tasks: TaskRunner
    jobs: ConsoleJobs
    local_peers: LocalPeers | None
    clock: Callable[[], float]
    node_running: bool
    node_failed: str | None
    status: str
    streaming: bool
    _started_at: float | None
    _stream_timer: Any
    _quitting: bool
    _exit_code: int

    def notify(
        self,
        message: str,
        *,
        title: str = ...,
        severity: SeverityLevel = ...,
        timeout: float | None = ...,
    ) -> None: ...

    def push_screen(self, screen: Any, callback: Any = ...) -> Any: ...

    def refresh_panes(self) -> None: ...

    def exit(self, result: int | None = ..., return_code: int = ...) -> None: ...

    def call_later(self, callback: Any, *args: Any, **kwargs: Any) -> bool: ...

    async def action_quit(self) -> None: ...

    async def shutdown_node(self) -> None: ...

    def _node_failed(self, reason: str) -> None: ...

    def _on_signal(self) -> None: ...


class NodeLifecycle:
    """Start the node, report a failure or a local peer's exit, quit on q or a signal."""

    # What starting and stopping change (the App sets them first, in its __init__).
    node_running: bool
    node_failed: str | None
    status: str
    streaming: bool
    _started_at: float | None
    _quitting: bool
    _exit_code: int

    @work(group="node", exit_on_error=False)
    async def start_node(self: LifecycleHost) -> None:
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
        resumed = self.tasks.open_journal()
        if resumed:
            log.info("resuming %d task(s) a previous console left unfinished", resumed)
            self.notify(f"Resuming {resumed} unfinished task(s) from the last session")
        if self.local_peers is not None:
            log.info(
                "%d local peer(s) on network %r, pids %s",
                self.local_peers.count,
                self.node.config.network,
                ", ".join(map(str, self.local_peers.pids)),
            )
        self.refresh_panes()

    def _node_failed(self: LifecycleHost, reason: str) -> None:
        self.node_failed = reason
        self.status = "failed"
        self._exit_code = 1
        log.error("the node cannot start: %s", reason)
        self.notify(reason, title="The node cannot start", severity="error", timeout=30)
        self.push_screen(NodeErrorScreen("The node cannot start", reason))
        self.refresh_panes()

    def report_exited_local_peers(self: LifecycleHost) -> None:
        """Say which local peers (``--local``) exited since the last call, and how."""
        if self.local_peers is None:
            return
        for peer, code, last in self.local_peers.exited():
            log.error(
                "local peer %s exited with code %s: %s", peer.name, code, last or "(no output)"
            )
            self.notify(f"local peer {peer.name} exited (code {code})", severity="error")

    def install_signal_handlers(self: LifecycleHost) -> None:
        """SIGTERM and SIGHUP quit gracefully (the real terminal only: tests share a loop)."""
        loop = asyncio.get_running_loop()
        for sig in QUIT_SIGNALS:
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, self._on_signal)

    def remove_signal_handlers(self) -> None:
        with contextlib.suppress(Exception):
            loop = asyncio.get_running_loop()
            for sig in QUIT_SIGNALS:
                loop.remove_signal_handler(sig)

    def _on_signal(self: LifecycleHost) -> None:
        self.call_later(self.action_quit)

    async def action_quit(self: LifecycleHost) -> None:
        """Leave gracefully: stop the stream, cancel pending tasks, ``await node.stop()``."""
        if self._quitting:
            return
        self._quitting = True
        self.status = "stopping"
        self.refresh_panes()
        await self.shutdown_node()
        self.exit(self._exit_code, return_code=self._exit_code)

    async def shutdown_node(self: LifecycleHost) -> None:
        self.streaming = False
        if self._stream_timer is not None:
            self._stream_timer.pause()
        await self.tasks.aclose()
        await self.jobs.aclose()  # what they computed stays journaled for the next run
        try:
            await asyncio.wait_for(self.node.stop(), timeout=10)
        except Exception as exc:
            log.warning("the node did not stop cleanly: %s: %s", type(exc).__name__, exc)
        self.node_running = False
        self.status = "stopped"
