"""State the console keeps between redraws: its tasks, its view of the peers, a latency window.

Nothing here imports Textual. The app mutates this state from message handlers and dispatch
tasks; the widgets render it on a timer as diffs. Keeping it plain makes it unit-testable and
lets high-rate updates coalesce: many events change the state, one tick draws it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from netcore.config.settings import Config
    from netcore.net.peers import Peer, PeerTable
    from netcore.observe.events import Event
    from netcore.tasks.scheduler import TaskOutcome


# --- what the console needs from a node ------------------------------------------------------


class RegistryLike(Protocol):
    def names(self) -> list[str]: ...


class NodeLike(Protocol):
    """The part of :class:`netcore.node.Node` the console uses (tests pass a fake)."""

    config: Config
    peers: PeerTable

    @property
    def registry(self) -> RegistryLike: ...

    @property
    def peer_id(self) -> str: ...

    @property
    def endpoint(self) -> str: ...

    def events(self) -> AsyncIterator[Event]: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    async def submit(self, model: str, inputs: np.ndarray, **options: Any) -> TaskOutcome: ...

    def usable_peers(self, kind: str | None = "infer", model: str | None = None) -> list[Peer]: ...


# --- tasks -----------------------------------------------------------------------------------

QUEUED = "queued"
RUNNING = "running"
RETRYING = "retrying"
DONE = "done"
FAILED = "failed"
ACTIVE_STATES = frozenset({QUEUED, RUNNING, RETRYING})


@dataclass(slots=True)
class TaskRecord:
    """One task this console dispatched, from the key press to its outcome."""

    seq: int
    """1, 2, 3... in dispatch order: the table sorts on it, newest first."""
    task_id: str
    """The id the node's scheduler uses too (passed to ``submit``), so retries match."""
    model: str
    pin: str | None = None
    expected: int | None = None
    """The sample's true label, when the samples carry labels."""
    state: str = QUEUED
    worker: str = ""
    latency_ms: float | None = None
    label: int | None = None
    confidence: float | None = None
    error: str = ""
    attempts: int = 0
    started: bool = False
    """It holds a dispatch slot and is inside ``Node.submit``."""
    journaled: str = ""
    """The journal run it is recorded in (netcore.tasks.journal); empty when it is not."""
    rev: int = 0
    """Bumped on every change, so a redraw touches only changed rows."""

    @property
    def finished(self) -> bool:
        return self.state not in ACTIVE_STATES


@dataclass(slots=True)
class TaskCounters:
    submitted: int = 0
    done: int = 0
    failed: int = 0
    retries: int = 0
    correct: int = 0
    judged: int = 0


