"""A logging.Handler that forwards records to the console as :class:`LogLine` messages.

Records can come from any thread (zeroconf runs one, inference runs in a pool). On the app's
loop thread the handler posts directly; from another thread it hands the post to the loop with
``call_soon_threadsafe``. That is what ``App.call_from_thread`` does, minus the wait for the
result: a logging thread never blocks on the UI, and cannot deadlock with a loop that is
itself waiting on that thread while it shuts down.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from textual.app import App

from netcore.observe.logs import JsonFormatter

from .messages import LogLine

OTHER_LIBRARIES_LEVEL = logging.WARNING
"""Records from outside ``p2pai`` (zeroconf, asyncio) are shown from this level up."""


class ConsoleLogHandler(logging.Handler):
    """Installed on the root logger: ``p2pai.*`` records from ``level``, others from WARNING."""

    def __init__(self, app: App[Any], level: int, line_format: str = "text") -> None:
        super().__init__(logging.DEBUG)
        # --log-format json: the pane shows each record as the JSON line a headless node
        # writes (netcore.observe.logs); text: the pane's own styled rendering of the same fields.
        self.json_lines = JsonFormatter() if line_format == "json" else None
        self.app = app
        self.p2pai_level = level
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread_id: int | None = None
        self._saved_level: int | None = None

    def install(self) -> None:
        """Attach (call on the app's loop thread, e.g. from ``on_mount``)."""
        self._loop = asyncio.get_running_loop()
        self._thread_id = threading.get_ident()
        p2pai = logging.getLogger("p2pai")
        if p2pai.getEffectiveLevel() > self.p2pai_level:
            self._saved_level = p2pai.level
            p2pai.setLevel(self.p2pai_level)
        logging.getLogger().addHandler(self)

    def uninstall(self) -> None:
        logging.getLogger().removeHandler(self)
        if self._saved_level is not None:
            logging.getLogger("p2pai").setLevel(self._saved_level)
            self._saved_level = None
        self._loop = None

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "p2pai" or record.name.startswith("p2pai."):
            return record.levelno >= self.p2pai_level
        return record.levelno >= OTHER_LIBRARIES_LEVEL

    def emit(self, record: logging.LogRecord) -> None:
        loop = self._loop
        if loop is None:
            return
        try:
            text = record.getMessage()
            if record.exc_info and record.exc_info[1] is not None:
                exc = record.exc_info[1]
                # One line, never a traceback on the screen.
                text = f"{text} ({type(exc).__name__}: {exc})"
            if self.json_lines is not None:
                text = self.json_lines.format(record)
            logger = "" if self.json_lines is not None else record.name
            message = LogLine(record.levelno, record.levelname, logger, text, record.created)
            if threading.get_ident() == self._thread_id:
                self.app.post_message(message)
            elif not loop.is_closed():
                loop.call_soon_threadsafe(self.app.post_message, message)
        except Exception:
            self.handleError(record)

    def handleError(self, record: logging.LogRecord) -> None:
        # The default prints a traceback to stderr, i.e. over the UI. A record the console
        # cannot show (typically while the loop closes) is dropped instead.
        return
