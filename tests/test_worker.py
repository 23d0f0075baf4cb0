"""Unit tests for the Worker: execution, protocol error codes, the bounded queue, cancel."""

from __future__ import annotations

import asyncio
import shutil
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path

import numpy as np
import pytest

from netcore.models.registry import LoadedModel, ModelRegistry, assets_dir, load_samples
from netcore.tasks.worker import Worker
from netcore.wire.protocol import TaskError

MODELS = assets_dir() / "models"
X, Y = load_samples()
ONE = {"input": X[:1]}
REQ = "requester-1"


def tid(n: int) -> bytes:
    return n.to_bytes(16, "big")


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry([MODELS])


def make_worker(
    registry: ModelRegistry, capacity: int = 2, queue_limit: int = 8, max_input_bytes: int = 1 << 20
) -> Worker:
    return Worker(
        registry, capacity=capacity, queue_limit=queue_limit, max_input_bytes=max_input_bytes
    )


@pytest.fixture
async def worker(registry: ModelRegistry) -> AsyncIterator[Worker]:
    w = make_worker(registry)
    yield w
    w.close()


async def until(condition: Callable[[], bool], turns: int = 500) -> None:
    """Let the loop turn until ``condition`` holds (no sleeping on the clock)."""
    for _ in range(turns):
        if condition():
            return
        await asyncio.sleep(0)
    raise AssertionError("condition never held")


