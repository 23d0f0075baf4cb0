"""Results files: OUTPUT's extension picks ``.jsonl``, ``.csv`` or ``.parquet``.

A writer writes to a temporary file beside OUTPUT (``.NAME.partial``, so the rename stays on
one file system) and renames it over OUTPUT when the job ends (:meth:`RecordWriter.commit`):
an OUTPUT is never half-written. A job stopped or killed leaves OUTPUT as it was; the next run
writes the whole file again (from the journal). Records are written as they come, in input
order, so memory stays bounded: JSON lines a line each, CSV a row each (lists and maps
JSON-encoded in their cell), Parquet in row groups of :data:`ROW_GROUP` records (pyarrow).
"""

from __future__ import annotations

import contextlib
import csv
import json
import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from netcore.jobs.records import Record

ROW_GROUP = 8192
"""Records of a Parquet row group."""
TYPE_WAIT = 8
"""Row groups a Parquet writer holds at most while a column has only empty values (its type
not known yet); after that such a column is written as JSON text."""
FIXED_TYPES = {
    "input": "string",
    "chunk": "int64",
    "ok": "bool",
    "worker": "string",
    "latency_ms": "float64",
    "error": "string",
}


class WriterError(Exception):
    """OUTPUT cannot be written (said before any work when possible); one line."""


def partial_path(output: Path) -> Path:
    return output.with_name(f".{output.name}.partial")


class RecordWriter(ABC):
    """Records into a temporary file; :meth:`commit` renames it to OUTPUT."""

    suffix = ""

    def __init__(self, output: Path, columns: Sequence[str]) -> None:
        self.output = output
        self.columns = tuple(columns)
        self.temp = partial_path(output)
        self.records = 0
        if output.is_dir():
            raise WriterError(f"-o {output}: a folder, not a file")
        if not output.parent.is_dir():
            raise WriterError(f"-o {output}: no folder {output.parent}")
        try:
            self._open()
        except OSError as exc:
            raise WriterError(f"-o {output}: cannot write it ({exc.strerror or exc})") from None

    @abstractmethod
    def _open(self) -> None: ...

    @abstractmethod
    def _write(self, records: Sequence[Record]) -> None: ...

    @abstractmethod
    def _close(self) -> None: ...

    def write(self, records: Sequence[Record]) -> None:
        try:
            self._write(records)
        except OSError as exc:
            raise WriterError(
                f"-o {self.output}: cannot write it ({exc.strerror or exc})"
            ) from None
        self.records += len(records)

    def commit(self) -> None:
        """Finish the file and put it in OUTPUT's place."""
        try:
            self._close()
            os.replace(self.temp, self.output)
        except OSError as exc:
            raise WriterError(
                f"-o {self.output}: cannot write it ({exc.strerror or exc})"
            ) from None

    def abort(self) -> None:
        """Drop the temporary file; OUTPUT stays as it was."""
        with contextlib.suppress(Exception):
            self._close()
        with contextlib.suppress(OSError):
            self.temp.unlink()


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value, separators=(",", ":"))
    return value


class JsonlWriter(RecordWriter):
    suffix = ".jsonl"

    def _open(self) -> None:
        self._fh: IO[str] = open(self.temp, "w", encoding="utf-8", buffering=1 << 20)  # noqa: SIM115

    def _write(self, records: Sequence[Record]) -> None:
        dumps = json.dumps
        self._fh.write("".join(dumps(r, separators=(",", ":")) + "\n" for r in records))

    def _close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


class CsvWriter(RecordWriter):
    suffix = ".csv"

    def _open(self) -> None:
        self._fh: IO[str] = open(self.temp, "w", encoding="utf-8", newline="", buffering=1 << 20)  # noqa: SIM115
        self._csv = csv.writer(self._fh)
        self._csv.writerow(self.columns)

    def _write(self, records: Sequence[Record]) -> None:
        cols = self.columns
        self._csv.writerows([_cell(r.get(c)) for c in cols] for r in records)

    def _close(self) -> None:
        if not self._fh.closed:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()


class ParquetWriter(RecordWriter):
    """Row groups of :data:`ROW_GROUP` records; each column's type is the fixed one
    (:data:`FIXED_TYPES`) or inferred from its first values."""

    suffix = ".parquet"

    def _open(self) -> None:
        try:
            import pyarrow as pa
            import pyarrow.parquet as pq
        except ImportError:
            raise WriterError("writing .parquet needs pyarrow: pip install pyarrow") from None
        self._pa, self._pq = pa, pq
        self._buffer: list[Record] = []
        self._types: dict[str, Any] = {c: pa.type_for_alias(t) for c, t in FIXED_TYPES.items()}
        self._json_columns: set[str] = set()
        self._writer: Any = None
        self._closed = False
        # The file is made now, so that a path we cannot write is said before any work.
        with open(self.temp, "wb"):
            pass

    def _write(self, records: Sequence[Record]) -> None:
        self._buffer.extend(records)
        while len(self._buffer) >= ROW_GROUP and self._ready(final=False):
            group, self._buffer = self._buffer[:ROW_GROUP], self._buffer[ROW_GROUP:]
            self._flush(group)

    def _ready(self, final: bool) -> bool:
        """Whether every column's type is known (inferring them from the buffer)."""
        pa = self._pa
        unknown = [c for c in self.columns if c not in self._types]
        for c in unknown:
            values = [r[c] for r in self._buffer if r.get(c) is not None]
            if values:
                try:
                    self._types[c] = pa.infer_type(values)
                except (pa.ArrowInvalid, pa.ArrowTypeError):
                    self._types[c] = pa.string()
                    self._json_columns.add(c)
        still = [c for c in self.columns if c not in self._types]
        if still and (final or len(self._buffer) >= TYPE_WAIT * ROW_GROUP):
            for c in still:  # empty so far: kept as JSON text
                self._types[c] = pa.string()
                self._json_columns.add(c)
            still = []
        return not still

    def _flush(self, group: Sequence[Record]) -> None:
        pa = self._pa
        arrays = []
        for c in self.columns:
            values = [r.get(c) for r in group]
            if c in self._json_columns:
                values = [v if v is None or isinstance(v, str) else json.dumps(v) for v in values]
            try:
                arrays.append(pa.array(values, type=self._types[c]))
            except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
                raise WriterError(
                    f"-o {self.output}: column '{c}' changed type ({self._types[c]}): {exc}"
                ) from None
        table = pa.Table.from_arrays(arrays, names=list(self.columns))
        if self._writer is None:
            self._writer = self._pq.ParquetWriter(self.temp, table.schema)
        self._writer.write_table(table, row_group_size=len(group))

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._buffer or self._writer is None:
            self._ready(final=True)
            self._flush(self._buffer)
            self._buffer = []
        if self._writer is not None:
            self._writer.close()
            self._writer = None


WRITERS: dict[str, type[RecordWriter]] = {
    ".jsonl": JsonlWriter,
    ".csv": CsvWriter,
    ".parquet": ParquetWriter,
}


def open_writer(output: Path, columns: Sequence[str]) -> RecordWriter:
    """The writer for OUTPUT's extension, its temporary file created (so a path we cannot
    write is said now); a :class:`WriterError` for an extension we do not write."""
    if output.is_dir():
        raise WriterError(f"-o {output}: a folder, not a file")
    cls = WRITERS.get(output.suffix.lower())
    if cls is None:
        shown = ", ".join(WRITERS)
        given = f"'{output.suffix}'" if output.suffix else "no extension"
        raise WriterError(f"-o {output}: {given}; map writes {shown}")
    return cls(output, columns)
