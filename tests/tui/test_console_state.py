"""The console's plain state: tasks, latency window, formatting, event translation."""

from __future__ import annotations

from netcore.net.peers import Peer, PeerState
from netcore.observe import events as ev
from netcore.tasks.scheduler import TaskOutcome
from tui.messages import EventTranslator, PeerJoined, PeerLoad, TaskRetried, TasksServed
from tui.state import (
    DONE,
    EVASIVE,
    FAILED,
    GONE,
    QUEUED,
    RUNNING,
    LatencyWindow,
    PeerRow,
    TaskBook,
    format_duration,
    format_ms,
    peer_view,
)


def outcome(task_id: str, ok: bool = True, label: int = 3) -> TaskOutcome:
    import numpy as np

    return TaskOutcome(
        task_id=task_id,
        ok=ok,
        model="digits",
        worker="w" if ok else None,
        latency_s=0.002,
        attempts=1,
        outputs={"label": np.array([label])} if ok else {},
        error_code="" if ok else "timeout",
        error="" if ok else "no answer",
        label_output="label",
    )


def test_task_book_life_cycle_and_bounds() -> None:
    book = TaskBook(keep_finished=3)
    records = [book.add(f"t{k}", "digits", expected=3) for k in range(6)]
    assert [r.seq for r in records] == [1, 2, 3, 4, 5, 6]
    book.start("t0", workers_available=False)
    assert records[0].state == QUEUED and records[0].started
    book.promote_waiting()
    assert records[0].state == RUNNING
    assert book.retry("t0", "w")
    for k in range(5):
        book.finish(f"t{k}", outcome(f"t{k}", ok=k != 4))
    assert records[0].state == DONE and records[4].state == FAILED
    assert records[4].error == "timeout: no answer"
    # Only the newest 3 finished ones are kept; the active one always stays.
    assert [r.task_id for r in book.newest(10)] == ["t5", "t4", "t3", "t2"]
    assert book.counters.done == 4 and book.counters.failed == 1 and book.counters.retries == 1
    assert book.counters.correct == 4 and book.counters.judged == 4
    assert book.finish("t0", outcome("t0")) is None, "an outcome counts once"
    assert book.clear_finished() == 3
    assert [r.task_id for r in book] == ["t5"]
    assert book.active_counts()[QUEUED] == 1


def test_latency_window() -> None:
    window = LatencyWindow(size=100, rate_window=5.0)
    assert window.percentile(50) is None
    for k in range(100):
        window.add(float(k + 1), now=10.0 + k * 0.01)
    assert window.percentile(50) in (50.0, 51.0)
    assert window.percentile(99) == 99.0
    assert window.rate(now=11.0) == 100 / 5.0
    assert window.rate(now=100.0) == 0.0


def test_formatting() -> None:
    assert format_duration(5) == "5s"
    assert format_duration(125) == "2m05s"
    assert format_duration(3700) == "1h01m"
    assert format_ms(None) == "-"
    assert format_ms(0.4213) == "0.42 ms"
    assert format_ms(42.13) == "42.1 ms"
    assert format_ms(421.3) == "421 ms"
    assert format_ms(4213) == "4.21 s"


def test_peer_view() -> None:
    peer = Peer(
        peer_id="p" * 20,
        key="k",
        name="alpha",
        endpoints=["tcp://127.0.0.1:1"],
        capacity=4,
        first_seen=100.0,
        rtt=0.00042,
        inflight=2,
        tasks_ok=3,
        tasks_failed=1,
    )
    view = peer_view(PeerRow(peer.peer_id, "alpha"), peer, now=165.0, pinned=True)
    assert (view.rtt, view.load, view.done, view.success, view.uptime) == (
        "0.42",
        "2/4",
        "3",
        "75%",
        "1m05s",
    )
    peer.state = PeerState.EVASIVE
    gone = peer_view(PeerRow(peer.peer_id, "alpha", state=GONE, reason="bye"), None, 0, False)
    assert gone.state_text == "left (bye)" and gone.rtt == "-"
    assert peer_view(PeerRow("x" * 20, "", state=EVASIVE), None, 0, False).name == "x" * 8


def test_peer_view_says_how_a_peer_is_reached() -> None:
    peer = Peer(peer_id="q" * 20, key="k", name="far", endpoints=["tcp://10.0.0.5:7"])
    row = PeerRow(peer.peer_id, "far")
    assert peer_view(row, peer, 0, False).endpoint == "tcp://10.0.0.5:7"
    peer.reach, peer.relay = "relayed", "tcp://203.0.113.7:7400"
    assert peer_view(row, peer, 0, False).endpoint == "tcp://203.0.113.7:7400 (relayed)"
    peer.reach, peer.punched_to = "punched", "198.51.100.4:40123"
    assert peer_view(row, peer, 0, False).endpoint == "198.51.100.4:40123 (punched)"
    # A reach change redraws the row, like a load change.
    moved = EventTranslator()(ev.PeerReach(peer_id=peer.peer_id, reach="punched"))
    assert isinstance(moved, PeerLoad) and moved.peer_id == peer.peer_id


def test_event_translation_and_coalescing() -> None:
    translate = EventTranslator()
    joined = translate(ev.PeerUp(peer_id="a", name="alpha", endpoint="tcp://x:1"))
    assert isinstance(joined, PeerJoined) and joined.name == "alpha"
    assert translate(ev.TaskDone(task_id="t", worker="a", ok=True, latency_ms=1.0)) is None
    retried = translate(ev.TaskRetry(task_id="t", worker="a", reason="timeout"))
    assert isinstance(retried, TaskRetried)
    load_a1, load_a2 = (
        translate(ev.PeerUpdated(peer_id="a", rtt_ms=1, inflight=0, queued=0, capacity=1))
        for _ in range(2)
    )
    load_b = translate(ev.PeerUpdated(peer_id="b", rtt_ms=1, inflight=0, queued=0, capacity=1))
    assert isinstance(load_a1, PeerLoad) and isinstance(load_a2, PeerLoad)
    assert load_a1.can_replace(load_a2) and not load_a1.can_replace(load_b)  # type: ignore[arg-type]
    served = [
        translate(ev.TaskServed(task_id="t", requester="r", ok=k != 1, took_us=5)) for k in range(3)
    ]
    last = served[-1]
    assert isinstance(last, TasksServed) and (last.ok, last.failed) == (2, 1)
    assert served[0].can_replace(last)  # type: ignore[union-attr]
