"""Attempt timeouts from observed latency, resting failing workers, retry backoff."""

from __future__ import annotations

import pytest

from netcore.tasks.health import AttemptTimer, RestPolicy, backoff


class Clock:
    def __init__(self) -> None:
        self.now = 10.0

    def __call__(self) -> float:
        return self.now


def test_the_budget_applies_until_enough_samples() -> None:
    timer = AttemptTimer(floor=0.1, min_samples=5)
    for _ in range(4):
        timer.observe("w", "digits", 0.001)
    assert timer.timeout("w", "digits", 5.0) == 5.0
    timer.observe("w", "digits", 0.001)
    assert timer.timeout("w", "digits", 5.0) == pytest.approx(0.1)


def test_a_slow_model_gets_more_and_retries_double() -> None:
    timer = AttemptTimer(floor=0.1, min_samples=1)
    for _ in range(20):
        timer.observe("w", "big", 0.8)
    first = timer.timeout("w", "big", 10.0)
    assert 0.8 <= first < 1.5
    assert timer.timeout("w", "big", 10.0, attempt=1) == pytest.approx(2 * first)
    assert timer.timeout("w", "big", 1.0, attempt=3) == 1.0  # never past the budget
    assert timer.timeout("w", "other-model", 7.0) == 7.0  # per (worker, model)


def test_jitter_widens_the_timeout() -> None:
    steady, jumpy = AttemptTimer(floor=0.0, min_samples=1), AttemptTimer(floor=0.0, min_samples=1)
    for i in range(40):
        steady.observe("w", "m", 0.05)
        jumpy.observe("w", "m", 0.01 if i % 2 else 0.09)
    assert jumpy.timeout("w", "m", 10) > steady.timeout("w", "m", 10)


def test_rest_starts_after_repeated_failures_doubles_and_ends_on_success() -> None:
    clock = Clock()
    rest = RestPolicy(rest_after=2, first_rest=0.5, max_rest=4, clock=clock)
    assert rest.failed("w") is None and not rest.resting("w")
    assert rest.failed("w") == 0.5 and rest.resting("w")
    assert rest.failed("w") == 1.0
    for _ in range(10):
        last = rest.failed("w")
    assert last == 4  # capped
    clock.now += 4.01
    assert not rest.resting("w")
    rest.failed("w")
    rest.succeeded("w")
    assert not rest.resting("w") and rest.failed("w") is None


def test_backoff_grows_and_is_capped() -> None:
    assert 0.005 <= backoff(1) <= 0.01
    assert 0.04 <= backoff(4, jitter=0.5) <= 0.08
    assert backoff(40) <= 0.5
