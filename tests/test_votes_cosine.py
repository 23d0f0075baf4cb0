"""Votes by cosine (embeddings): near vectors agree, a different vector loses, over the real
Verifier and Scheduler with fake workers (tests/trust_fakes.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
import pytest
from trust_fakes import INPUTS, FakeSwarm, says

from netcore.tasks.verify import Verifier
from netcore.tasks.votes import VOTE_MODES, VerifiedOutcome, VoteKeys, cosine_agree, cosine_key
from netcore.wire import protocol

pytestmark = pytest.mark.usefixtures("no_jitter")
BASE = np.random.default_rng(7).normal(size=(1, 384)).astype(np.float32)


def vector_answer(vec: np.ndarray) -> Any:
    def answer(peer_id: str, task: dict[str, Any]) -> dict[str, Any]:
        wire = protocol.tensor_map({"embedding": vec})
        return {"t": "result", "id": task["id"], "outputs": wire,
                "digest": protocol.digest_tensors(wire), "took_us": 5}  # fmt: skip

    return answer


def nudged(scale: float, seed: int) -> np.ndarray:
    noise = np.random.default_rng(seed).normal(size=BASE.shape).astype(np.float32)
    return BASE + noise * scale * float(np.linalg.norm(BASE)) / 20.0


@pytest.fixture
async def swarm() -> AsyncIterator[FakeSwarm]:
    fake = FakeSwarm(default_timeout=0.3)
    yield fake
    fake.close()


async def run(verifier: Verifier) -> VerifiedOutcome:
    outcome = await asyncio.wait_for(verifier.submit("digits", INPUTS), 10.0)
    assert isinstance(outcome, VerifiedOutcome)
    return outcome


def test_cosine_keys() -> None:
    assert "cosine" in VOTE_MODES
    a, b = cosine_key({"embedding": BASE}), cosine_key({"embedding": nudged(1e-3, 1)})
    far = cosine_key(
        {"embedding": np.random.default_rng(9).normal(size=(1, 384)).astype(np.float32)}
    )
    assert a != b and cosine_agree(a, b) and not cosine_agree(a, far)
    assert not cosine_agree(a, cosine_key({"embedding": BASE[:, :100]}))  # another shape
    assert not cosine_agree(a, cosine_key({"other": BASE}))  # another output
    nan = BASE.copy()
    nan[0, 0] = np.nan
    assert not cosine_agree(a, cosine_key({"embedding": nan}))
    ints = cosine_key({"embedding": BASE, "index": np.array([[1, 2]], dtype=np.int32)})
    ints2 = cosine_key({"embedding": BASE, "index": np.array([[1, 3]], dtype=np.int32)})
    assert not cosine_agree(ints, ints2)  # non-float outputs compare exactly
    keys = VoteKeys(node=None, vote="cosine")
    assert keys.group([far, a], b) == a and keys.group([far], b) == b
    assert keys.same(b"L1", b"L1") and not keys.same(b"L1", b"L2")
    assert not cosine_agree(a, b"Cgarbage")


async def test_near_vectors_win_a_cosine_vote(swarm: FakeSwarm) -> None:
    swarm.worker("a", vector_answer(BASE))
    swarm.worker("b", vector_answer(nudged(1e-3, 1)), delay=0.01)
    swarm.worker("c", vector_answer(nudged(1e-3, 2)), delay=0.02)
    by_digest = await run(Verifier(swarm, redundancy=3, vote="digest"))
    assert by_digest.error_code == "no_majority"
    outcome = await run(Verifier(swarm, redundancy=3, vote="cosine"))
    assert outcome.ok and outcome.agreeing >= 2, outcome.error


async def test_a_different_vector_loses_the_vote(swarm: FakeSwarm) -> None:
    liar = np.random.default_rng(5).normal(size=(1, 384)).astype(np.float32)
    swarm.worker("liar", vector_answer(liar))
    swarm.worker("h1", vector_answer(BASE), delay=0.01)
    swarm.worker("h2", vector_answer(nudged(1e-3, 3)), delay=0.02)
    verifier = Verifier(swarm, redundancy=3, vote="cosine")
    outcome = await run(verifier)
    assert outcome.ok and outcome.worker in ("h1", "h2")
    assert "liar" in outcome.dissenters
    assert swarm.trust.count("liar", "votes_lost") == 1


async def test_label_votes_still_work_for_classifiers(swarm: FakeSwarm) -> None:
    for name, wobble in (("a", 0.0), ("b", 0.01), ("c", 0.02)):
        swarm.worker(name, says(7, wobble=wobble))
    outcome = await run(Verifier(swarm, redundancy=3, vote="label"))
    assert outcome.ok and outcome.label == 7
