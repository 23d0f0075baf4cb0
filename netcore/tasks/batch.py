"""Batched tasks: many samples in one task (``p2pai submit --batch N``).

A model whose inputs take any size in their first dimension (shape ``-1``) takes a batch of
samples in one task; the worker runs them in one onnxruntime call. This is how throughput
scales past the cost of one message per sample. Predictions are the same as one sample a
task: the rows of a batch are independent.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import numpy as np

BatchCallback = Callable[[int, Any, int, int | None, int | None], None]
"""(task index, outcome, samples in it, correct, judged) after each batched task."""


def predicted_labels(outcome: Any) -> np.ndarray | None:
    """The predicted class of each sample of a batched outcome, or None."""
    if not outcome.ok:
        return None
    name = outcome.label_output or ("label" if "label" in outcome.outputs else None)
    if name is None or name not in outcome.outputs:
        return None
    arr = np.asarray(outcome.outputs[name])
    if arr.dtype.kind not in "iu":
        return None
    return arr.reshape(-1)


def print_batch_outcome(
    index: int, outcome: Any, count: int, correct: int | None, judged: int | None
) -> None:
    import click

    if not outcome.ok:
        click.echo(f"#{index:<5} {outcome.task_id}  FAILED {outcome.error_code}: {outcome.error}")
        return
    mark = f"  {correct}/{judged} right" if judged else ""
    click.echo(
        f"#{index:<5} {outcome.task_id}  {count} samples  on {str(outcome.worker)[:8]}  "
        f"{outcome.latency_s * 1000:.2f} ms{mark}"
    )


async def run_batches(
    client: Any,
    model: str,
    samples: np.ndarray,
    labels: np.ndarray | None,
    total: int,
    batch: int,
    concurrency: int,
    on_outcome: BatchCallback | None = None,
    task_options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Send ``total`` samples (cycling over ``samples``) in tasks of ``batch``; summarise.

    The summary counts tasks (``tasks``, ``ok``, ``failed``) and samples (``samples``,
    ``samples_ok``); ``accuracy`` is over samples.
    """
    from netcore.tasks.tally import percentile

    batch = max(1, batch)
    n_tasks = -(-total // batch)
    latencies: list[float] = []
    workers: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    ok = failed = samples_ok = correct = judged = 0
    next_index = 0
    options = task_options or {}
    # One contiguous copy to slice from, long enough that no batch wraps around.
    need = min(total, len(samples) + batch)
    reps = -(-need // len(samples))
    pool = np.ascontiguousarray(np.concatenate([samples] * reps) if reps > 1 else samples)
    pool_labels = np.concatenate([labels] * reps) if labels is not None and reps > 1 else labels

    async def lane() -> None:
        nonlocal next_index, ok, failed, samples_ok, correct, judged
        while next_index < n_tasks:
            index = next_index
            next_index += 1
            first = index * batch
            count = min(batch, total - first)
            start = first % len(samples)
            x = pool[start : start + count]
            outcome = await client.submit(model, x, **options)
            latencies.append(outcome.latency_s * 1000)
            right = seen = None
            if outcome.ok:
                ok += 1
                samples_ok += count
                workers[outcome.worker or "?"] += 1
                predicted = predicted_labels(outcome)
                if pool_labels is not None and predicted is not None and len(predicted) == count:
                    seen = count
                    right = int(np.sum(predicted == pool_labels[start : start + count]))
                    judged += seen
                    correct += right
            else:
                failed += 1
                errors[outcome.error_code] += 1
            if on_outcome is not None:
                on_outcome(index, outcome, count, right, seen)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(min(concurrency, n_tasks))))
    elapsed = time.perf_counter() - started
    return {
        "tasks": n_tasks,
        "ok": ok,
        "failed": failed,
        "samples": total,
        "samples_ok": samples_ok,
        "batch": batch,
        "accuracy": round(correct / judged, 4) if judged else None,
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 3),
            "p99": round(percentile(latencies, 99), 3),
        },
        "throughput_tps": round(n_tasks / elapsed, 1) if elapsed > 0 else 0.0,
        "throughput_sps": round(samples_ok / elapsed, 1) if elapsed > 0 else 0.0,
        "workers": dict(workers),
        "errors": dict(errors),
    }