class GatedModel:
    """Wraps the real model; each run blocks in its thread until the test opens the gate."""

    def __init__(self, real: LoadedModel, fail: bool = False) -> None:
        self.real = real
        self.fail = fail
        self.gate = threading.Event()
        self.runs = 0
        self.registry = ModelRegistry([])
        """A registry whose ``load`` hands out this model."""

    def is_quick(self) -> bool:
        return False  # always through the thread pool, so the loop stays free

    def run(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        self.runs += 1
        if not self.gate.wait(timeout=10):
            raise RuntimeError("gate never opened")
        if self.fail:
            raise RuntimeError("boom")
        return self.real.run(inputs)


@pytest.fixture
def gated(registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch) -> Iterator[GatedModel]:
    spec = registry.find("digits")
    assert spec is not None
    model = GatedModel(registry.load(spec))
    model.registry.add(spec)
    monkeypatch.setattr(model.registry, "load", lambda s: model)
    yield model
    model.gate.set()  # never leave a pool thread blocked


def gated_worker(model: GatedModel, capacity: int, queue_limit: int) -> Worker:
    return make_worker(model.registry, capacity=capacity, queue_limit=queue_limit)


# --- running ---------------------------------------------------------------------------------


async def test_execute_runs_digits(worker: Worker, registry: ModelRegistry) -> None:
    inputs = {"input": X[:5]}
    outputs, took_us = await worker.execute(REQ, tid(1), "digits", None, inputs, 5.0)
    assert set(outputs) == {"label", "probabilities"}
    assert outputs["label"].shape == (5,)
    assert outputs["label"].dtype == np.int64
    assert outputs["probabilities"].shape == (5, 10)
    spec = registry.find("digits")
    assert spec is not None
    direct = registry.load(spec).run(inputs)
    assert np.array_equal(outputs["label"], direct["label"])
    assert isinstance(took_us, int) and took_us >= 0
    assert (worker.served, worker.failed, worker.inflight, worker.queued) == (1, 0, 0, 0)


async def test_execute_with_the_right_sha256_pin(worker: Worker, registry: ModelRegistry) -> None:
    spec = registry.find("digits")
    assert spec is not None
    outputs, _ = await worker.execute(REQ, tid(1), "digits", spec.sha256, ONE, 5.0)
    assert outputs["label"].shape == (1,)


async def test_many_tasks_at_once_all_finish(worker: Worker) -> None:
    n = 40
    worker.queue_limit = n
    results = await asyncio.gather(
        *(
            worker.execute(REQ, tid(i), "digits", None, {"input": X[i : i + 1]}, 5.0)
            for i in range(n)
        )
    )
    labels = np.array([out["label"][0] for out, _ in results])
    assert Y is not None
    assert (labels == Y[:n]).mean() >= 0.9
    assert worker.served == n
    assert (worker.inflight, worker.queued) == (0, 0)


# --- refusals ------------------------------------------------------------------------------------


async def expect(code: str, run: object) -> TaskError:
    with pytest.raises(TaskError) as info:
        await run  # type: ignore[misc]
    assert info.value.code == code, info.value.message
    assert "\n" not in info.value.message
    return info.value


async def test_unknown_model(worker: Worker) -> None:
    await expect("unknown_model", worker.execute(REQ, tid(1), "mnist", None, ONE, 5.0))


async def test_unknown_sha256(worker: Worker) -> None:
    err = await expect("unknown_model", worker.execute(REQ, tid(1), "digits", "cd" * 32, ONE, 5.0))
    assert "cdcdcd" in err.message


@pytest.mark.parametrize(
    "inputs",
    [
        pytest.param({"input": np.zeros((1, 63), np.float32)}, id="63-columns"),
        pytest.param({"input": np.zeros((64,), np.float32)}, id="1-d"),
        pytest.param({"input": np.zeros((1, 8, 8), np.float32)}, id="8x8"),
        pytest.param({"input": np.zeros((0, 64), np.float32)}, id="no-rows"),
        pytest.param({"input": np.zeros((1, 64), np.float64)}, id="float64"),
        pytest.param({"pixels": np.zeros((1, 64), np.float32)}, id="wrong-name"),
        pytest.param({}, id="no-inputs"),
    ],
)
async def test_bad_input(worker: Worker, inputs: dict[str, np.ndarray]) -> None:
    await expect("bad_input", worker.execute(REQ, tid(1), "digits", None, inputs, 5.0))
    assert worker.served == 0


async def test_too_large(registry: ModelRegistry) -> None:
    nbytes = ONE["input"].nbytes  # 256
    exact = make_worker(registry, max_input_bytes=nbytes)
    small = make_worker(registry, max_input_bytes=nbytes - 1)
    try:
        await exact.execute(REQ, tid(1), "digits", None, ONE, 5.0)
        err = await expect("too_large", small.execute(REQ, tid(2), "digits", None, ONE, 5.0))
        assert str(nbytes - 1) in err.message
        await expect(
            "too_large", small.execute(REQ, tid(3), "digits", None, {"input": X[:100]}, 5.0)
        )
    finally:
        exact.close()
        small.close()


async def test_overloaded_with_no_queue(gated: GatedModel) -> None:
    worker = gated_worker(gated, capacity=1, queue_limit=0)
    try:
        first = asyncio.create_task(worker.execute(REQ, tid(1), "digits", None, ONE, 5.0))
        await until(lambda: worker.inflight == 1)
        await expect("overloaded", worker.execute(REQ, tid(2), "digits", None, ONE, 5.0))
        await expect("overloaded", worker.execute("other", tid(3), "digits", None, ONE, 5.0))
        gated.gate.set()
        outputs, _ = await first
        assert outputs["label"].shape == (1,)
        # Room again once the first is done.
        await worker.execute(REQ, tid(4), "digits", None, ONE, 5.0)
        assert gated.runs == 2
    finally:
        gated.gate.set()
        worker.close()


async def test_queue_limit_bounds_the_waiting_tasks(gated: GatedModel) -> None:
    worker = gated_worker(gated, capacity=1, queue_limit=2)
    try:
        running = [
            asyncio.create_task(worker.execute(REQ, tid(i), "digits", None, ONE, 5.0))
            for i in range(3)
        ]
        await until(lambda: worker.inflight == 1 and worker.queued == 2)
        await expect("overloaded", worker.execute(REQ, tid(9), "digits", None, ONE, 5.0))
        gated.gate.set()
        results = await asyncio.gather(*running)
        assert len(results) == 3
        assert (worker.inflight, worker.queued, worker.served) == (0, 0, 3)
    finally:
        gated.gate.set()
        worker.close()


# --- cancel and budget ---------------------------------------------------------------------------


async def test_cancel_a_queued_task(gated: GatedModel) -> None:
    worker = gated_worker(gated, capacity=1, queue_limit=1)
    try:
        first = asyncio.create_task(worker.execute(REQ, tid(1), "digits", None, ONE, 5.0))
        second = asyncio.create_task(worker.execute(REQ, tid(2), "digits", None, ONE, 5.0))
        await until(lambda: worker.inflight == 1 and worker.queued == 1)
        assert worker.cancel("someone-else", tid(2)) is False, "only the requester cancels"
        assert worker.cancel(REQ, tid(2)) is True
        gated.gate.set()
        await first
        await expect("cancelled", second)
        assert gated.runs == 1, "a cancelled task waiting in the queue never runs"
        assert (worker.served, worker.failed) == (1, 1)
        assert worker.cancel(REQ, tid(2)) is False, "nothing left to cancel"
    finally:
        gated.gate.set()
        worker.close()


async def test_cancel_a_running_task(gated: GatedModel) -> None:
    worker = gated_worker(gated, capacity=1, queue_limit=0)
    try:
        running = asyncio.create_task(worker.execute(REQ, tid(1), "digits", None, ONE, 5.0))
        await until(lambda: worker.inflight == 1)
        assert worker.cancel(REQ, tid(1)) is True
        gated.gate.set()
        await expect("cancelled", running)
        assert worker.served == 0
    finally:
        gated.gate.set()
        worker.close()


async def test_cancel_unknown_task(worker: Worker) -> None:
    assert worker.cancel(REQ, tid(77)) is False
    await worker.execute(REQ, tid(77), "digits", None, ONE, 5.0)
    assert worker.cancel(REQ, tid(77)) is False


async def test_budget_spent_in_the_queue_is_a_timeout(gated: GatedModel) -> None:
    worker = gated_worker(gated, capacity=1, queue_limit=1)
    try:
        first = asyncio.create_task(worker.execute(REQ, tid(1), "digits", None, ONE, 5.0))
        await until(lambda: worker.inflight == 1)
        late = asyncio.create_task(worker.execute(REQ, tid(2), "digits", None, ONE, 0.0))
        await until(lambda: worker.queued == 1)
        gated.gate.set()
        await first
        await expect("timeout", late)
        assert gated.runs == 1
    finally:
        gated.gate.set()
        worker.close()


async def test_inference_failure_is_internal(gated: GatedModel) -> None:
    gated.fail = True
    gated.gate.set()
    worker = gated_worker(gated, capacity=1, queue_limit=0)
    try:
        err = await expect("internal", worker.execute(REQ, tid(1), "digits", None, ONE, 5.0))
        assert "boom" in err.message
        assert (worker.inflight, worker.queued, worker.failed) == (0, 0, 1)
        # The slot was given back.
        gated.fail = False
        await worker.execute(REQ, tid(2), "digits", None, ONE, 5.0)
    finally:
        worker.close()


async def test_changed_model_file_is_internal(tmp_path: Path) -> None:
    shutil.copy(MODELS / "digits.json", tmp_path)
    shutil.copy(MODELS / "digits.onnx", tmp_path)
    onnx = tmp_path / "digits.onnx"
    data = bytearray(onnx.read_bytes())
    data[-1] ^= 0xFF
    onnx.write_bytes(bytes(data))
    worker = make_worker(ModelRegistry([tmp_path]))
    try:
        err = await expect("internal", worker.execute(REQ, tid(1), "digits", None, ONE, 5.0))
        assert "sha256" in err.message
    finally:
        worker.close()


# --- the synchronous path for quick models (Worker.run_now) ---------------------------------


def quick_registry() -> ModelRegistry:
    """A registry whose digits model is loaded and timed as quick (as after warm-up)."""
    reg = ModelRegistry([MODELS])
    spec = reg.find("digits")
    assert spec is not None
    loaded = reg.load(spec)
    loaded.run(ONE)
    loaded.typical_run_s = None
    for _ in range(3):
        loaded.run(ONE)
    assert loaded.is_quick()
    return reg


def test_run_now_runs_a_quick_loaded_model_on_the_spot() -> None:
    w = make_worker(quick_registry())
    done = w.run_now("digits", None, ONE)
    assert done is not None
    outputs, took_us = done
    assert int(outputs["label"][0]) == int(Y[0]) and took_us >= 0
    assert (w.served, w.inflight, w.failed) == (1, 0, 0)
    w.close()


def test_run_now_declines_what_execute_must_handle(registry: ModelRegistry) -> None:
    fresh = ModelRegistry([MODELS])  # nothing loaded yet: loading is execute's job
    assert make_worker(fresh).run_now("digits", None, ONE) is None
    w = make_worker(quick_registry(), max_input_bytes=64)
    assert w.run_now("mnist", None, ONE) is None  # unknown: execute fetches or refuses
    assert w.run_now("digits", None, {"input": X[:2]}) is None  # over max_input_bytes: too_large
    busy = make_worker(quick_registry(), capacity=1)
    busy.inflight = 1
    assert busy.run_now("digits", None, ONE) is None  # no free slot: queue behind the others
    busy.inflight, busy.queued = 0, 1
    assert busy.run_now("digits", None, ONE) is None  # someone waits: keep the order
    slow = quick_registry()
    spec = slow.find("digits")
    assert spec is not None
    model = slow.loaded(spec)
    assert model is not None
    model.typical_run_s = 1.0
    assert make_worker(slow).run_now("digits", None, ONE) is None  # slow: a thread's job


def test_run_now_refuses_inputs_that_do_not_fit() -> None:
    w = make_worker(quick_registry())
    with pytest.raises(TaskError) as err:
        w.run_now("digits", None, {"input": np.zeros((1, 3), np.float32)})
    assert err.value.code == "bad_input" and w.failed == 1 and w.inflight == 0


def test_a_model_timed_slow_once_becomes_quick_again() -> None:
    """The timing is a slowly rising minimum: one slow run (a thread waiting for the GIL)
    cannot keep a quick model off the synchronous path."""
    reg = quick_registry()
    spec = reg.find("digits")
    assert spec is not None
    model = reg.loaded(spec)
    assert model is not None
    model.typical_run_s = 0.5  # as if one run had waited half a second
    model.run(ONE)
    assert model.is_quick()


async def test_warm_up_is_no_use_even_when_a_task_runs_the_model_meanwhile() -> None:
    """The quota evicts fetched models least recently used first: a warm-up must neither
    count as a use nor undo a real task's use that happens while it runs (it saved and
    restored the last use around its runs, and so lost a task's use in between)."""
    registry = ModelRegistry([MODELS])
    worker = make_worker(registry)
    spec = registry.find("digits")
    assert spec is not None
    loaded = registry.load(spec)
    original = loaded.run
    in_warm_up, go_on = threading.Event(), threading.Event()

    def held_run(inputs: Mapping[str, np.ndarray], *args: bool) -> dict[str, np.ndarray]:
        in_warm_up.set()
        go_on.wait(5)
        return original(inputs, *args)

    loaded.run = held_run  # type: ignore[method-assign]
    try:
        warming = asyncio.ensure_future(worker.warm_up(0.0))
        assert await asyncio.to_thread(in_warm_up.wait, 5)
        original(ONE)  # a real task, while the warm-up runs
        used = loaded.last_used
        assert used is not None
        go_on.set()
        await warming
        assert registry.last_used(spec) == used
    finally:
        go_on.set()
        worker.close()
