"""The requester judges the input, not the worker: what a worker's refusal or answer is worth.

The requester checks every input against the model's signature before sending it
(:mod:`netcore.models.signature`, in ``p2pai submit`` and the console), so a worker that
answers a valid task with ``bad_input`` (or another of :data:`WORKER_VERDICTS`), or with
outputs that do not fit the model (:func:`answer_fault`), has failed, whatever it says: the
task is retried on another worker (within the task's attempts, like ``unknown_model``) and the
failure counts against that worker's reputation (``failures``). One worker answering
``bad_input`` to everything so costs each task at most one attempt, never the task.

When every attempt is refused, the task fails with code ``rejected``, naming what the
workers said (the requester does not take ``bad_input`` on their word). Codes the requester
itself finds (an input it cannot encode) stay final at once: see ``TERMINAL_CODES`` in
:mod:`netcore.tasks.scheduler`.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np

from netcore.models.registry import ModelSpec
from netcore.net.peers import Peer
from netcore.wire import protocol

__all__ = ["REJECTED", "WORKER_VERDICTS", "answer_fault", "answer_spec", "decode_answer"]

WORKER_VERDICTS = frozenset({"bad_input", "bad_output", "bad_request", "too_large", "unsupported"})
REJECTED = "rejected"


def answer_fault(
    spec: ModelSpec | None, inputs: Mapping[str, np.ndarray], outputs: Mapping[str, np.ndarray]
) -> str | None:
    """Why ``outputs`` cannot be ``spec``'s answer to ``inputs`` (``None``: they can).

    Only what holds for every honest worker is checked, against the requester's own copy of
    the model (``spec``; without one, nothing): no output the model does not declare (a worker
    leaves out outputs that cannot go on the wire, so a missing one is no fault), and the
    class output, when the model names one, present with its declared dtype and one row per
    sample of the batch.
    """
    if spec is None:
        return None
    declared = {s.name: s.dtype for s in spec.outputs}
    extra = sorted(set(outputs) - set(declared))
    if extra:
        return f"outputs the model does not have: {', '.join(extra)[:80]}"
    label = spec.label_output
    if not label or label not in declared:
        return None
    arr = outputs.get(label)
    if arr is None:
        return f"no {label!r} output"
    want = _dtype(declared[label]) if declared[label] else None
    if want is not None and arr.dtype != want:
        return f"output {label!r} is {arr.dtype.name}, the model gives {declared[label]}"
    first = next(iter(inputs.values()), None)
    batch = first.shape[0] if first is not None and first.ndim else 1
    rows = arr.shape[0] if arr.ndim else 1
    if rows != batch:
        return f"output {label!r} has {rows} rows for {batch} samples"
    return None


@functools.lru_cache(maxsize=64)
def _dtype(name: str) -> np.dtype[Any] | None:
    """A manifest's dtype name as numpy's (None for a name numpy does not know: unchecked)."""
    try:
        return np.dtype(name)
    except TypeError:
        return None


def answer_spec(
    spec: ModelSpec | None, peer: Peer, model: str, sent_sha256: str | None
) -> ModelSpec | None:
    """Our copy of the model when it is the version the worker ran (the one we pinned, or
    the one it advertises), else None: another version may answer otherwise."""
    if spec is None or sent_sha256 == spec.sha256:
        return spec
    return spec if peer.has_model(model, spec.sha256) else None


def decode_answer(
    reply: dict[str, Any], inputs: Mapping[str, np.ndarray], spec: ModelSpec | None
) -> dict[str, np.ndarray] | str:
    """A ``result``'s outputs, or why they are no answer: ``"corrupt"`` (the digest does not
    match, or they cannot be decoded) or :func:`answer_fault`'s reason."""
    if protocol.digest_tensors(reply["outputs"]) != reply["digest"]:
        return "corrupt"
    try:
        outputs = protocol.arrays_of(reply, "outputs")  # decoded once, by validate
    except protocol.ProtocolError:
        return "corrupt"
    fault = answer_fault(spec, inputs, outputs)
    return fault if fault is not None else outputs
