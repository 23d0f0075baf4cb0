"""The layout at 80x24 and 160x48: every column of both tables shows, the Peers pane is as
tall as its rows (and bounded), the counters line fits, and every key is in the footer."""

from __future__ import annotations

import io
from typing import Any

import pytest
from console_fakes import FakeNode, FrozenClock
from rich.console import Console
from test_console_snapshots import console, populate
from textual.widgets._footer import FooterKey

from tui.app import P2PConsole
from tui.widgets.peers import COLUMNS as PEER_COLUMNS
from tui.widgets.tasks import COLUMNS as TASK_COLUMNS

SIZES = [(80, 24), (160, 48)]


def screen_lines(app: P2PConsole) -> list[str]:
    """The screen as the user sees it, as text (what a screenshot shows)."""
    width, height = app.size
    out = Console(width=width, height=height, file=io.StringIO(), record=True, legacy_windows=False)
    out.print(app.screen._compositor.render_update(full=True))
    return out.export_text().splitlines()


def header_line(lines: list[str], first: str) -> str:
    return next(line for line in lines if f"│ {first} " in line)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_every_column_and_key_shows(size: tuple[int, int]) -> None:
    clock = FrozenClock()
    app = console(FakeNode(clock=clock), clock)
    async with app.run_test(size=size) as pilot:
        await populate(pilot)
        lines = screen_lines(app)
        for table, columns in (
            (app.peers_pane.table, PEER_COLUMNS),
            (app.tasks_pane.table, TASK_COLUMNS),
        ):
            assert table.max_scroll_x == 0, f"{table.id} is wider than its pane"
            shown = header_line(lines, columns[0][1])
            missing = [label for _, label in columns if f" {label} " not in f"{shown} "]
            assert missing == [], f"{table.id} headers not on screen: {missing}\n{shown}"
        # Three peers: border, header and three rows, no more.
        assert app.peers_pane.outer_size.height == 2 + 1 + 3
        counters = next(line for line in lines if "12 dispatched" in line)
        assert "12 done" in counters and "0 failed" in counters and "right" in counters
        footer = {key.key for key in app.query(FooterKey) if key.region.right <= size[0]}
        bound = {b.key for b in app.BINDINGS if getattr(b, "show", True)}  # type: ignore[union-attr]
        assert bound <= footer, f"keys not in the footer: {bound - footer}"
        assert all(key.region.right <= size[0] for key in app.query(FooterKey))


async def test_many_peers_leave_the_tasks_their_rows(frozen_clock: FrozenClock) -> None:
    node = FakeNode(clock=frozen_clock)
    app = console(node, frozen_clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await populate(pilot)
        for k in range(30):
            node.add_peer(f"{k:020d}", f"peer-{k}", f"tcp://127.0.0.1:{48000 + k}")
        await pilot.pause()
        app.refresh_panes()
        await pilot.pause()
        assert len(app.peers_pane.row_keys()) == 33
        body: Any = app.query_one("#body")
        assert app.peers_pane.outer_size.height <= 0.4 * body.size.height
        assert app.tasks_pane.table.size.height >= 3, "the tasks still show rows"


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
async def test_the_header_keeps_the_name_the_peers_and_the_model(size: tuple[int, int]) -> None:
    clock = FrozenClock()
    app = console(FakeNode(clock=clock), clock)
    async with app.run_test(size=size) as pilot:
        await populate(pilot)
        await pilot.pause()
        header = screen_lines(app)[0]
        assert "p2pai" in header and "3 peers" in header, header
        assert "│ model " in header and not header.rstrip().endswith("…"), header
        if size[0] >= 160:  # room for everything
            assert " net " in header, header
