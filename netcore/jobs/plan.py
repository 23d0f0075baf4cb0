"""A job's plan: which kind runs the model over which inputs. Everything that would stop the
job is found here, before any work, as one :class:`PlanError` line.

Files and folders go to the model's own kind (its manifest's ``kind``). Tables give rows: a
kind that takes text gets a text column; any other model gets rows of numbers through the
``tabular`` kind, fitted to its one input (so ``digits`` takes rows of 64 pixel values
whatever its kind for images). A job takes either tables or files, not both.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from netcore.jobs.sources import JobInputs, SourceError, classify, file_sources
from netcore.jobs.tables import table_source
from netcore.models.kinds import DEFAULT_KIND, Kind, KindError, kind_for
from netcore.models.kinds.tabular import TabularKind

if TYPE_CHECKING:
    from netcore.models.registry import ModelSpec


class PlanError(Exception):
    """A job that cannot start; the message is one line."""


@dataclass(slots=True)
class Plan:
    kind: Kind
    inputs: JobInputs


def model_words(spec: ModelSpec) -> str:
    return f"model {spec.name} ({spec.kind or DEFAULT_KIND})"


def plan_job(
    spec: ModelSpec,
    args: Sequence[str],
    columns: Sequence[str] = (),
    options: Mapping[str, Any] | None = None,
) -> Plan:
    """The kind and the inputs of ``map MODEL ARGS...``."""
    options = dict(options or {})
    try:
        given = [classify(arg) for arg in args]
        model_kind = kind_for(spec, **options)
        tables = [g for g in given if g.what == "table"]
        if tables and len(tables) != len(given):
            raise PlanError(
                f"INPUT {next(g.arg for g in given if g.what != 'table')}: give either tables "
                "or files and folders, not both"
            )
        if not tables:
            inputs = file_sources(given, model_kind.accepts, model_words(spec), model_kind.suffixes)
            return Plan(model_kind, inputs)
        kind = model_kind
        text = model_kind.takes_text
        if not text and not isinstance(model_kind, TabularKind):
            try:
                kind = TabularKind(spec, spec.kind_params, **options)
            except KindError as exc:
                raise PlanError(
                    f"INPUT {tables[0].arg}: a table; {model_words(spec)} takes files, not rows "
                    f"of numbers ({exc})"
                ) from None
        picked = tuple(columns) or (kind.columns if isinstance(kind, TabularKind) else ())
        several = len(tables) > 1
        inputs = JobInputs([table_source(g, picked, text, several) for g in tables], tables=True)
        return Plan(kind, inputs)
    except (SourceError, KindError) as exc:
        raise PlanError(str(exc)) from None
