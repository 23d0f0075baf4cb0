"""Log lines as text or JSON (``--log-format``), the same for a headless node and the console.

``text``: ``2024-05-01 12:00:00,123 INFO    p2pai.node: message`` (what ``p2pai node`` always
printed). ``json``: one object a line, ``{"t": unix seconds, "time": ISO 8601 UTC, "level",
"logger", "message"}`` plus ``"error"`` (one line, never a traceback) when the record carries
an exception. The console's log pane renders the same records; with ``json`` it shows the JSON
lines themselves.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from typing import Any, TextIO

TEXT_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
NOISY = ("zeroconf", "asyncio", "p2pai.zap")


class JsonFormatter(logging.Formatter):
    """One JSON object a line; exceptions become one ``error`` string."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "t": round(record.created, 6),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            entry["error"] = f"{type(exc).__name__}: {exc}"
        return json.dumps(entry, ensure_ascii=False, default=str)


class OneLineTextFormatter(logging.Formatter):
    """The text format, with an exception as ``(Type: message)`` instead of a traceback."""

    def format(self, record: logging.LogRecord) -> str:
        exc_info, record.exc_info, record.exc_text = record.exc_info, None, None
        try:
            line = super().format(record)
        finally:
            record.exc_info = exc_info
        if exc_info and exc_info[1] is not None:
            line += f" ({type(exc_info[1]).__name__}: {exc_info[1]})"
        return line.replace("\n", " ")


def make_formatter(fmt: str) -> logging.Formatter:
    return JsonFormatter() if fmt == "json" else OneLineTextFormatter(TEXT_FORMAT)


def configure(level: str, fmt: str = "text", stream: TextIO | None = None) -> None:
    """Log to ``stream`` (stderr) at ``level`` in ``fmt``; other libraries from WARNING up."""
    root = logging.getLogger()
    numeric = getattr(logging, level.upper(), logging.INFO)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(make_formatter(fmt))
    for old in list(root.handlers):
        if getattr(old, "_p2pai", False):
            root.removeHandler(old)
    handler._p2pai = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(numeric)
    for noisy in NOISY:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, numeric))
