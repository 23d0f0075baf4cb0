"""The ``/metrics`` endpoint: a small aiohttp server on the node's own loop.

``GET /metrics`` (and ``HEAD``) answers with prometheus_client's exposition of a per-node
registry holding one :class:`~netcore.observe.metrics.NodeCollector`, in the text format or in
OpenMetrics when the scraper's ``Accept`` asks for it; ``/`` is a page that links to it. Every
other path is a 404 and every other method a 405. The server runs on the loop the node runs on,
so a scrape sees one consistent state and no thread touches it.

It listens on ``metrics_host`` (127.0.0.1 unless told otherwise): the numbers name peers and
their addresses.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from aiohttp import web
from prometheus_client import CollectorRegistry
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from netcore.observe.metrics import EventRecorder, NodeCollector

if TYPE_CHECKING:
    from netcore.node import Node

log = logging.getLogger("p2pai.metrics")


class _OneLineClientErrors(logging.Filter):
    """A malformed or oversized request is the client's fault: one debug line, no traceback
    (aiohttp logs each at ERROR with its traceback; the scraper gets its 400 anyway)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg == "Error handling request from %s" and record.exc_info:
            exc = record.exc_info[1]
            log.debug("bad request from %s: %s", record.getMessage().rpartition(" ")[2], exc)
            return False
        return True


http_log = logging.getLogger("p2pai.metrics.http")
"""aiohttp's request handler logs here (not ``aiohttp.server``)."""
http_log.addFilter(_OneLineClientErrors())

IDLE_TIMEOUT_S = 5.0
"""An idle kept-alive connection is closed after this long."""
CLOSE_TIMEOUT_S = 2.0
"""How long ``close`` waits for scrapes still being answered."""
INDEX_PAGE = b'<html><body><a href="/metrics">p2pai metrics</a></body></html>\n'


class MetricsError(Exception):
    """The metrics endpoint cannot start; one line that says what to do."""


class MetricsServer:
    """``GET /metrics`` (and ``HEAD``) on the node's loop; ``/`` links to it."""

    def __init__(self, node: Node | None, collector: Collector | None = None) -> None:
        """A node's metrics, or (``node`` None) those of ``collector`` (a relay's)."""
        self.node = node
        self.recorder = EventRecorder()
        self.registry = CollectorRegistry(auto_describe=False)
        if node is not None:
            self.registry.register(NodeCollector(node, self.recorder))
        if collector is not None:
            self.registry.register(collector)
        self.runner: web.AppRunner | None = None
        self.host = ""
        self.port = 0

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    async def start(self, host: str, port: int) -> MetricsServer:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/", self._index)
        app.router.add_get("/{path:.*}", self._not_found)  # GET only: other methods get 405
        runner = web.AppRunner(
            app,
            access_log=None,
            logger=http_log,
            keepalive_timeout=IDLE_TIMEOUT_S,
            shutdown_timeout=CLOSE_TIMEOUT_S,
        )
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_address=True).start()
        except OSError as exc:
            await runner.cleanup()
            reason = exc.strerror or str(exc)
            raise MetricsError(
                f"--metrics-port {port}: cannot listen on {host}: {reason}; "
                "choose another port (0 picks a free one)"
            ) from None
        self.runner = runner
        self.host, self.port = host, int(runner.addresses[0][1])
        if self.node is not None:
            self.node.observers.append(self.recorder)
        log.info("metrics on %s", self.url)
        return self

    async def close(self) -> None:
        if self.node is not None and self.recorder in self.node.observers:
            self.node.observers.remove(self.recorder)
        if self.runner is not None:
            runner, self.runner = self.runner, None
            await runner.cleanup()

    def render(self, accept: str = "") -> tuple[bytes, str]:
        """The exposition body and its content type, as a scrape would get them."""
        encoder, content_type = choose_encoder(accept)
        return encoder(self.registry), content_type

    async def _metrics(self, request: web.Request) -> web.Response:
        body, content_type = self.render(request.headers.get("Accept", ""))
        return web.Response(body=body, headers={"Content-Type": content_type})

    @staticmethod
    async def _index(request: web.Request) -> web.Response:
        return web.Response(body=INDEX_PAGE, content_type="text/html")

    @staticmethod
    async def _not_found(request: web.Request) -> web.Response:
        return web.Response(status=404, text="not found: try /metrics\n")
