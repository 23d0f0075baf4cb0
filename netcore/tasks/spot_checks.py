"""Spot checks for verified results (:mod:`netcore.tasks.verify`).

At a set rate (a share of the tasks submitted) the requester also sends a known-answer task:
a held-out sample whose label the reference model gets right, to the usable worker checked
least so far. A wrong label is a failed spot check. A worker cannot tell such tasks from real
ones.
"""

from __future__ import annotations

import logging
import random
from collections import Counter
from typing import Any

import numpy as np

log = logging.getLogger("p2pai.verify")


class SpotChecker:
    """Known-answer samples for one model and a rate (a share of tasks, 0-1)."""

    def __init__(
        self,
        model: str,
        samples: np.ndarray,
        labels: np.ndarray,
        rate: float,
        seed: int | None = None,
    ) -> None:
        if not 0 <= rate <= 1:
            raise ValueError("spot-check rate must be between 0 and 1")
        if len(samples) == 0 or len(samples) != len(labels):
            raise ValueError("spot checks need labelled samples")
        self.model = model
        self.samples = samples
        self.labels = labels
        self.rate = rate
        self.rng = random.Random(seed)
        self.credit = 0.0
        self.checked: Counter[str] = Counter()

    @classmethod
    def from_reference(
        cls,
        model: str,
        samples: np.ndarray,
        labels: np.ndarray,
        rate: float,
        registry: Any = None,
        seed: int | None = None,
    ) -> SpotChecker:
        """Keep the samples the reference model (when we hold it) labels right: those have a
        known answer an honest worker gives too."""
        spec = registry.find(model) if registry is not None else None
        if spec is not None and spec.label_output and spec.inputs:
            try:
                loaded = registry.load(spec)
                got = loaded.run({spec.inputs[0].name: samples.astype(spec.inputs[0].dtype)})
                predicted = np.asarray(got[spec.label_output]).reshape(len(samples), -1)[:, 0]
                keep = predicted == np.asarray(labels).reshape(-1)
                if keep.any():
                    samples, labels = samples[keep], np.asarray(labels)[keep]
            except Exception as exc:  # no reference: the dataset's labels stand
                log.debug("spot checks without a reference model: %s", exc)
        return cls(model, samples, np.asarray(labels), rate, seed)

    def due(self, model: str) -> int:
        """Spot checks to send along with one task of ``model``."""
        if model != self.model or self.rate <= 0:
            return 0
        self.credit += self.rate
        count = int(self.credit)
        self.credit -= count
        return count

    def pick(self, peer_ids: list[str]) -> str | None:
        if not peer_ids:
            return None
        least = min(self.checked[p] for p in peer_ids)
        choice = self.rng.choice([p for p in peer_ids if self.checked[p] == least])
        self.checked[choice] += 1
        return choice

    def sample(self) -> tuple[np.ndarray, int]:
        index = self.rng.randrange(len(self.samples))
        return self.samples[index : index + 1], int(np.asarray(self.labels).reshape(-1)[index])

    @staticmethod
    def answer(arr: np.ndarray | None) -> int | None:
        """The label a checked worker answered (``None`` when it gave none that reads as one)."""
        try:
            return int(np.asarray(arr).reshape(-1)[0]) if arr is not None and arr.size else None
        except (TypeError, ValueError, OverflowError):
            return None
