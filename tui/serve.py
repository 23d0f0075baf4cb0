"""``p2pai serve``: the console in a web browser, through textual-serve.

**One node per browser session.** textual-serve runs one process per websocket session; each
of ours is a full ``p2pai console`` with its own node and its own identity, kept in
``<data-dir>/sessions/<n>`` (the lowest free slot, so reconnecting reuses an identity). Sharing
one node between sessions would need the console to drive a node in another process, which
the console (by design a node's own UI on one asyncio loop) does not do; separate nodes also
mean one tab's stream of tasks or crash never disturbs another's, and every session's node is
a real peer the others see. The cost is a node per open tab: ``--max-sessions`` bounds it.

**Shutdown.** Each session's process runs in its own process group, with the kernel asked to
send it SIGTERM if this server dies (``PR_SET_PDEATHSIG``). Closing a tab sends the console
textual-serve's ``quit``; the console leaves the swarm gracefully (``bye``, mDNS goodbye). On
SIGINT/SIGTERM the server does the same for every session, waits up to
:data:`GRACE_S`, then SIGTERMs and finally SIGKILLs what is left, each by its PID.

**Nothing from outside this machine.** textual-serve's page links the Roboto Mono font from
Google Fonts; we render the same template with that link replaced by ``@font-face`` rules for
the copies textual-serve ships in its static directory, so the page loads only from this
server (the browser test checks every request).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp_jinja2
import jinja2
import textual_serve
from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

from netcore.config.settings import Config

log = logging.getLogger("p2pai.serve")

GRACE_S = 5.0
"""How long a session may take to leave gracefully before it is terminated."""
KILL_AFTER_S = 3.0

_LAUNCHER = (
    "import ctypes, os, signal, sys\n"
    "try:\n"
    "    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG\n"
    "except Exception:\n"
    "    pass\n"
    "if os.getppid() != int(sys.argv[1]):\n"
    "    sys.exit(0)  # the server is already gone\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)

_FONT_LINK = re.compile(r"<link[^>]*fonts\.googleapis\.com[^>]*/?>", re.S)
_REMOTE = re.compile(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", re.I)
LOCAL_FONTS = """<style>
      @font-face {
        font-family: "Roboto Mono";
        src: url("{{ config.static.url }}fonts/RobotoMono-VariableFont_wght.ttf") format("truetype");
        font-weight: 100 700;
        font-style: normal;
      }
      @font-face {
        font-family: "Roboto Mono";
        src: url("{{ config.static.url }}fonts/RobotoMono-Italic-VariableFont_wght.ttf") format("truetype");
        font-weight: 100 700;
        font-style: italic;
      }
    </style>"""


def local_page_template() -> str:
    """textual-serve's page with its one remote resource (Google Fonts) made local."""
    path = Path(textual_serve.__file__).parent / "templates" / "app_index.html"
    page = _FONT_LINK.sub(LOCAL_FONTS, path.read_text(encoding="utf-8"))
    if _REMOTE.search(page):
        log.warning("textual-serve's page still loads something from another host")
    return page


@dataclass(slots=True)
class SessionSpec:
    """How to start one session's ``p2pai console``."""

    base_dir: Path
    network: str
    name: str
    interfaces: tuple[str, ...] = ()
    capacity: int = 0
    static_peers: tuple[str, ...] = ()
    mdns: bool = True
    log_level: str = "info"
    log_format: str = "text"
    config_file: Path | None = None
    extra_args: list[str] = field(default_factory=list)

    @classmethod
    def from_config(
        cls, config: Config, base_dir: Path, log_level: str, config_file: Path | None
    ) -> SessionSpec:
        from netcore.cli.config_file import current_log_format

        return cls(
            base_dir=Path(base_dir),
            network=config.network,
            name=config.name,
            interfaces=config.interfaces,
            capacity=config.capacity,
            static_peers=config.static_peers,
            mdns=config.mdns,
            log_level=log_level,
            log_format=current_log_format(),
            config_file=config_file,
        )

    def data_dir(self, slot: int) -> Path:
        return self.base_dir / "sessions" / str(slot)

    def argv(self, slot: int) -> list[str]:
        """The command line of session ``slot``: every setting explicit (flags win over the
        config file the session also reads), metrics off (sessions would share a port)."""
        args = [
            sys.executable, "-c", _LAUNCHER, str(os.getpid()),
            "-m", "netcore.cli", "console",
            "--network", self.network,
            "--name", f"{self.name}-web{slot}"[:63],
            "--data-dir", str(self.data_dir(slot)),
            "--port", "0",
            "--log-level", self.log_level,
            "--log-format", self.log_format,
            "--metrics-port", "off",
            "--mdns" if self.mdns else "--no-mdns",
        ]  # fmt: skip
        if self.capacity:
            args += ["--capacity", str(self.capacity)]
        if self.config_file is not None:
            args += ["--config", str(self.config_file)]
        for interface in self.interfaces:
            args += ["--interface", interface]
        for peer in self.static_peers:
            args += ["--peer", peer]
        return args + self.extra_args


