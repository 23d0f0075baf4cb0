"""The contract between a job (``p2pai map``, ``infer FILE``, the console's Jobs pane) and a
model kind.

One **item** is one input of a job: a file, or a row of a table. A kind **reads** it on the
requester (decode, resize, tokenise: :meth:`Kind.read`, which raises :class:`InputError` for
that item alone), then **runs** it (:meth:`Kind.run`): one or more calls of ``infer``, each
one ONNX graph over a batch of samples, then the post-processing that turns outputs into the
record's result fields. OCR is a pipeline (detection, then the cut-out lines recognised in one
batch); a long text is several chunks, each its own record (:meth:`Kind.parts`).

``infer`` is the only way a kind reaches a model: the job engine batches the calls of many
items into tasks and sends them through the swarm (with votes and checks), so a kind never
knows about peers. Votes compare results with :meth:`Kind.same_result` (labels and text
exactly, embeddings by cosine).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np

if TYPE_CHECKING:
    from netcore.models.registry import ModelSpec


class KindError(Exception):
    """A model or job that cannot work at all (an unknown kind, a missing extra, bad
    ``kind_params``): one line, said before any work starts."""


class InputError(Exception):
    """One item that cannot be used (a corrupt image, a text file in an image job, a missing
    column): that item's record carries the message and the job goes on."""


@dataclass(frozen=True, slots=True)
class Item:
    """One input of a job.

    ``key`` is the record's ``input`` field: the path relative to the folder given, or the
    row number (from 1) of a table. ``path`` is set for a file; ``value`` for a table row
    (a string for a text column, a list of numbers for a feature row) or an array.
    """

    key: str
    path: Path | None = None
    value: Any = None

    def read_bytes(self) -> bytes:
        """The file's bytes (an :class:`InputError` when it cannot be read)."""
        if self.path is None:
            raise InputError(f"{self.key}: not a file")
        try:
            return self.path.read_bytes()
        except OSError as exc:
            raise InputError(f"{self.key}: cannot read it ({exc.strerror})") from None


class Infer(Protocol):
    """Run one graph on a batch of samples somewhere in the swarm.

    ``model`` names a registered model (a pipeline names its stages' models); ``inputs`` maps
    the model's input names to arrays whose first axis is the batch (N rows). The result maps
    output names to arrays with the same first axis N. Raises :class:`InputError` with the
    task's error when every attempt failed (the item's record carries it).
    """

    def __call__(
        self, model: str, inputs: Mapping[str, np.ndarray]
    ) -> Awaitable[Mapping[str, np.ndarray]]: ...


class Kind(ABC):
    """What a model of one kind takes and gives. One instance per job (thread-free, no
    network); subclasses set the class attributes and implement :meth:`read` and
    :meth:`finish` (or :meth:`run` for a pipeline)."""

    name: ClassVar[str]
    """The manifest's ``kind`` value."""
    suffixes: ClassVar[frozenset[str]] = frozenset()
    """File name endings this kind reads (``.png``...); a folder job takes only these."""
    takes_text: ClassVar[bool] = False
    """Whether a table's text column (or ``infer MODEL "some text"``) is an input."""
    fields: ClassVar[tuple[str, ...]] = ()
    """The result fields of a record, in column order (``label``, ``text``, ``embedding``)."""
    vote: ClassVar[str] = "digest"
    inputs_per_worker: ClassVar[int | None] = None
    """Inputs of a job in flight per worker at most, for a kind whose one input is a task of
    megabytes (an OCR page): a job's window of small inputs would put hundreds of them on
    the wire at once, and a worker's link would carry seconds of queued pages before a ping.
    None: the job's own window (netcore.jobs.launch.in_flight)."""
    """How votes compare results (netcore.tasks.votes): ``label``, ``digest``, ``cosine``."""

    def __init__(self, spec: ModelSpec, params: Mapping[str, Any], **options: Any) -> None:
        self.spec = spec
        self.params = dict(params)
        self.options = options

    @property
    def models(self) -> tuple[str, ...]:
        """The registered models this kind's :meth:`run` calls (a pipeline has several)."""
        return (self.spec.name,)

    def identity(self) -> str:
        """What a journal keys results by, with each input's content hash: the sha256 of
        every model run plus anything in the processing that changes a result."""
        return self.spec.sha256

    def result_fields(self) -> tuple[str, ...]:
        """This job's result fields, in column order: :attr:`fields` unless the model decides
        them (a tabular model that is not a classifier gives its outputs)."""
        return self.fields

    def vote_mode(self) -> str:
        """How votes compare this job's results: :attr:`vote` unless the model decides it."""
        return self.vote

    def accepts(self, path: Path) -> bool:
        return path.suffix.lower() in self.suffixes

    @abstractmethod
    def read(self, item: Item) -> Any:
        """Pre-processing of one item on the requester: its prepared form for :meth:`run`.
        Raises :class:`InputError` for an item this kind cannot use."""

    def parts(self, prepared: Any) -> list[Any]:
        """One prepared item as one or more records' inputs (a long text: its chunks)."""
        return [prepared]

    async def run(self, prepared: Any, infer: Infer) -> dict[str, Any]:
        """One record's result fields. The default: one sample through the model, then
        :meth:`finish`; a pipeline overrides this."""
        outputs = await infer(self.spec.name, self.sample(prepared))
        return self.finish(prepared, outputs)

    def sample(self, prepared: Any) -> dict[str, np.ndarray]:
        """The model inputs of one prepared part, each with a batch axis of 1."""
        raise NotImplementedError(f"kind {self.name} overrides run()")

    def finish(self, prepared: Any, outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        """Post-processing: the record's result fields (JSON-able) from one sample's outputs."""
        raise NotImplementedError(f"kind {self.name} overrides run()")

    def same_result(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        """Whether two records' result fields agree (votes on whole records, and tests)."""
        return all(a.get(f) == b.get(f) for f in self.fields)
