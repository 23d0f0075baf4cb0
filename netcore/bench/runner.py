"""``p2pai bench``: every performance figure beside its baseline, measured in the same run.

Sections (each a function returning plain JSON-able dicts; field names are stable, see
``docs/benchmarks.md``):

* ``discovery`` and ``scale``, for each N: N ``p2pai node --json`` processes start at once;
  the time to a full mesh, the idle CPU and RSS of each process and the heartbeat (``ping``)
  rate; then a newcomer starts, ``rounds`` times: when each running node sees it
  (``peer_up``) and when it sees them all;
* ``round_trip``: digits, two processes, one task in flight: p2pai beside a bare pyzmq
  asyncio DEALER/ROUTER exchange running the same model (``benchmarks/raw_zmq_server.py``)
  and beside a direct in-process onnxruntime call (run after, in this process);
* ``throughput``: 100 in flight from one requester to 1, 2 and 4 workers, beside the raw
  exchange to as many raw servers; ``batched``: samples/s in batches of 64, 8 in flight;
* ``console``: the Textual console on a real node: events handled per second under bursts
  and key latency while a stream runs.

p2pai and the raw exchange are compared *interleaved*: both are started and warmed up
(200 tasks per worker or server) and stay up together, and the measurement alternates
between them, so both see the same machine conditions on a shared, noisy machine. The round
trip alternates blocks of 100 sequential tasks (p2pai, raw, p2pai, ...) until each has run
``tasks``; p50/p99 are over all of a side's tasks (its ``throughput_tps`` comes from
interleaved floods of 100 in flight, run after, on the same two sessions). Throughput and batched alternate 4 floods
(p2pai, then raw, each a quarter of the tasks); a side's rate is its total tasks over its
total elapsed time. Each such entry carries ``"interleaved": true``.

Every node binds to 127.0.0.1 and uses a network name unique to the run; every process
started here is stopped by its pid, also on errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import platform
import queue
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np

SCHEMA = "p2pai-bench/1"
LOOPBACK = "127.0.0.1"
RAW_SERVER = Path(__file__).resolve().parent.parent / "benchmarks" / "raw_zmq_server.py"


def log(message: str) -> None:
    print(f"[bench] {message}", file=sys.stderr, flush=True)


def pct(values: Iterable[float], q: float) -> float | None:
    data = list(values)
    return round(float(np.percentile(data, q)), 3) if data else None


def summary(values: Iterable[float]) -> dict[str, Any]:
    data = list(values)
    return {"p50": pct(data, 50), "p99": pct(data, 99), "n": len(data)}


def unique_network(tag: str) -> str:
    return f"bench-{tag}-{secrets.token_hex(4)}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((LOOPBACK, 0))
        return int(s.getsockname()[1])


# --- processes ------------------------------------------------------------------------------


class NodeProc:
    """A ``p2pai node`` child process; with ``events`` its ``--json`` lines are read by a thread."""

    def __init__(self, network: str, data_dir: Path, name: str, events: bool = True) -> None:
        self.name = name
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "netcore.cli", "node", *(["--json"] if events else []),
             "--interface", LOOPBACK, "--network", network, "--data-dir", str(data_dir),
             "--name", name, "--log-level", "warning"],
            stdout=subprocess.PIPE if events else subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL, text=True,
        )  # fmt: skip
        self.pid = self.proc.pid
        self.history: list[dict[str, Any]] = []
        self._new: queue.Queue[None] = queue.Queue()
        self.peer_up: dict[str, float] = {}
        """peer_id -> wall time of its first ``peer_up``."""
        self.ready: dict[str, Any] | None = None
        if events:
            threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            kind = event.get("event")
            if kind == "peer_up":
                self.peer_up.setdefault(event.get("peer_id", ""), event["t"])
            elif kind == "ready":
                self.ready = event
            self.history.append(event)
            self._new.put(None)

    def wait(self, kind: str, timeout: float = 30.0, **match: Any) -> dict[str, Any]:
        """The first event of ``kind`` matching ``match`` (already seen or still to come)."""
        deadline = time.monotonic() + timeout
        checked = 0
        while True:
            while checked < len(self.history):
                event = self.history[checked]
                checked += 1
                if event.get("event") == kind and all(event.get(k) == v for k, v in match.items()):
                    return event
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None:
                raise TimeoutError(f"{self.name}: no {kind} {match}")
            with contextlib.suppress(queue.Empty):
                self._new.get(timeout=min(remaining, 0.2))

    def wait_ready(self, timeout: float = 60.0) -> dict[str, Any]:
        self.ready = self.wait("ready", timeout)
        return self.ready

    @property
    def peer_id(self) -> str:
        assert self.ready is not None
        return str(self.ready["peer_id"])

    def terminate(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGTERM)

    def reap(self, timeout: float = 10.0) -> None:
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.proc.wait()

    def stop(self) -> None:
        self.terminate()
        self.reap()


def stop_all(procs: Iterable[NodeProc]) -> None:
    """SIGTERM every process by pid, then wait for each (SIGKILL after 10 s)."""
    procs = list(procs)
    for p in procs:
        p.terminate()
    for p in procs:
        p.reap()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime of a process, from /proc (Linux); None elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


# --- discovery and scale ----------------------------------------------------------------------


async def _observer(network: str, data_dir: Path) -> Any:
    """An in-process node that joins the mesh to count heartbeats as one member sees them."""
    from netcore.config.settings import Config
    from netcore.node import Node

    node = Node(Config(interfaces=(LOOPBACK,), network=network, data_dir=data_dir,
                       name="bench-observer", caps=()))  # fmt: skip
    await node.start()
    return node


async def bench_mesh(workdir: Path, n: int, rounds: int, idle_s: float) -> dict[str, Any]:
    """N nodes at once: full mesh, idle cost, heartbeats; then ``rounds`` newcomers."""
    network = unique_network(f"n{n}")
    procs: list[NodeProc] = []
    observer = None
    result: dict[str, Any] = {"n": n}
    try:
        spawned = time.time()
        procs = [NodeProc(network, workdir / f"n{n}-{i}", f"n{n}-{i}") for i in range(n)]
        for p in procs:
            await asyncio.to_thread(p.wait_ready, 120.0)
        ids = {p.peer_id for p in procs}
        first_ready = min(p.ready["t"] for p in procs if p.ready)
        last_ready = max(p.ready["t"] for p in procs if p.ready)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if all(ids - {p.peer_id} <= p.peer_up.keys() for p in procs):
                break
            await asyncio.sleep(0.05)
        else:
            raise TimeoutError(f"no full mesh of {n} nodes in 120 s")
        meshed = max(max(p.peer_up[q] for q in ids - {p.peer_id}) for p in procs)
        result["mesh"] = {
            "from_last_ready_s": round(meshed - last_ready, 3),
            "from_first_ready_s": round(meshed - first_ready, 3),
            "from_spawn_s": round(meshed - spawned, 3),
        }
        log(f"N={n}: full mesh {meshed - last_ready:.3f} s after the last node was ready")
        # Idle: every process only heartbeats now. The observer joins first, then settles.
        observer = await _observer(network, workdir / f"n{n}-observer")
        await observer.wait_for_peers(n, 60, kind=None)
        await asyncio.sleep(min(3.0, idle_s))
        sent0, recv0 = observer.counters["pings_sent"], observer.counters["pings_received"]
        cpu0 = {p.pid: cpu_seconds(p.pid) for p in procs}
        t0 = time.monotonic()
        await asyncio.sleep(idle_s)
        elapsed = time.monotonic() - t0
        cpu1 = {p.pid: cpu_seconds(p.pid) for p in procs}
        pings = (observer.counters["pings_sent"] - sent0 + observer.counters["pings_received"]
                 - recv0) / elapsed  # fmt: skip
        cpu_pct = [
            100 * (after - before) / elapsed
            for k, before in cpu0.items()
            if before is not None and (after := cpu1.get(k)) is not None
        ]
        rss = [r for r in (rss_mb(p.pid) for p in procs) if r is not None]
        result["idle"] = {
            "window_s": round(elapsed, 2),
            "cpu_pct_mean": round(float(np.mean(cpu_pct)), 3) if cpu_pct else None,
            "cpu_pct_max": round(float(np.max(cpu_pct)), 3) if cpu_pct else None,
            "rss_mb_mean": round(float(np.mean(rss)), 1) if rss else None,
            "rss_mb_max": round(float(np.max(rss)), 1) if rss else None,
            "pings_per_s_per_node": round(pings, 1),
            "pings_per_s_mesh": round(pings * (n + 1) / 2, 1),
        }
        await observer.stop()
        observer = None
        log(f"N={n}: idle {result['idle']}")
        # Newcomers.
        seen_each: list[float] = []
        seen_all: list[float] = []
        late_all: list[float] = []
        for r in range(rounds):
            late = NodeProc(network, workdir / f"n{n}-late{r}", f"n{n}-late{r}")
            try:
                await asyncio.to_thread(late.wait_ready, 60.0)
                t0w = late.ready["t"] if late.ready else 0.0
                times = [
                    (await asyncio.to_thread(p.wait, "peer_up", 30.0, peer_id=late.peer_id))["t"]
                    - t0w
                    for p in procs
                ]
                seen_each.extend(t * 1000 for t in times)
                seen_all.append(max(times) * 1000)
                own = [
                    (await asyncio.to_thread(late.wait, "peer_up", 30.0, peer_id=p.peer_id))["t"]
                    for p in procs
                ]
                late_all.append((max(own) - t0w) * 1000)
            finally:
                late.stop()
            for p in procs:
                await asyncio.to_thread(p.wait, "peer_down", 30.0, peer_id=late.peer_id)
        result["discovery"] = {
            "rounds": rounds,
            "new_node_seen_by_each_ms": summary(seen_each),
            "new_node_seen_by_all_ms": summary(seen_all),
            "late_node_sees_all_ms": summary(late_all),
        }
        log(f"N={n}: discovery {result['discovery']}")
    finally:
        if observer is not None:
            await observer.stop()
        await asyncio.to_thread(stop_all, procs)
    return result


# --- round trip and throughput ----------------------------------------------------------------
#
# Both systems run at the same time and are measured in alternating blocks (p2pai, raw, p2pai,
# raw, ...), so machine noise (other load, frequency scaling) hits both alike and the ratio of
# the two is meaningful on a shared machine.


def _task_payload(x: np.ndarray, i: int, batch: int = 1) -> bytes:
    import msgpack

    from netcore.wire import protocol

    start = (i * batch) % (len(x) - batch + 1)
    return msgpack.packb({
        "v": 1, "t": "task", "id": os.urandom(16), "kind": "infer", "model": "digits",
        "inputs": {"input": protocol.encode_tensor(x[start:start + batch])}, "timeout_ms": 5000,
    }, use_bin_type=True)  # fmt: skip


class Exchange(Protocol):
    """One side of the comparison, up and warmed: see :func:`p2pai_session`, :func:`raw_session`."""

    async def sequential(self, start_index: int, count: int) -> list[float]:
        """Latencies (ms) of ``count`` tasks, one in flight."""
        ...

    async def flood(self, start_index: int, count: int, inflight: int) -> tuple[float, int]:
        """Elapsed seconds and failed count of ``count`` tasks, ``inflight`` in flight."""
        ...


class RawSession:
    """The baseline: a bare pyzmq asyncio DEALER connected to raw ROUTERs running the model."""

    def __init__(self, dealer: Any, x: np.ndarray, batch: int, pids: list[int]) -> None:
        self.dealer = dealer
        self.x = x
        self.batch = batch
        self.pids = pids
        """The raw server processes."""

    async def sequential(self, start_index: int, count: int) -> list[float]:
        latencies = []
        for i in range(start_index, start_index + count):
            t = time.perf_counter()
            await self.dealer.send(_task_payload(self.x, i, self.batch))
            await self.dealer.recv()
            latencies.append((time.perf_counter() - t) * 1000)
        return latencies

    async def flood(self, start_index: int, count: int, inflight: int) -> tuple[float, int]:
        """One DEALER with ``inflight`` requests outstanding (a reply frees a slot)."""
        end = start_index + count
        t = time.perf_counter()
        sent = start_index
        for _ in range(min(inflight, count)):
            await self.dealer.send(_task_payload(self.x, sent, self.batch))
            sent += 1
        for _ in range(count):
            await self.dealer.recv()
            if sent < end:
                await self.dealer.send(_task_payload(self.x, sent, self.batch))
                sent += 1
        return time.perf_counter() - t, 0  # the raw server has no failure reply


@contextlib.asynccontextmanager
async def raw_session(x: np.ndarray, servers: int = 1, batch: int = 1) -> AsyncIterator[RawSession]:
    """``servers`` raw server processes (``benchmarks/raw_zmq_server.py``) and one DEALER to
    them all, warmed with 200 tasks per server; on exit each server gets a ``stop`` message,
    then is waited for by pid (SIGKILL after 3 s), also on errors."""
    import msgpack
    import zmq
    import zmq.asyncio

    if not RAW_SERVER.exists():
        raise RuntimeError(f"{RAW_SERVER} is missing: run the benchmark from a source checkout")
    procs: list[subprocess.Popen[str]] = []
    ctx = zmq.asyncio.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    connected = False
    try:
        ports = [free_port() for _ in range(servers)]
        for port in ports:
            procs.append(subprocess.Popen([sys.executable, str(RAW_SERVER), str(port)],
                                          stdout=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                          text=True))  # fmt: skip
        for proc in procs:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if line.strip() != "ready":
                raise RuntimeError(f"raw server (pid {proc.pid}) did not start")
        for port in ports:
            dealer.connect(f"tcp://{LOOPBACK}:{port}")
        connected = True
        await asyncio.sleep(0.1)
        for i in range(200 * servers):  # warm up (and spread over the servers)
            await dealer.send(_task_payload(x, i, batch))
            await dealer.recv()
        yield RawSession(dealer, x, batch, [proc.pid for proc in procs])
    finally:
        if connected:  # one stop per server: the DEALER deals them out round robin
            for _ in procs:
                with contextlib.suppress(zmq.ZMQError, asyncio.TimeoutError):
                    await asyncio.wait_for(dealer.send(msgpack.packb({"t": "stop"})), 1.0)
            await asyncio.sleep(0.05)
        dealer.close(0)
        ctx.term()
        for proc in procs:
            try:
                proc.wait(3)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(proc.pid, signal.SIGKILL)
                proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


class P2paiSession:
    """p2pai: an in-process client Node submitting to worker processes (CURVE, validation,
    scheduling, digest check included)."""

    def __init__(self, client: Any, x: np.ndarray, batch: int, pids: list[int]) -> None:
        self.client = client
        self.x = x
        self.batch = batch
        self.pids = pids
        """The worker processes."""

    def rows(self, i: int) -> np.ndarray:
        start = (i * self.batch) % (len(self.x) - self.batch + 1)
        return self.x[start : start + self.batch]

    async def sequential(self, start_index: int, count: int) -> list[float]:
        latencies = []
        for i in range(start_index, start_index + count):
            t = time.perf_counter()
            outcome = await self.client.submit("digits", self.rows(i))
            latencies.append((time.perf_counter() - t) * 1000)
            if not outcome.ok:
                raise RuntimeError(f"task failed: {outcome.error}")
        return latencies

    async def flood(self, start_index: int, count: int, inflight: int) -> tuple[float, int]:
        """``inflight`` lanes, each awaiting one ``submit`` after the other."""
        end = start_index + count
        next_i = start_index
        failed = 0

        async def lane() -> None:
            nonlocal next_i, failed
            while next_i < end:
                i = next_i
                next_i += 1
                if not (await self.client.submit("digits", self.rows(i))).ok:
                    failed += 1

        t = time.perf_counter()
        await asyncio.gather(*(lane() for _ in range(inflight)))
        return time.perf_counter() - t, failed


@contextlib.asynccontextmanager
async def p2pai_session(
    workdir: Path, x: np.ndarray, workers: int = 1, batch: int = 1
) -> AsyncIterator[P2paiSession]:
    """``workers`` ``p2pai node`` processes and an in-process client Node on a network of
    their own, warmed with 200 tasks per worker; every worker is stopped by its pid on exit,
    also on errors."""
    from netcore.config.settings import Config
    from netcore.node import Node

    network = unique_network(f"w{workers}")
    procs: list[NodeProc] = []
    try:
        for i in range(workers):
            procs.append(NodeProc(network, workdir / f"{network}-w{i}", f"w{i}", events=False))
        config = Config(interfaces=(LOOPBACK,), network=network, data_dir=workdir / f"{network}-client",
                        name="bench-client", caps=())  # fmt: skip
        async with Node(config) as client:
            found = await client.wait_for_peers(workers, 60, model="digits")
            if len(found) < workers:
                raise TimeoutError(f"only {len(found)} of {workers} workers came up")
            session = P2paiSession(client, x, batch, [p.pid for p in procs])
            for i in range(200 * workers):  # warm up every worker
                await client.submit("digits", session.rows(i))
            yield session
    finally:
        await asyncio.to_thread(stop_all, procs)


async def interleaved_latencies(
    mine: Exchange, raw: Exchange, tasks: int, block: int = 100
) -> tuple[list[float], list[float]]:
    """``tasks`` sequential tasks on each side, in alternating blocks of ``block``."""
    lat_mine: list[float] = []
    lat_raw: list[float] = []
    done = 0
    while done < tasks:
        n = min(block, tasks - done)
        lat_mine += await mine.sequential(done, n)
        lat_raw += await raw.sequential(done, n)
        done += n
    return lat_mine, lat_raw


async def interleaved_floods(
    mine: Exchange, raw: Exchange, tasks: int, inflight: int, rounds: int = 4
) -> tuple[tuple[float, int], tuple[float, int]]:
    """``tasks`` tasks on each side as ``rounds`` alternating floods (p2pai, then raw);
    per side the total elapsed seconds and failed count."""
    elapsed = [0.0, 0.0]
    failed = [0, 0]
    done = 0
    for r in range(rounds):
        n = tasks // rounds + (1 if r < tasks % rounds else 0)
        for k, side in enumerate((mine, raw)):
            seconds, lost = await side.flood(done, n, inflight)
            elapsed[k] += seconds
            failed[k] += lost
        done += n
    return (elapsed[0], failed[0]), (elapsed[1], failed[1])


def _rates(tasks: int, batch: int, elapsed: float) -> dict[str, float]:
    return {
        "throughput_tps": round(tasks / elapsed, 1),
        "samples_per_s": round(tasks * batch / elapsed, 1),
    }


def direct_onnxruntime(x: np.ndarray, tasks: int, batch: int = 1) -> dict[str, Any]:
    from netcore.models.registry import LoadedModel, ModelRegistry, assets_dir

    spec = ModelRegistry([assets_dir() / "models"]).find("digits")
    assert spec is not None
    model = LoadedModel(spec)
    for i in range(50):
        model.run({"input": x[i : i + batch]})
    latencies = []
    t0 = time.perf_counter()
    for i in range(tasks):
        start = (i * batch) % (len(x) - batch + 1)
        rows = x[start : start + batch]
        t = time.perf_counter()
        model.run({"input": rows})
        latencies.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - t0
    return {"latency_ms": summary(latencies), "samples_per_s": round(tasks * batch / elapsed, 1)}


# --- the console ------------------------------------------------------------------------------


async def bench_console(workdir: Path, bursts: int, key_presses: int) -> dict[str, Any]:
    """The Textual console on a real node with one worker process: bursts of 100 tasks (b),
    then key latency (c, clear finished) while a stream of tasks (r) runs."""
    from netcore.config.settings import Config
    from netcore.node import Node

    try:
        from tui.app import BURST, P2PConsole
    except ImportError as exc:  # the console is part of the distribution; say so if it is not
        return {"skipped": f"tui not importable: {exc}"}
    network = unique_network("tui")
    worker = NodeProc(network, workdir / "tui-worker", "tui-worker", events=False)
    try:
        node = Node(Config(interfaces=(LOOPBACK,), network=network, data_dir=workdir / "tui-node",
                           name="bench-console", caps=()))  # fmt: skip
        handled = 0
        make_subscription = node.events

        class Counting:
            def __init__(self) -> None:
                self.sub = make_subscription()

            def __aiter__(self) -> Counting:
                return self

            async def __anext__(self) -> Any:
                nonlocal handled
                item = await self.sub.__anext__()
                handled += 1
                return item

        node.events = Counting  # type: ignore[method-assign,assignment]
        app = P2PConsole(node, seed=1, log_timestamps=False, stream_rate=500.0)
        out: dict[str, Any] = {}
        try:
            async with app.run_test(size=(120, 40)) as pilot:
                await _until(lambda: len(node.usable_peers(model="digits")) >= 1, 60)
                await pilot.press("d")
                await _until(lambda: app.book.counters.done + app.book.counters.failed >= 1, 30)
                base_done = app.book.counters.done + app.book.counters.failed
                await pilot.pause(0.3)
                h0 = handled
                t0 = time.perf_counter()
                for _ in range(bursts):
                    await pilot.press("b")
                target = base_done + bursts * BURST
                await _until(
                    lambda: app.book.counters.done + app.book.counters.failed >= target, 120
                )
                await pilot.pause()
                elapsed = time.perf_counter() - t0
                out["tasks"] = bursts * BURST
                out["events_handled"] = handled - h0
                out["events_per_s"] = round((handled - h0) / elapsed, 1)
                out["tasks_per_s"] = round(bursts * BURST / elapsed, 1)
                out["failed"] = app.book.counters.failed
                await pilot.press("r")  # a stream of tasks while keys are pressed
                await pilot.pause(0.5)
                latencies = []
                for _ in range(key_presses):
                    t = time.perf_counter()
                    await pilot.press("c")
                    latencies.append((time.perf_counter() - t) * 1000)
                    await pilot.pause(0.02)
                await pilot.press("r")
                out["key_latency_ms"] = summary(latencies)
                out["stream_rate"] = 500.0
                await pilot.press("q")
        finally:
            await node.stop()
    finally:
        await asyncio.to_thread(worker.stop)
    return out


async def _until(check: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise TimeoutError("benchmark condition not met in time")
        await asyncio.sleep(0.01)


# --- the whole run ----------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    import onnxruntime
    import zeroconf
    import zmq

    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mem = None
    with contextlib.suppress(OSError, ValueError, IndexError):
        mem = round(int(Path("/proc/meminfo").read_text().split()[1]) / 1024 / 1024, 1)
    return {
        "cpus": os.cpu_count(), "cpu_model": model, "memory_gib": mem,
        "platform": platform.platform(), "python": platform.python_version(),
        "zmq": zmq.zmq_version(), "pyzmq": zmq.__version__,
        "onnxruntime": onnxruntime.__version__, "zeroconf": zeroconf.__version__,
    }  # fmt: skip


def targets(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The issue's targets, each with its measured value and whether it is met."""
    out: list[dict[str, Any]] = []

    def add(name: str, measured: Any, limit: Any, met: bool | None) -> None:
        out.append({"target": name, "measured": measured, "limit": limit, "met": met})

    by_n = {m["n"]: m for m in result.get("mesh", [])}
    if 10 in by_n and "discovery" in by_n[10]:
        v = by_n[10]["discovery"]["new_node_seen_by_each_ms"]["p50"]
        add("new node seen by running nodes, p50 at N=10 (ms)", v, 10, v is not None and v < 10)
    if 50 in by_n:
        v = by_n[50]["mesh"]["from_last_ready_s"]
        add("full mesh of 50 nodes (s, from the last ready)", v, 5, v < 5)
        idle = by_n[50]["idle"]
        add(
            "idle node CPU at 50 peers (% of a core, mean)",
            idle["cpu_pct_mean"],
            1,
            idle["cpu_pct_mean"] is not None and idle["cpu_pct_mean"] < 1,
        )
        add(
            "idle node RSS at 50 peers (MB, max)",
            idle["rss_mb_max"],
            100,
            idle["rss_mb_max"] is not None and idle["rss_mb_max"] < 100,
        )
    rt = result.get("round_trip")
    if rt:
        ratio = rt["ratio_p50"]
        add("round trip p50 / raw pyzmq p50", ratio, 1.5, ratio is not None and ratio <= 1.5)
        p99 = rt["p2pai"]["latency_ms"]["p99"]
        add("round trip p99 (ms)", p99, 2, p99 is not None and p99 < 2)
    for row in result.get("throughput", []):
        if row["workers"] == 1:
            add(
                "throughput, 100 in flight, 1 worker / raw pyzmq",
                row["ratio"],
                0.7,
                row["ratio"] >= 0.7,
            )
    return out


