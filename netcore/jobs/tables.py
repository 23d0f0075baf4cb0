"""The rows of a table as items: ``.csv``, ``.parquet``, ``.jsonl``, ``.npy``, ``.npz``.

A row is an item keyed by its number from 1 (``name.csv:12`` when a job has several INPUTs).
Its value is a **row of numbers** (the columns picked, lists flattened: a CSV cell may hold a
JSON list, as this package's CSV writer writes them) or, for a kind that takes text, **one
text column**. Rows are read as a stream: CSV and JSON lines a line at a time, Parquet a record
batch at a time (pyarrow), ``.npy`` memory-mapped. An ``.npz`` is compressed, so its array
(``x``, the only one, or the one ``--column`` names) is read whole.

Which columns: the ones given (``--column``, the manifest's ``kind_params.columns``), else
all. A CSV whose first line is all numbers has no header; its columns are named ``0``, ``1``...
A column the header lacks is a :class:`SourceError` before any work; a row that lacks a value
or holds something other than a number is an :class:`Unreadable` item.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np

from netcore.jobs.sources import Given, Source, SourceError, Unreadable
from netcore.models.inputs import kind_of
from netcore.models.kinds.base import Item

BATCH_ROWS = 1024
"""Rows of a Parquet file read at once."""
PEEK_ROWS = 50
"""Rows of a CSV looked at to tell its columns of numbers (when no column is named)."""


def _shown(names: Sequence[str], limit: int = 12) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f", ... ({len(names)} in all)" if len(names) > limit else "")


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def numeric_row(key: str, names: Sequence[str], values: Sequence[Any]) -> list[float] | Unreadable:
    """The numbers of one row (lists flattened), or why the row has none."""
    out: list[float] = []
    for name, value in zip(names, values, strict=True):
        problem = _add_numbers(out, value)
        if problem:
            return Unreadable(key, error=f"{key}: column '{name}' {problem}")
    return out


def _add_numbers(out: list[float], value: Any) -> str | None:
    if value is None or value == "":
        return "is empty"
    if isinstance(value, bool):
        out.append(float(value))
        return None
    if isinstance(value, (int, float)):
        out.append(float(value))
        return None
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("["):
            try:
                value = json.loads(text)
            except ValueError:
                return f"is {_short(value)}, not a number"
        else:
            number = _float(text)
            if number is None:
                return f"is {_short(value)}, not a number"
            out.append(number)
            return None
    if isinstance(value, (list, tuple, np.ndarray)):
        for v in value:
            if isinstance(v, (list, tuple, np.ndarray)):
                problem = _add_numbers(out, v)
                if problem:
                    return problem
            elif isinstance(v, (int, float)) and not isinstance(v, bool):
                out.append(float(v))
            else:
                return f"holds {_short(v)}, not a number"
        return None
    return f"holds {type(value).__name__}, not numbers"


def _numeric_column(cells: list[str]) -> bool:
    """Whether the first cells of a column are mostly numbers (the empty ones aside: a few
    bad cells are those rows' errors, not a column of text)."""
    given = [c.strip() for c in cells if c.strip()]
    numbers = sum(1 for c in given if c.startswith("[") or _float(c) is not None)
    return bool(given) and numbers * 2 >= len(given)


def _numeric_type(dtype: Any) -> bool:
    import pyarrow as pa

    while (
        pa.types.is_list(dtype)
        or pa.types.is_large_list(dtype)
        or pa.types.is_fixed_size_list(dtype)
    ):
        dtype = dtype.value_type
    return bool(
        pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_boolean(dtype)
    )


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _text(key: str, name: str, value: Any) -> str | Unreadable:
    if value is None:
        return Unreadable(key, error=f"{key}: column '{name}' is empty")
    if not isinstance(value, str):
        return Unreadable(key, error=f"{key}: column '{name}' holds {_short(value)}, not text")
    return value


def _pick(arg: str, names: Sequence[str], columns: Sequence[str], text: bool) -> list[int]:
    """The indices of ``columns`` in ``names`` (all when none are given)."""
    if columns:
        missing = [c for c in columns if c not in names]
        if missing:
            raise SourceError(f"INPUT {arg}: no column '{missing[0]}' (it has {_shown(names)})")
        picked = [names.index(c) for c in columns]
    else:
        picked = list(range(len(names)))
    if text and len(picked) != 1:
        raise SourceError(
            f"INPUT {arg}: pick the text column with --column (it has {_shown(names)})"
        )
    return picked


@dataclass(slots=True)
class _Table:
    path: Path
    label: str
    prefix: str
    columns: tuple[str, ...]
    text: bool
    notes: list[str] = field(default_factory=list)
    """What was chosen for the user, to be said (the columns of numbers picked)."""

    def key(self, n: int) -> str:
        return f"{self.prefix}{n}"

    def check(self) -> None:
        """Raise :class:`SourceError` now for what would stop every row."""
        raise NotImplementedError

    def count(self) -> int | None:
        raise NotImplementedError

    def items(self) -> Iterator[Item]:
        raise NotImplementedError


class CsvTable(_Table):
    """A CSV file, a line at a time."""

    def _open(self) -> tuple[Any, Any, list[str], bool]:
        try:
            fh = open(self.path, newline="", encoding="utf-8-sig")  # noqa: SIM115 (closed by the caller)
        except OSError as exc:
            raise SourceError(f"INPUT {self.label}: cannot read it ({exc.strerror})") from None
        reader = csv.reader(fh)
        try:
            first = next(reader, None)
        except (UnicodeDecodeError, csv.Error) as exc:
            fh.close()
            raise SourceError(f"INPUT {self.label}: not a readable CSV file ({exc})") from None
        if first is None:
            fh.close()
            raise SourceError(f"INPUT {self.label}: an empty CSV file")
        headerless = all(_float(cell) is not None for cell in first)
        names = [str(i) for i in range(len(first))] if headerless else [c.strip() for c in first]
        rows: Iterator[list[str]] = _prepend(first, reader) if headerless else reader
        return fh, rows, names, headerless

    def check(self) -> None:
        fh, rows, names, headerless = self._open()
        with fh:
            head = list(islice(rows, PEEK_ROWS))
        _pick(self.label, names, self.columns, self.text)
        if not self.columns and not self.text and head and not headerless:
            kept = [
                n
                for i, n in enumerate(names)
                if _numeric_column([r[i] for r in head if i < len(r)])
            ]
            if kept and len(kept) < len(names):
                self.columns = tuple(kept)
                left = [n for n in names if n not in kept]
                self.notes.append(
                    f"INPUT {self.label}: rows are the columns of numbers "
                    f"({_shown(kept)}); left out: {_shown(left)} (--column picks others)"
                )

    def count(self) -> int | None:
        lines = 0
        last = b"\n"
        with open(self.path, "rb") as fh:
            while chunk := fh.read(1 << 20):
                lines += chunk.count(b"\n")
                last = chunk[-1:]
        if last != b"\n":
            lines += 1
        _, _, _, headerless = self._peek()
        return max(0, lines - (0 if headerless else 1))

    def _peek(self) -> tuple[None, None, list[str], bool]:
        fh, _, names, headerless = self._open()
        fh.close()
        return None, None, names, headerless

    def items(self) -> Iterator[Item]:
        fh, reader, names, _ = self._open()
        picked = _pick(self.label, names, self.columns, self.text)
        wanted = [names[i] for i in picked]
        with fh:
            n = 0
            while True:
                try:
                    row = next(reader)
                except StopIteration:
                    return
                except (UnicodeDecodeError, csv.Error) as exc:
                    n += 1
                    yield Unreadable(self.key(n), error=f"{self.key(n)}: not readable ({exc})")
                    if isinstance(exc, UnicodeDecodeError):
                        return  # the decoder cannot find the next line again
                    continue
                if not row:
                    continue
                n += 1
                key = self.key(n)
                if len(row) < len(names) and max(picked) >= len(row):
                    missing = names[next(i for i in picked if i >= len(row))]
                    yield Unreadable(key, error=f"{key}: no value in column '{missing}'")
                    continue
                values = [row[i] for i in picked]
                if self.text:
                    yield Item(key, value=values[0])
                    continue
                numbers = numeric_row(key, wanted, values)
                yield numbers if isinstance(numbers, Unreadable) else Item(key, value=numbers)


def _prepend(first: list[str], rest: Iterator[list[str]]) -> Iterator[list[str]]:
    yield first
    yield from rest


class ParquetTable(_Table):
    """A Parquet file, a record batch at a time."""

    def _file(self) -> Any:
        try:
            import pyarrow.parquet as pq
        except ImportError:
            raise SourceError("reading .parquet needs pyarrow: pip install pyarrow") from None
        try:
            return pq.ParquetFile(self.path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError...
            raise SourceError(f"INPUT {self.label}: not a readable Parquet file ({exc})") from None

    def check(self) -> None:
        schema = self._file().schema_arrow
        names = list(schema.names)
        _pick(self.label, names, self.columns, self.text)
        if not self.columns and not self.text:
            kept = [f.name for f in schema if _numeric_type(f.type)]
            if kept and len(kept) < len(names):
                self.columns = tuple(kept)
                left = [n for n in names if n not in kept]
                self.notes.append(
                    f"INPUT {self.label}: rows are the columns of numbers "
                    f"({_shown(kept)}); left out: {_shown(left)} (--column picks others)"
                )

    def count(self) -> int | None:
        return int(self._file().metadata.num_rows)

    def items(self) -> Iterator[Item]:
        pf = self._file()
        names = list(pf.schema_arrow.names)
        picked = [names[i] for i in _pick(self.label, names, self.columns, self.text)]
        n = 0
        for batch in pf.iter_batches(batch_size=BATCH_ROWS, columns=picked):
            cols = [batch.column(i).to_pylist() for i in range(batch.num_columns)]
            for values in zip(*cols, strict=True):
                n += 1
                key = self.key(n)
                if self.text:
                    value = _text(key, picked[0], values[0])
                    yield value if isinstance(value, Unreadable) else Item(key, value=value)
                    continue
                numbers = numeric_row(key, picked, values)
                yield numbers if isinstance(numbers, Unreadable) else Item(key, value=numbers)


class JsonlTable(_Table):
    """JSON lines: an object a line (columns by name), a list of numbers, or a string."""

    def check(self) -> None:
        try:
            with open(self.path, "rb"):
                pass
        except OSError as exc:
            raise SourceError(f"INPUT {self.label}: cannot read it ({exc.strerror})") from None

    def count(self) -> int | None:
        with open(self.path, "rb") as fh:
            return sum(1 for line in fh if line.strip())

    def items(self) -> Iterator[Item]:
        with open(self.path, "rb") as fh:
            n = 0
            for raw in fh:
                if not raw.strip():
                    continue
                n += 1
                key = self.key(n)
                try:
                    obj = json.loads(raw)
                except ValueError as exc:
                    yield Unreadable(key, error=f"{key}: not JSON ({exc})")
                    continue
                yield self._item(key, obj)

    def _item(self, key: str, obj: Any) -> Item:
        if isinstance(obj, dict):
            names = list(self.columns) or list(obj)
            if self.text and len(names) != 1:
                return Unreadable(
                    key,
                    error=f"{key}: pick the text column with --column (it has {_shown(list(obj))})",
                )
            missing = [c for c in names if c not in obj]
            if missing:
                return Unreadable(key, error=f"{key}: no column '{missing[0]}'")
            values = [obj[c] for c in names]
            if self.text:
                text = _text(key, names[0], values[0])
                return text if isinstance(text, Unreadable) else Item(key, value=text)
            numbers = numeric_row(key, names, values)
            return numbers if isinstance(numbers, Unreadable) else Item(key, value=numbers)
        if self.text:
            if isinstance(obj, str):
                return Item(key, value=obj)
            return Unreadable(key, error=f"{key}: holds {_short(obj)}, not text")
        out: list[float] = []
        problem = _add_numbers(out, obj if isinstance(obj, list) else [obj])
        if problem:
            return Unreadable(key, error=f"{key}: {problem.removeprefix('holds ')}")
        return Item(key, value=out)


class _ArrayTable(_Table):
    """A table whose rows are the first axis of one array (``.npy``, ``.npz``)."""

    def _array(self) -> np.ndarray:
        raise NotImplementedError

    def check(self) -> None:
        self._array()

    def count(self) -> int | None:
        return int(self._array().shape[0])

    def items(self) -> Iterator[Item]:
        arr = self._array()
        for i in range(arr.shape[0]):
            key = self.key(i + 1)
            yield Item(key, value=str(arr[i]) if self.text else np.array(arr[i]))


class NpyTable(_ArrayTable):
    """A ``.npy`` array, memory-mapped: one item a row."""

    def _array(self) -> np.ndarray:
        try:
            with open(self.path, "rb") as fh:
                head = fh.read(6)
        except OSError as exc:
            raise SourceError(f"INPUT {self.label}: cannot read it ({exc.strerror})") from None
        if head != b"\x93NUMPY":
            raise SourceError(f"INPUT {self.label}: {kind_of(self.path)}, not a .npy array")
        try:
            arr = np.load(self.path, mmap_mode="r", allow_pickle=False)
        except ValueError as exc:
            raise SourceError(f"INPUT {self.label}: not a readable .npy array ({exc})") from None
        return _rows_of(self.label, arr, self.text)


class NpzTable(_ArrayTable):
    """An ``.npz`` archive's ``x`` (or its only array, or the one ``--column`` names)."""

    def _array(self) -> np.ndarray:
        try:
            data = np.load(self.path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as exc:
            raise SourceError(f"INPUT {self.label}: not a readable .npz archive ({exc})") from None
        if not hasattr(data, "files"):
            raise SourceError(f"INPUT {self.label}: a .npy array, not an .npz archive")
        with data:
            files = list(data.files)
            if self.columns and self.columns[0] in files:
                name = self.columns[0]
            elif "x" in files:
                name = "x"
            elif len(files) == 1:
                name = files[0]
            else:
                raise SourceError(
                    f"INPUT {self.label}: no array named x (it holds {_shown(files)}); "
                    "name one with --column"
                )
            try:
                arr = np.asarray(data[name])
            except ValueError as exc:
                raise SourceError(f"INPUT {self.label}: {name} is not readable ({exc})") from None
        return _rows_of(self.label, arr, self.text)


def _rows_of(label: str, arr: np.ndarray, text: bool) -> np.ndarray:
    if arr.ndim == 0:
        raise SourceError(f"INPUT {label}: a single value, not rows (one sample a row)")
    if arr.shape[0] == 0:
        raise SourceError(f"INPUT {label}: no rows (shape {list(arr.shape)})")
    if text and arr.dtype.kind not in "US":
        raise SourceError(f"INPUT {label}: holds {arr.dtype.name} values, not text")
    if not text and arr.dtype.kind not in "biuf":
        raise SourceError(f"INPUT {label}: holds {arr.dtype.name} values, not numbers")
    return arr


TABLES: dict[str, type[_Table]] = {
    ".csv": CsvTable,
    ".parquet": ParquetTable,
    ".jsonl": JsonlTable,
    ".npy": NpyTable,
    ".npz": NpzTable,
}


def table_source(given: Given, columns: Sequence[str], text: bool, several: bool) -> Source:
    """The rows of one table INPUT; checks now what can be checked before any work (the file
    opens, its header has the columns)."""
    path = given.paths[0]
    cls = TABLES[path.suffix.lower()]
    table = cls(path, given.arg, f"{given.arg}:" if several else "", tuple(columns), text)
    table.check()
    return table
