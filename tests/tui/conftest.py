"""Fixtures for the console tests (helpers live in console_fakes.py)."""

from __future__ import annotations

import pytest
from console_fakes import FakeNode, FrozenClock


@pytest.fixture
def frozen_clock() -> FrozenClock:
    return FrozenClock()


@pytest.fixture
def fake_node(frozen_clock: FrozenClock) -> FakeNode:
    return FakeNode(clock=frozen_clock)