class SessionService(AppService):
    """textual-serve's per-session service, started without a shell, reaped by PID."""

    def __init__(self, argv: list[str], slot: int, **kwargs: Any) -> None:
        super().__init__(" ".join(argv[:1]), **kwargs)
        self.argv = argv
        self.slot = slot

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    async def _open_app_process(self, width: int = 80, height: int = 24) -> Any:
        environment = self._build_environment(width=width, height=height)
        self._process = process = await asyncio.create_subprocess_exec(
            *self.argv,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=environment,
            start_new_session=True,  # Ctrl+C in the server's terminal reaches only the server
        )
        assert process.stdin is not None
        self._stdin = process.stdin
        return process

    async def close(self, grace: float = GRACE_S) -> int | None:
        """Quit gracefully; after ``grace`` seconds SIGTERM, then SIGKILL, by PID."""
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.stop(), grace)
        process = self._process
        if process is None:
            return None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if process.returncode is not None:
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), 0.5 if sig is signal.SIGTERM else 0)
            if process.returncode is not None:
                break
            log.warning("session %d (pid %d) did not quit: %s", self.slot, process.pid, sig.name)
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, sig)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(process.wait(), KILL_AFTER_S)
        return process.returncode


class ConsoleServer(Server):
    """textual-serve's server with our sessions, a local-only page and a clean shutdown."""

    def __init__(self, spec: SessionSpec, host: str = "127.0.0.1", port: int = 8000,
                 max_sessions: int = 8) -> None:  # fmt: skip
        super().__init__("p2pai console", host=host, port=port, title="p2pai console")
        self.spec = spec
        self.max_sessions = max_sessions
        self.sessions: dict[int, SessionService] = {}
        self.started_pids: list[int] = []
        self._stop = asyncio.Event()

    async def _make_app(self) -> web.Application:
        app = web.Application()
        loader = jinja2.DictLoader({"app_index.html": local_page_template()})
        aiohttp_jinja2.setup(app, loader=loader)
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/ws", self.handle_websocket, name="websocket"),
            web.get("/download/{key}", self.handle_download, name="download"),
            web.static("/static", self.statics_path, show_index=False, name="static"),
        ])  # fmt: skip
        return app

    def _free_slot(self) -> int | None:
        for slot in range(1, self.max_sessions + 1):
            if slot not in self.sessions:
                return slot
        return None

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse(heartbeat=15)
        slot = self._free_slot()
        if slot is None or self._stop.is_set():
            await websocket.prepare(request)
            await websocket.close(code=1013, message=b"too many sessions: close another tab")
            return websocket
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)
        service: SessionService | None = None
        try:
            await websocket.prepare(request)
            service = SessionService(
                self.spec.argv(slot),
                slot,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=websocket.close,
                download_manager=self.download_manager,
            )
            self.sessions[slot] = service
            await service.start(width, height)
            if service.pid is not None:
                self.started_pids.append(service.pid)
            log.info("session %d started (pid %s)", slot, service.pid)
            await self._process_messages(websocket, service)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await websocket.close()
        except Exception as exc:
            log.warning("session %s: %s: %s", slot, type(exc).__name__, exc)
        finally:
            if service is not None:
                code = await service.close()
                log.info("session %d ended (exit code %s)", slot, code)
            self.sessions.pop(slot, None)
        return websocket

    def run(self) -> int:
        """Serve until SIGINT/SIGTERM; returns the exit code."""
        return asyncio.run(self._serve())

    async def _serve(self) -> int:
        logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, self._stop.set)
        app = await self._make_app()
        runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=2.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
            self.port = int(runner.addresses[0][1])
            shown = f"[{self.host}]" if ":" in self.host else self.host
            self.public_url = f"http://{shown}:{self.port}"
            print(f"p2pai: serving the console on {self.public_url}/ (Ctrl+C stops)", flush=True)
            await self._stop.wait()
            log.info("stopping: %d session(s) to close", len(self.sessions))
        finally:
            self._stop.set()
            await self.close_sessions()
            await runner.cleanup()
        return 0

    async def close_sessions(self) -> None:
        sessions = list(self.sessions.values())
        if sessions:
            await asyncio.gather(*(s.close() for s in sessions), return_exceptions=True)
