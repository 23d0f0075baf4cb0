"""The suite's root: pytest puts this folder on ``sys.path`` (rootdir conftest, prepend mode), so
tests in every subfolder import the shared helpers (``model_helpers``, ``trust_fakes``,
``liar``) by name. Fixtures shared by several modules live here too."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# The test plugin (the `double` model) is never installed in the venv, so that `make run` users
# never see it: its folder holds a static dist-info with the entry point, and putting the folder
# on the path (here, and for every child process through PYTHONPATH) is what makes it found.
PLUGIN_DIR = str(Path(__file__).resolve().parent / "plugin_pkg")
if PLUGIN_DIR not in sys.path:
    sys.path.insert(0, PLUGIN_DIR)
os.environ["PYTHONPATH"] = os.pathsep.join(
    [PLUGIN_DIR, *(p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p)]
)

import pytest  # noqa: E402

from netcore.tasks import share as share_module  # noqa: E402


class FixedRandom:
    @staticmethod
    def random() -> float:
        return 0.5


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """The choice of a worker without its random jitter (``pytestmark =
    usefixtures("no_jitter")``)."""
    monkeypatch.setattr(share_module, "random", FixedRandom())
