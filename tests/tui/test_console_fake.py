"""Console edge cases against an in-memory FakeNode: no sockets, a frozen clock."""

from __future__ import annotations

import asyncio
import logging
import threading

from console_fakes import FakeNode, FrozenClock, digit_samples
from model_helpers import wait_until
from textual.widgets._toast import Toast

from tui.app import P2PConsole
from tui.peer_rows import PEER_LINGER_S
from tui.screens import HelpScreen, ModelPickerScreen, NodeErrorScreen
from tui.state import DONE, QUEUED, RETRYING

SIZE = (120, 40)
A, B = "a1a1a1a1a1a1a1a1a1a1", "b2b2b2b2b2b2b2b2b2b2"


def make_app(node: FakeNode, clock: FrozenClock, **options: object) -> P2PConsole:
    options.setdefault("empty_after", 3.0)
    return P2PConsole(
        node,
        clock=clock,
        seed=7,
        samples=digit_samples(),
        log_timestamps=False,
        **options,  # type: ignore[arg-type]
    )


def notifications(app: P2PConsole) -> list[str]:
    return [n.message for n in app._notifications]


async def test_peer_appears_then_evasive_is_coloured_and_recovers(
    fake_node: FakeNode, frozen_clock: FrozenClock
) -> None:
    app = make_app(fake_node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running, what="node start")
        fake_node.add_peer(A, "alpha", "tcp://127.0.0.1:47101", rtt_ms=0.42)
        await wait_until(lambda: app.peers_pane.row_keys() == [A], what="peer row")
        assert app.peers_pane.cell(A, "state") == ("alive", "bold green")
        assert app.peers_pane.cell(A, "name") == ("alpha", "")

        fake_node.evade(A)
        await wait_until(lambda: app.peers_pane.cell(A, "state") == ("evasive", "bold yellow"))
        _, name_style = app.peers_pane.cell(A, "name") or ("", "")
        assert name_style == "yellow", "the whole row is tinted while the peer is evasive"
        assert "evasive" in str(app.peers_pane.table.get_cell(A, "state"))

        fake_node.revive(A)
        await wait_until(lambda: app.peers_pane.cell(A, "state") == ("alive", "bold green"))
        await pilot.press("q")


async def test_peer_down_greys_out_then_the_row_goes(
    fake_node: FakeNode, frozen_clock: FrozenClock
) -> None:
    app = make_app(fake_node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running)
        fake_node.add_peer(A, "alpha", "tcp://127.0.0.1:47101")
        fake_node.add_peer(B, "bravo", "tcp://127.0.0.1:47102")
        await wait_until(lambda: len(app.peers_pane.row_keys()) == 2)

        fake_node.drop(A, "bye")
        await wait_until(lambda: (app.peers_pane.cell(A, "state") or ("",))[0] == "left (bye)")
        assert app.peers_pane.cell(A, "name") == ("alpha", "grey50 strike")
        assert app.live_peer_count() == 1

        frozen_clock.advance(PEER_LINGER_S + 0.1)
        app.refresh_panes()
        assert app.peers_pane.row_keys() == [B]
        await pilot.press("q")


async def test_peer_that_vanishes_without_an_event_is_removed(
    fake_node: FakeNode, frozen_clock: FrozenClock
) -> None:
    app = make_app(fake_node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running)
        fake_node.add_peer(A, "alpha", "tcp://127.0.0.1:47101")
        await wait_until(lambda: app.peers_pane.row_keys() == [A])
        fake_node.peers.remove(A)  # e.g. expired before it was ever announced: no PeerDown
        app.refresh_panes()
        assert app.peers_pane.cell(A, "state") == ("left (gone)", "grey50")
        frozen_clock.advance(PEER_LINGER_S + 0.1)
        app.refresh_panes()
        assert app.peers_pane.row_keys() == []
        await pilot.press("q")