async def run(quick: bool, sections: set[str] | None = None) -> dict[str, Any]:
    from netcore.models.registry import load_samples

    x, _ = load_samples()
    x = np.ascontiguousarray(x, dtype=np.float32)
    want = sections or {"mesh", "round_trip", "throughput", "batched", "console"}
    ns = [2, 10] if quick else [2, 10, 25, 50]
    rounds = 5 if quick else 10
    idle_s = 3.0 if quick else 10.0
    tasks = 1000 if quick else 3000
    result: dict[str, Any] = {"schema": SCHEMA, "quick": quick, "machine": machine(),
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z")}  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="p2pai-bench-") as tmp:
        workdir = Path(tmp)
        if "mesh" in want:
            result["mesh"] = [await bench_mesh(workdir, n, rounds, idle_s) for n in ns]
        if "round_trip" in want:
            log("round trip (interleaved)")
            async with p2pai_session(workdir, x) as mine_s, raw_session(x) as raw_s:
                lat_mine, lat_raw = await interleaved_latencies(mine_s, raw_s, tasks)
                (t_mine, failed), (t_raw, _) = await interleaved_floods(mine_s, raw_s, tasks, 100)
            direct = direct_onnxruntime(x, tasks)
            mine: dict[str, Any] = {
                "latency_ms": summary(lat_mine),
                **_rates(tasks, 1, t_mine),
                "failed": failed,
            }
            raw: dict[str, Any] = {"latency_ms": summary(lat_raw), **_rates(tasks, 1, t_raw)}
            p50, raw50 = mine["latency_ms"]["p50"], raw["latency_ms"]["p50"]
            result["round_trip"] = {
                "tasks": tasks, "interleaved": True, "p2pai": mine, "raw_pyzmq": raw,
                "direct_onnxruntime": direct,
                "ratio_p50": round(p50 / raw50, 3) if p50 and raw50 else None,
            }  # fmt: skip
            log(f"round trip {result['round_trip']}")
        if "throughput" in want:
            rows = []
            for k in (1, 2, 4):
                log(f"throughput, {k} worker(s) (interleaved)")
                total = tasks * 2
                async with (
                    p2pai_session(workdir, x, workers=k) as mine_s,
                    raw_session(x, servers=k) as raw_s,
                ):
                    (t_mine, failed), (t_raw, _) = await interleaved_floods(
                        mine_s, raw_s, total, 100
                    )
                mine_tps, raw_tps = total / t_mine, total / t_raw
                rows.append({
                    "workers": k, "inflight": 100, "tasks": total, "interleaved": True,
                    "p2pai_tps": round(mine_tps, 1), "raw_pyzmq_tps": round(raw_tps, 1),
                    "ratio": round(mine_tps / raw_tps, 3), "failed": failed,
                })  # fmt: skip
                log(f"throughput {rows[-1]}")
            result["throughput"] = rows
        if "batched" in want:
            log("batched (interleaved)")
            batch, count = 64, tasks // 5
            async with (
                p2pai_session(workdir, x, batch=batch) as mine_s,
                raw_session(x, batch=batch) as raw_s,
            ):
                (t_mine, failed), (t_raw, _) = await interleaved_floods(mine_s, raw_s, count, 8)
            if failed:
                log(f"batched: {failed} p2pai task(s) failed")
            direct = direct_onnxruntime(x, count, batch=batch)
            result["batched"] = {
                "batch": batch, "inflight": 8, "tasks": count, "interleaved": True,
                "p2pai_samples_per_s": _rates(count, batch, t_mine)["samples_per_s"],
                "raw_pyzmq_samples_per_s": _rates(count, batch, t_raw)["samples_per_s"],
                "direct_samples_per_s": direct["samples_per_s"],
            }  # fmt: skip
            log(f"batched {result['batched']}")
        if "console" in want:
            log("console")
            result["console"] = await bench_console(
                workdir, 3 if quick else 10, 20 if quick else 50
            )
            log(f"console {result['console']}")
    result["targets"] = targets(result)
    return result


def print_human(result: dict[str, Any]) -> None:
    print(f"p2pai bench ({'quick' if result['quick'] else 'full'}) on {result['machine']['cpus']} CPUs, "
          f"{result['machine']['platform']}")  # fmt: skip
    for m in result.get("mesh", []):
        d, idle = m.get("discovery", {}), m.get("idle", {})
        print(f"N={m['n']:>3}  mesh {m['mesh']['from_last_ready_s']:.3f} s  "
              f"seen by each p50 {d['new_node_seen_by_each_ms']['p50']} ms p99 {d['new_node_seen_by_each_ms']['p99']} ms  "
              f"late sees all p50 {d['late_node_sees_all_ms']['p50']} ms  "
              f"idle cpu {idle['cpu_pct_mean']}%  rss {idle['rss_mb_mean']} MB  pings/s/node {idle['pings_per_s_per_node']}")  # fmt: skip
    rt = result.get("round_trip")
    if rt:
        print(f"round trip p50/p99 ms: p2pai {rt['p2pai']['latency_ms']['p50']}/{rt['p2pai']['latency_ms']['p99']}  "
              f"raw pyzmq {rt['raw_pyzmq']['latency_ms']['p50']}/{rt['raw_pyzmq']['latency_ms']['p99']}  "
              f"direct onnxruntime {rt['direct_onnxruntime']['latency_ms']['p50']}  ratio {rt['ratio_p50']}")  # fmt: skip
    for row in result.get("throughput", []):
        print(
            f"throughput {row['workers']} worker(s): p2pai {row['p2pai_tps']}/s  raw {row['raw_pyzmq_tps']}/s  ratio {row['ratio']}"
        )
    b = result.get("batched")
    if b:
        print(f"batched x{b['batch']}: p2pai {b['p2pai_samples_per_s']} samples/s  raw {b['raw_pyzmq_samples_per_s']}  "
              f"direct {b['direct_samples_per_s']}")  # fmt: skip
    c = result.get("console")
    if c and "events_per_s" in c:
        print(f"console: {c['events_per_s']} events/s handled, key latency p50 {c['key_latency_ms']['p50']} ms "
              f"p99 {c['key_latency_ms']['p99']} ms")  # fmt: skip
    for t in result.get("targets", []):
        print(
            f"  [{'met' if t['met'] else 'MISSED'}] {t['target']}: {t['measured']} (limit {t['limit']})"
        )


def register(cli: Any) -> None:
    """Add ``p2pai bench`` to the command group."""
    import click

    @cli.command()
    @click.option(
        "--json", "as_json", is_flag=True, help="Print one JSON object (stable field names)."
    )
    @click.option(
        "--quick", is_flag=True, help="N = 2, 10 only, fewer rounds and tasks (a few minutes)."
    )
    @click.option("--only", multiple=True,
                  type=click.Choice(["mesh", "round_trip", "throughput", "batched", "console"]),
                  help="Run only these sections (repeatable).")  # fmt: skip
    def bench(as_json: bool, quick: bool, only: tuple[str, ...]) -> None:
        """Measure discovery, round trip, throughput, scale and the console, each beside its
        baseline in the same run. Everything binds to 127.0.0.1 on a private network name."""
        result = asyncio.run(run(quick, set(only) or None))
        if as_json:
            print(json.dumps(result, indent=2))
        else:
            print_human(result)


if __name__ == "__main__":  # python -m netcore.bench.runner [--quick]
    data = asyncio.run(run("--quick" in sys.argv))
    print(json.dumps(data, indent=2))
