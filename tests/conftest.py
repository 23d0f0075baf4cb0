"""The suite's root: pytest puts this folder on ``sys.path`` (rootdir conftest, prepend mode), so
tests in every subfolder import the shared helpers (``model_helpers``, ``trust_fakes``,
``liar``) by name. Fixtures shared by several modules live here too."""

from __future__ import annotations

import pytest

from netcore.tasks import scheduler as scheduler_module


class FixedRandom:
    @staticmethod
    def random() -> float:
        return 0.5


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Retry backoff without its random jitter (``pytestmark = usefixtures("no_jitter")``)."""
    monkeypatch.setattr(scheduler_module, "random", FixedRandom())