async def test_node_start_error_is_a_notification_and_a_screen_not_a_traceback(
    frozen_clock: FrozenClock,
) -> None:
    reason = "port 5555 is already in use on 127.0.0.1; choose another with --port"
    node = FakeNode(clock=frozen_clock, fail=reason)
    app = make_app(node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_failed is not None, what="start failure")
        await pilot.pause()
        assert isinstance(app.screen, NodeErrorScreen)
        assert any(reason in m for m in notifications(app))
        assert app.query(Toast) or app.screen.query(Toast) or app._notifications
        assert reason in (app.peers_pane.empty_text or "")
        # Dispatching now explains instead of failing.
        await pilot.press("escape")
        await pilot.press("d")
        assert app.book.counters.submitted == 0
        assert any("not running" in m for m in notifications(app))
        await pilot.press("q")
    assert app.return_code == 1
    assert not node.started


async def test_no_peers_shows_what_to_check(fake_node: FakeNode, frozen_clock: FrozenClock) -> None:
    app = make_app(fake_node, frozen_clock, empty_after=3.0)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running)
        app.refresh_panes()
        assert "Looking for peers on network 'lab'" in (app.peers_pane.empty_text or "")
        frozen_clock.advance(3.5)
        app.refresh_panes()
        text = app.peers_pane.empty_text or ""
        for hint in (
            "No peers on network 'lab'",
            "--network",
            "subnet",
            "firewall",
            "multicast",
            "--peer",
        ):
            assert hint in text, hint
        assert not app.peers_pane.table.display
        # A peer arriving replaces the hints with the table.
        fake_node.add_peer(A, "alpha", "tcp://127.0.0.1:47101")
        await wait_until(lambda: app.peers_pane.empty_text is None)
        assert app.peers_pane.table.display
        await pilot.press("q")


async def test_dispatch_without_workers_says_so_and_the_task_waits(
    fake_node: FakeNode, frozen_clock: FrozenClock
) -> None:
    fake_node.hold = asyncio.Event()
    app = make_app(fake_node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running)
        await pilot.press("d")
        assert any("No workers yet" in m for m in notifications(app))
        record = next(iter(app.book))
        assert record.state == QUEUED
        # A worker appears, the node runs the task.
        fake_node.add_peer(A, "alpha", "tcp://127.0.0.1:47101")
        await wait_until(lambda: app.live_peer_count() == 1)
        fake_node.hold.set()
        await wait_until(lambda: record.state == DONE, what="task done")
        app.refresh_panes()
        assert str(app.tasks_pane.table.get_cell(record.task_id, "state")) == "done"
        await pilot.press("q")


async def test_dispatch_burst_pin_retry_and_clear(
    fake_node: FakeNode, frozen_clock: FrozenClock
) -> None:
    app = make_app(fake_node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running)
        fake_node.add_peer(A, "alpha", "tcp://127.0.0.1:47101")
        fake_node.add_peer(B, "bravo", "tcp://127.0.0.1:47102")
        await wait_until(lambda: app.live_peer_count() == 2)

        await pilot.press("b")
        await app.wait_idle()
        assert app.book.counters.done == 100
        assert app.book.counters.correct == 100
        app.refresh_panes()
        assert len(app.tasks_pane.row_keys()) == app.tasks_pane.max_rows
        newest = app.book.newest(1)[0]
        assert app.tasks_pane.row_keys()[0] == newest.task_id, "newest first"
        assert str(app.tasks_pane.table.get_cell(newest.task_id, "result")).startswith(
            str(newest.label)
        )

        # Pin to the selected peer (the cursor is on the first row: alpha).
        app.peers_pane.table.focus()
        await pilot.press("p")
        assert app.pinned == A
        await pilot.press("d")
        await app.wait_idle()
        assert fake_node.submitted[-1].get("pin") == A
        await pilot.press("p")
        assert app.pinned is None

        # A retry event moves the task to "retrying" until its outcome arrives.
        fake_node.hold = asyncio.Event()
        await pilot.press("d")
        record = app.book.newest(1)[0]
        fake_node.retry(record.task_id, B)
        await wait_until(lambda: record.state == RETRYING, what="retrying state")
        fake_node.hold.set()
        await app.wait_idle()
        assert record.state == DONE
        assert app.book.counters.retries == 1

        await pilot.press("c")
        assert len(app.book) == 0
        app.refresh_panes()
        assert app.tasks_pane.row_keys() == []
        assert app.book.counters.done == 102, "totals survive a clear"
        await pilot.press("q")
    assert fake_node.stopped