class TaskBook:
    """Tasks by id in dispatch order; keeps every active task and the newest finished ones."""

    def __init__(self, keep_finished: int = 500) -> None:
        self.keep_finished = keep_finished
        self.records: dict[str, TaskRecord] = {}
        self.counters = TaskCounters()
        self._finished: deque[str] = deque()
        self._seq = 0

    def __len__(self) -> int:
        return len(self.records)

    def __iter__(self) -> Iterator[TaskRecord]:
        return iter(self.records.values())

    def get(self, task_id: str) -> TaskRecord | None:
        return self.records.get(task_id)

    def add(
        self, task_id: str, model: str, pin: str | None = None, expected: int | None = None
    ) -> TaskRecord:
        self._seq += 1
        record = TaskRecord(self._seq, task_id, model, pin=pin, expected=expected)
        self.records[task_id] = record
        self.counters.submitted += 1
        return record

    def start(self, task_id: str, workers_available: bool) -> None:
        record = self.records.get(task_id)
        if record is None or record.finished:
            return
        record.started = True
        if workers_available and record.state == QUEUED:
            record.state = RUNNING
        record.rev += 1

    def promote_waiting(self) -> None:
        """Started tasks that waited for a worker are running now that one is there."""
        for record in self.records.values():
            if record.started and record.state == QUEUED:
                record.state = RUNNING
                record.rev += 1

    def retry(self, task_id: str, worker: str) -> bool:
        record = self.records.get(task_id)
        if record is None or record.finished:
            return False
        record.state = RETRYING
        record.worker = worker
        record.attempts += 1
        record.rev += 1
        self.counters.retries += 1
        return True

    def finish(self, task_id: str, outcome: TaskOutcome) -> TaskRecord | None:
        record = self.records.get(task_id)
        if record is None or record.finished:
            return None
        record.worker = outcome.worker or ""
        record.latency_ms = outcome.latency_s * 1000
        record.attempts = outcome.attempts
        if outcome.ok:
            record.state = DONE
            record.label = outcome.label
            record.confidence = outcome.confidence
            self.counters.done += 1
            if record.expected is not None and record.label is not None:
                self.counters.judged += 1
                self.counters.correct += int(record.expected == record.label)
        else:
            record.state = FAILED
            record.error = (
                f"{outcome.error_code}: {outcome.error}" if outcome.error_code else outcome.error
            )
            self.counters.failed += 1
        record.rev += 1
        self._retire(task_id)
        return record

    def fail(self, task_id: str, error: str) -> None:
        record = self.records.get(task_id)
        if record is None or record.finished:
            return
        record.state = FAILED
        record.error = error
        record.rev += 1
        self.counters.failed += 1
        self._retire(task_id)

    def forget(self, task_id: str) -> None:
        """Drop a task that never ran (cancelled at quit)."""
        self.records.pop(task_id, None)

    def _retire(self, task_id: str) -> None:
        self._finished.append(task_id)
        while len(self._finished) > self.keep_finished:
            self.records.pop(self._finished.popleft(), None)

    def clear_finished(self) -> int:
        before = len(self.records)
        self.records = {k: r for k, r in self.records.items() if not r.finished}
        self._finished.clear()
        return before - len(self.records)

    def newest(self, limit: int) -> list[TaskRecord]:
        """The newest ``limit`` tasks, newest first."""
        out: list[TaskRecord] = []
        for record in reversed(self.records.values()):
            out.append(record)
            if len(out) >= limit:
                break
        return out

    def active_counts(self) -> dict[str, int]:
        counts = {QUEUED: 0, RUNNING: 0, RETRYING: 0}
        for record in self.records.values():
            if record.state in counts:
                counts[record.state] += 1
        return counts


# --- latency ---------------------------------------------------------------------------------


class LatencyWindow:
    """Recent round trips (ms) for the sparkline and percentiles, and completions for tasks/s."""

    def __init__(self, size: int = 120, rate_window: float = 5.0) -> None:
        self.samples: deque[float] = deque(maxlen=size)
        self.completions: deque[float] = deque()
        self.rate_window = rate_window
        self.version = 0

    def add(self, latency_ms: float, now: float) -> None:
        self.samples.append(latency_ms)
        self.completions.append(now)
        self.version += 1

    def percentile(self, q: float) -> float | None:
        if not self.samples:
            return None
        ordered = sorted(self.samples)
        index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
        return ordered[index]

    def rate(self, now: float) -> float:
        """Completions per second over the last ``rate_window`` seconds."""
        horizon = now - self.rate_window
        while self.completions and self.completions[0] < horizon:
            self.completions.popleft()
        return len(self.completions) / self.rate_window


# --- peers -----------------------------------------------------------------------------------

CONNECTING = "connecting"
ALIVE = "alive"
EVASIVE = "evasive"
GONE = "gone"
QUARANTINED = "quarantined"
"""A live peer whose reputation fell under the threshold: never sent a task (netcore.trust.manager)."""


@dataclass(slots=True)
class PeerRow:
    """The console's own record of a peer row: it outlives the node's entry for a moment
    (a peer that left greys out, then its row goes)."""

    peer_id: str
    name: str
    endpoint: str = ""
    state: str = ALIVE
    reason: str = ""
    gone_at: float | None = None


