"""A job's records: one an input (one a chunk, for a kind that cuts inputs into parts).

Fields, in column order: ``input`` (the path relative to the folder given, or the row
number), ``chunk`` (only for a kind that makes parts: the part's number from 0), ``ok``, the
kind's result fields (:meth:`Kind.result_fields`), ``worker`` (the name of the worker that
computed it; several, comma-separated, for a pipeline spread over them), ``latency_ms`` (of
the tasks it rode on) and ``error`` (when it failed). JSON lines leave out what a record does
not have; CSV and Parquet have every column, empty where a record has nothing.
"""

from __future__ import annotations

from typing import Any

from netcore.models.kinds.base import Kind

Record = dict[str, Any]


def makes_chunks(kind: Kind) -> bool:
    """Whether ``kind`` may cut one input into several records (it overrides ``parts``)."""
    return type(kind).parts is not Kind.parts


def columns(kind: Kind) -> tuple[str, ...]:
    """Each column once (a kind that makes parts may name ``chunk`` among its own fields)."""
    chunk = ("chunk",) if makes_chunks(kind) else ()
    fields = [f for f in kind.result_fields() if f not in ("input", "chunk", "ok")]
    return ("input", *chunk, "ok", *fields, "worker", "latency_ms", "error")


def ok_records(key: str, parts: list[dict[str, Any]], chunked: bool) -> list[Record]:
    """The records of an input whose parts all came back (parts as the journal keeps them)."""
    records = []
    for i, part in enumerate(parts):
        record: Record = {"input": key}
        if chunked:
            record["chunk"] = i
        record["ok"] = True
        record.update(part["fields"])
        record["worker"] = part.get("worker")
        record["latency_ms"] = part.get("latency_ms")
        records.append(record)
    return records


def failed_record(key: str, error: str) -> Record:
    return {"input": key, "ok": False, "error": error}
