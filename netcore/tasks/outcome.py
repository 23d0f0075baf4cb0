"""The outcome of one task, as :meth:`netcore.tasks.scheduler.Scheduler.submit` hands it to
its caller: once per task."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from netcore.observe.events import TaskDone


@dataclass(slots=True)
class TaskOutcome:
    """What the caller of ``Scheduler.submit`` gets: once per task."""

    task_id: str
    ok: bool
    model: str
    worker: str | None
    latency_s: float
    attempts: int
    outputs: dict[str, np.ndarray] = field(default_factory=dict)
    error_code: str = ""
    error: str = ""
    took_us: int = 0
    digest: bytes = b""
    label_output: str | None = None

    @property
    def label(self) -> int | None:
        """The predicted class of a single-sample classification, if there is one."""
        name = self.label_output or ("label" if "label" in self.outputs else None)
        if not self.ok or name is None or name not in self.outputs:
            return None
        arr = self.outputs[name]
        try:  # a peer's output: it may hold NaN, inf or anything else
            return int(arr.reshape(-1)[0]) if arr.size else None
        except (TypeError, ValueError, OverflowError):
            return None

    @property
    def confidence(self) -> float | None:
        probs = self.outputs.get("probabilities")
        if not self.ok or probs is None or not probs.size:
            return None
        first = probs.reshape(probs.shape[0], -1)[0] if probs.ndim else probs.reshape(-1)
        return float(first.max()) if first.size else None


def finished(
    task_id: str,
    model: str,
    worker: str | None,
    latency_s: float,
    attempts: int,
    *,
    outputs: dict[str, np.ndarray] | None = None,
    error: tuple[str, str] | None = None,
    took_us: int = 0,
    digest: bytes = b"",
    label_output: str | None = None,
) -> tuple[TaskOutcome, TaskDone]:
    """A task's outcome and the ``TaskDone`` event that announces it."""
    outcome = TaskOutcome(
        task_id=task_id,
        ok=error is None,
        model=model,
        worker=worker,
        latency_s=latency_s,
        attempts=attempts,
        outputs=outputs or {},
        error_code=error[0] if error else "",
        error=error[1] if error else "",
        took_us=took_us,
        digest=digest,
        label_output=label_output,
    )
    event = TaskDone(
        task_id=task_id,
        worker=worker or "",
        ok=outcome.ok,
        latency_ms=round(latency_s * 1000, 3),
        model=model,
        attempts=attempts,
        error=outcome.error,
        label=outcome.label,
        confidence=outcome.confidence,
        code=outcome.error_code,
    )
    return outcome, event
