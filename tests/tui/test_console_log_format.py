"""--log-format: the console's log pane shows the lines a headless node writes."""

from __future__ import annotations

import io
import json
import logging

from console_fakes import FakeNode, FrozenClock, digit_samples
from model_helpers import wait_until

from netcore.observe.logs import configure
from tui.app import P2PConsole

SIZE = (120, 40)


async def test_json_lines_in_the_log_pane(fake_node: FakeNode, frozen_clock: FrozenClock) -> None:
    app = P2PConsole(fake_node, clock=frozen_clock, seed=7, samples=digit_samples(),
                     log_timestamps=False, log_format="json")  # fmt: skip
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running)
        before = app.logs_pane.lines_written
        logging.getLogger("p2pai.node").warning("peer %s is evasive", "abc")
        await wait_until(lambda: app.logs_pane.lines_written == before + 1, what="log line")
        # The pane wraps long lines: compare without whitespace.
        shown = "".join("".join(s.text for s in line) for line in app.logs_pane.lines)
        squeezed = "".join(shown.split())
        assert '"level":"warning","logger":"p2pai.node","message":"peerabcisevasive"' in squeezed
        await pilot.press("q")


def test_headless_json_lines_have_the_same_fields() -> None:
    stream = io.StringIO()
    configure("info", "json", stream=stream)
    try:
        log = logging.getLogger("p2pai.node")
        log.info("hello %d", 1)
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            log.exception("it failed")
    finally:
        for handler in list(logging.getLogger().handlers):
            if getattr(handler, "_p2pai", False):
                logging.getLogger().removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2, "one line per record, never a traceback"
    first, second = (json.loads(line) for line in lines)
    assert first["message"] == "hello 1" and first["level"] == "info"
    assert second["error"] == "ValueError: bad\nthing"


def test_text_lines_stay_one_line() -> None:
    stream = io.StringIO()
    configure("info", "text", stream=stream)
    try:
        try:
            raise RuntimeError("boom")
        except RuntimeError:
            logging.getLogger("p2pai.x").exception("failed")
    finally:
        for handler in list(logging.getLogger().handlers):
            if getattr(handler, "_p2pai", False):
                logging.getLogger().removeHandler(handler)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1 and lines[0].endswith("p2pai.x: failed (RuntimeError: boom)")
