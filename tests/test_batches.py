"""Batches: many samples in one task give the same predictions as one sample a task."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from model_helpers import loopback_config, running, unique_network

from netcore.cli.submit import run_tasks
from netcore.models.registry import LoadedModel, load_manifest, load_samples
from netcore.tasks.batch import predicted_labels, run_batches

pytestmark = pytest.mark.timeout(90)

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def digits() -> LoadedModel:
    return LoadedModel(load_manifest(REPO / "assets" / "models" / "digits.json"))


def test_a_batch_predicts_what_single_samples_do(digits: LoadedModel) -> None:
    x, _ = load_samples()
    batched = digits.run({"input": x})
    singles = [digits.run({"input": x[i : i + 1]}) for i in range(len(x))]
    np.testing.assert_array_equal(batched["label"], np.concatenate([s["label"] for s in singles]))
    np.testing.assert_allclose(
        batched["probabilities"],
        np.concatenate([s["probabilities"] for s in singles]),
        rtol=1e-5,
        atol=1e-6,
    )


async def test_batched_tasks_over_the_network_match_single_tasks(
    tmp_path: Path, digits: LoadedModel
) -> None:
    network = unique_network("batch")
    configs = [
        loopback_config(tmp_path, "client", network, caps=()),
        loopback_config(tmp_path, "worker", network),
    ]
    x, y = load_samples()
    async with running(*configs) as (client, _worker):
        batched = await client.submit("digits", x[:100])
        assert batched.ok, batched.error
        labels = predicted_labels(batched)
        assert labels is not None and labels.shape == (100,)
        singles = [await client.submit("digits", x[i : i + 1]) for i in range(100)]
        assert [s.label for s in singles] == labels.tolist()
        assert labels.tolist() == digits.run({"input": x[:100]})["label"].tolist()

        # The submit command's two paths agree: samples, tasks, accuracy over samples.
        one = await run_tasks(client, "digits", x, y, len(x), concurrency=8)
        many = await run_batches(client, "digits", x, y, len(x), batch=64, concurrency=4)
        assert one["tasks"] == one["samples"] == len(x) == 360
        assert many["samples"] == many["samples_ok"] == 360
        assert many["tasks"] == 6 and many["ok"] == 6 and many["batch"] == 64
        assert many["accuracy"] == one["accuracy"] == 0.9722
        # More samples than the set: batches cycle over it, the last one short.
        more = await run_batches(client, "digits", x, y, 1000, batch=300, concurrency=2)
        assert more["tasks"] == 4 and more["samples_ok"] == 1000
        assert abs(more["accuracy"] - 0.9722) < 0.01
