"""The batcher: single-item infer calls gathered into batched tasks, split back by rows."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pytest

from netcore.jobs import trace
from netcore.jobs.batcher import Batcher, split_rows
from netcore.models.kinds.base import InputError


@dataclass
class Outcome:
    ok: bool
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    worker: str | None = "peer-1"
    latency_s: float = 0.002
    error_code: str = ""
    error: str = ""


class FakeSubmit:
    """``submit`` that doubles each row (and says which row it was), or fails."""

    def __init__(self) -> None:
        self.tasks: list[tuple[str, dict[str, np.ndarray], dict[str, Any]]] = []
        self.fail: str | None = None
        self.bad_rows: set[float] = set()
        self.short = False

    async def __call__(self, model: str, inputs: dict[str, np.ndarray], **options: Any) -> Outcome:
        self.tasks.append((model, inputs, options))
        await asyncio.sleep(0)
        x = inputs["x"]
        if self.fail:
            return Outcome(False, error_code=self.fail, error="it went wrong")
        if self.bad_rows & set(x[:, 0].tolist()):
            return Outcome(False, error_code="bad_input", error="a bad row")
        out = x * 2
        return Outcome(True, {"y": out[:-1] if self.short else out})


def row(i: float, width: int = 3) -> dict[str, np.ndarray]:
    return {"x": np.full((1, width), i, np.float32)}


async def test_many_single_rows_ride_on_few_tasks_and_come_back_in_their_place() -> None:
    submit = FakeSubmit()
    batcher = Batcher(submit, max_rows=64, options={"m": {"sha256": "abc"}})
    results = await asyncio.gather(*(batcher("m", row(i)) for i in range(150)))
    assert [len(t[1]["x"]) for t in submit.tasks] == [64, 64, 22]
    assert all(t[2] == {"sha256": "abc"} for t in submit.tasks)
    for i, out in enumerate(results):
        assert out["y"].shape == (1, 3) and float(out["y"][0, 0]) == 2 * i
    assert batcher.stats.tasks == 3 and batcher.stats.rows_ok == 150


async def test_other_models_or_row_shapes_go_in_other_tasks() -> None:
    submit = FakeSubmit()
    batcher = Batcher(submit, max_rows={"m": 100, "n": 1})
    await asyncio.gather(
        *(batcher("m", row(i)) for i in range(3)),
        *(batcher("m", row(i, width=5)) for i in range(2)),
        *(batcher("n", row(i)) for i in range(2)),
    )
    shapes = sorted((t[0], t[1]["x"].shape) for t in submit.tasks)
    assert shapes == [("m", (2, 5)), ("m", (3, 3)), ("n", (1, 3)), ("n", (1, 3))]


async def test_a_task_never_carries_more_bytes_than_a_node_takes() -> None:
    """Two OCR pages of 4.3 MB each fit a node's 8 MiB; batched into one task they did not."""
    submit = FakeSubmit()
    batcher = Batcher(submit, max_rows=64, max_bytes=1000)
    results = await asyncio.gather(*(batcher("m", row(i, width=100)) for i in range(5)))
    assert [len(t[1]["x"]) for t in submit.tasks] == [2, 2, 1]  # 400 B a row, 1000 B a task
    assert [float(r["y"][0, 0]) for r in results] == [0, 2, 4, 6, 8]
    big = await batcher("m", row(9, width=400))  # one input over the budget still goes alone
    assert float(big["y"][0, 0]) == 18 and len(submit.tasks[-1][1]["x"]) == 1


async def test_a_failed_task_fails_each_of_its_items() -> None:
    submit = FakeSubmit()
    submit.fail = "timeout"
    batcher = Batcher(submit, max_rows=8)
    results = await asyncio.gather(
        *(batcher("m", row(i)) for i in range(8)), return_exceptions=True
    )
    assert all(isinstance(r, InputError) and str(r) == "timeout: it went wrong" for r in results)
    assert batcher.stats.errors == {"timeout": 1}


async def test_a_batch_refused_as_bad_input_is_split_so_only_the_bad_item_fails() -> None:
    submit = FakeSubmit()
    submit.bad_rows = {5.0}
    batcher = Batcher(submit, max_rows=8)
    results = await asyncio.gather(
        *(batcher("m", row(i)) for i in range(8)), return_exceptions=True
    )
    failed = [i for i, r in enumerate(results) if isinstance(r, InputError)]
    assert failed == [5]
    assert float(results[7]["y"][0, 0]) == 14.0  # type: ignore[index]


async def test_outputs_without_a_row_per_input_are_refused() -> None:
    submit = FakeSubmit()
    submit.short = True
    batcher = Batcher(submit, max_rows=4)
    results = await asyncio.gather(
        *(batcher("m", row(i)) for i in range(4)), return_exceptions=True
    )
    assert all(
        isinstance(r, InputError) and "shape [3, 3] for 4 input rows" in str(r) for r in results
    )


async def test_the_trace_hears_of_the_task_each_call_rode_on() -> None:
    batcher = Batcher(FakeSubmit(), max_rows=2, worker_name=lambda p: f"name-of-{p}")

    async def one(i: int) -> trace.Trace:
        found = trace.Trace()
        trace.current.set(found)
        await batcher("m", row(i))
        return found

    traces = await asyncio.gather(*(one(i) for i in range(3)))
    assert all(t.worker == "name-of-peer-1" and t.tasks == 1 for t in traces)
    assert traces[0].latency_ms == 2.0


async def test_a_partial_batch_goes_out_after_the_delay() -> None:
    submit = FakeSubmit()
    batcher = Batcher(submit, max_rows=1000, delay_s=0.01)
    out = await asyncio.wait_for(batcher("m", row(1)), 2)
    assert out["y"].shape == (1, 3) and len(submit.tasks) == 1


async def test_calls_must_share_one_batch_axis() -> None:
    batcher = Batcher(FakeSubmit())
    with pytest.raises(InputError, match="one batch axis"):
        await batcher("m", {"a": np.zeros((1, 2)), "b": np.zeros((2, 2))})


def test_split_rows() -> None:
    parts, problem = split_rows({"y": np.arange(6).reshape(6, 1)}, [1, 2, 3])
    assert problem is None and [p["y"].ravel().tolist() for p in parts] == [[0], [1, 2], [3, 4, 5]]
    assert split_rows({"y": np.float32(1)}, [1])[1] == "output 'y' has shape [] for 1 input rows"