async def test_stream_dispatches_until_toggled_off(
    fake_node: FakeNode, frozen_clock: FrozenClock
) -> None:
    app = make_app(fake_node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running)
        fake_node.add_peer(A, "alpha", "tcp://127.0.0.1:47101")
        await wait_until(lambda: app.live_peer_count() == 1)
        await pilot.press("r")
        assert app.streaming
        frozen_clock.advance(0.1)
        await wait_until(lambda: app.book.counters.done >= 5, what="streamed tasks")
        await pilot.press("r")
        assert not app.streaming
        await app.wait_idle()
        count = app.book.counters.submitted
        frozen_clock.advance(1.0)
        await pilot.pause(0.3)
        assert app.book.counters.submitted == count, "no tasks after the stream stopped"
        await pilot.press("q")


async def test_model_picker_lists_local_and_advertised_models(frozen_clock: FrozenClock) -> None:
    node = FakeNode(clock=frozen_clock, models=["digits"])
    app = make_app(node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running)
        node.add_peer(A, "alpha", "tcp://127.0.0.1:47101", models=("digits", "iris"))
        await wait_until(lambda: app.live_peer_count() == 1)
        await pilot.press("m")
        assert isinstance(app.screen, ModelPickerScreen)
        option_list = app.screen.query_one("#picker-list")
        ids = [o.id for o in option_list.options]  # type: ignore[attr-defined]
        assert ids == ["digits", "iris"]
        await pilot.press("down", "enter")
        assert app.model == "iris"
        assert not isinstance(app.screen, ModelPickerScreen)
        await pilot.press("q")


async def test_help_screen_and_command_palette_list_the_actions(
    fake_node: FakeNode, frozen_clock: FrozenClock
) -> None:
    app = make_app(fake_node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        described = {key for key, _ in app.screen.keys}
        bound = {b.key_display or b.key for b in app.BINDINGS}  # type: ignore[union-attr]
        assert bound <= described | {"question_mark"}
        # Keys that dispatch are off while a modal is open.
        await pilot.press("d")
        assert app.book.counters.submitted == 0
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

        titles = [c.title for c in app.get_system_commands(app.screen)]
        for title in (
            "Dispatch one task",
            "Dispatch a burst of 100",
            "Toggle the task stream",
            "Pick the model",
            "Pin to the selected peer",
            "Clear finished tasks",
            "Focus the logs",
            "Help",
            "Quit",
        ):
            assert title in titles
        await pilot.press("l")
        assert app.focused is app.logs_pane
        await pilot.press("q")


async def test_log_records_from_any_thread_reach_the_log_pane(
    fake_node: FakeNode, frozen_clock: FrozenClock
) -> None:
    app = make_app(fake_node, frozen_clock)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(lambda: app.node_running)
        before = app.logs_pane.lines_written
        logging.getLogger("p2pai.node").warning("from the loop")
        thread = threading.Thread(
            target=lambda: logging.getLogger("p2pai.worker").warning("from a thread")
        )
        thread.start()
        thread.join()
        logging.getLogger("p2pai.node").debug("below the level: not shown")
        await wait_until(lambda: app.logs_pane.lines_written == before + 2, what="log lines")
        text = "\n".join(str(line.text) for line in app.logs_pane.lines)
        assert "from the loop" in text and "from a thread" in text
        assert "below the level" not in text
        await pilot.press("q")
    # The handler is gone with the app.
    assert not any(type(h).__name__ == "ConsoleLogHandler" for h in logging.getLogger().handlers)


async def test_any_exit_stops_the_node(fake_node: FakeNode, frozen_clock: FrozenClock) -> None:
    app = make_app(fake_node, frozen_clock)
    async with app.run_test(size=SIZE):
        await wait_until(lambda: app.node_running)
        app.exit()  # not through q: e.g. an exception or another binding
    assert fake_node.stopped