@dataclass(frozen=True, slots=True)
class PeerView:
    """One peer row as text, ready to diff against what is on screen."""

    key: str
    name: str
    endpoint: str
    state: str
    state_text: str
    rtt: str
    load: str
    done: str
    success: str
    uptime: str
    pinned: bool = False
    score: str = "-"
    """Reputation score 0-1 (netcore.trust.reputation)."""


def peer_view(row: PeerRow, peer: Peer | None, now: float, pinned: bool) -> PeerView:
    """Format one row from the console's record and, while it is known, the node's Peer."""
    rtt = load = done = success = uptime = score = "-"
    quarantine = ""
    name, endpoint = row.name, row.endpoint
    if peer is not None:
        name = peer.name or name
        endpoint = peer.endpoint or endpoint
        if peer.reach == "relayed":  # through a relay (netcore.net.relaying)
            endpoint = f"{peer.relay or '-'} (relayed)"
        elif peer.reach == "punched":  # through both NATs (netcore.net.punching)
            endpoint = f"{peer.punched_to or '-'} (punched)"
        elif peer.source in ("static", "shared"):  # not found by mDNS: say how (netcore.net.reach)
            endpoint = f"{endpoint} ({peer.source})"
        if peer.rtt is not None:
            rtt = f"{peer.rtt * 1000:.2f}"
        inflight = max(peer.inflight, peer.remote_inflight)
        load = f"{inflight}/{peer.capacity}"
        done = str(peer.tasks_ok)
        rate = peer.success_rate
        success = f"{rate:.0%}" if rate is not None else "-"
        uptime = format_duration(now - peer.first_seen)
        score = f"{peer.score:.2f}" if peer.score is not None else "-"
        quarantine = peer.quarantine
    state_text = (
        row.state if row.state != GONE else f"left ({row.reason})" if row.reason else "left"
    )
    state = row.state
    if quarantine and state in (ALIVE, EVASIVE):
        state = state_text = QUARANTINED
    return PeerView(
        key=row.peer_id,
        name=name or row.peer_id[:8],
        endpoint=endpoint or "-",
        state=state,
        state_text=state_text,
        rtt=rtt,
        load=load,
        done=done,
        success=success,
        uptime=uptime,
        pinned=pinned,
        score=score,
    )


def format_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def format_ms(value: float | None) -> str:
    if value is None:
        return "-"
    if value >= 1000:
        return f"{value / 1000:.2f} s"
    if value >= 100:
        return f"{value:.0f} ms"
    if value >= 10:
        return f"{value:.1f} ms"
    return f"{value:.2f} ms"


def advertised_models(peers: Iterable[Peer]) -> dict[str, int]:
    """Model name -> how many peers advertise it."""
    counts: dict[str, int] = {}
    for peer in peers:
        for name in {str(m.get("name")) for m in peer.models if m.get("name")}:
            counts[name] = counts.get(name, 0) + 1
    return counts


NO_PEERS_HINTS = (
    "Run `p2pai doctor` (same options) for a diagnosis with fixes, or check:\n"
    "  • the same --network name on every node\n"
    "  • the same subnet (nodes serve on {addresses})\n"
    "  • a firewall on the node's TCP port{port} and UDP 5353 (mDNS)\n"
    "  • multicast blocked by the Wi-Fi or switch: add a static --peer tcp://host:port#key\n"
    "  • or try `p2pai console --local 2` for a swarm on this machine"
)


def no_peers_text(network: str, endpoint: str, addresses: Iterable[str], waited: float) -> str:
    port = f" ({endpoint.rsplit(':', 1)[1]})" if ":" in endpoint.removeprefix("tcp://") else ""
    shown = ", ".join(addresses) or "the LAN addresses"
    return (
        f"No peers on network {network!r} after {format_duration(waited)}.\n"
        + NO_PEERS_HINTS.format(addresses=shown, port=port)
    )


@dataclass(slots=True)
class HeaderInfo:
    name: str = ""
    peer_id: str = ""
    endpoint: str = ""
    network: str = ""
    peers: int = 0
    model: str = ""
    pinned: str = ""
    streaming: bool = False
    status: str = "starting"
    served: int = 0
    local: int = 0
    """Local child peers started by ``--local``."""
