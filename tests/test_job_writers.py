"""Results files: written beside OUTPUT and renamed at the end; JSON lines, CSV, Parquet."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from netcore.jobs import writers
from netcore.jobs.writers import WriterError, open_writer, partial_path

COLUMNS = ("input", "ok", "label", "class", "confidence", "worker", "latency_ms", "error")


def records(n: int, start: int = 0) -> list[dict[str, object]]:
    out: list[dict[str, object]] = []
    for i in range(start, start + n):
        if i % 5 == 4:
            out.append({"input": str(i), "ok": False, "error": f"{i}: bad"})
        else:
            out.append({"input": str(i), "ok": True, "label": str(i % 3), "class": i % 3,
                        "confidence": 0.5, "worker": "w1", "latency_ms": 1.25})  # fmt: skip
    return out


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet"])
def test_output_appears_only_when_committed(tmp_path: Path, suffix: str) -> None:
    out = tmp_path / f"out{suffix}"
    out.write_text("the old results")
    writer = open_writer(out, COLUMNS)
    writer.write(records(10))
    assert out.read_text() == "the old results" and partial_path(out).exists()
    writer.abort()
    assert out.read_text() == "the old results" and not partial_path(out).exists()
    writer = open_writer(out, COLUMNS)
    writer.write(records(10))
    writer.commit()
    assert not partial_path(out).exists()
    assert read_back(out)[9]["error"] == "9: bad"


def read_back(path: Path) -> list[dict[str, object]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    if path.suffix == ".csv":
        with open(path, newline="") as fh:
            return list(csv.DictReader(fh))
    import pyarrow.parquet as pq

    return pq.read_table(path).to_pylist()


def test_jsonl_leaves_out_what_a_record_lacks_csv_and_parquet_have_every_column(
    tmp_path: Path,
) -> None:
    for suffix in (".jsonl", ".csv", ".parquet"):
        writer = open_writer(tmp_path / f"o{suffix}", COLUMNS)
        writer.write(records(5))
        writer.commit()
    jl = read_back(tmp_path / "o.jsonl")
    assert "error" not in jl[0] and "label" not in jl[4]
    rows = read_back(tmp_path / "o.csv")
    assert list(rows[0]) == list(COLUMNS) and rows[0]["ok"] == "true" and rows[4]["label"] == ""
    pq_rows = read_back(tmp_path / "o.parquet")
    assert pq_rows[0]["class"] == 0 and pq_rows[4]["class"] is None and pq_rows[0]["ok"] is True


def test_csv_cells_hold_lists_as_json(tmp_path: Path) -> None:
    writer = open_writer(tmp_path / "o.csv", ("input", "ok", "embedding"))
    writer.write([{"input": "a", "ok": True, "embedding": [0.5, 1.0]}])
    writer.commit()
    assert json.loads(read_back(tmp_path / "o.csv")[0]["embedding"]) == [0.5, 1.0]


def test_parquet_row_groups_and_a_column_empty_at_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pyarrow.parquet as pq

    monkeypatch.setattr(writers, "ROW_GROUP", 4)
    out = tmp_path / "o.parquet"
    writer = open_writer(out, ("input", "ok", "lines", "error"))
    # The first six records have no `lines`: its type waits for a value to say it.
    writer.write([{"input": str(i), "ok": False, "error": "x"} for i in range(6)])
    writer.write(
        [
            {"input": str(i), "ok": True, "lines": [{"text": "hi", "score": 0.9}]}
            for i in range(6, 13)
        ]
    )
    writer.commit()
    table = pq.read_table(out)
    assert table.num_rows == 13 and pq.ParquetFile(out).metadata.num_row_groups >= 3
    assert table.to_pylist()[12]["lines"] == [{"text": "hi", "score": 0.9}]


@pytest.mark.parametrize(
    ("name", "words"),
    [
        ("out.txt", "'.txt'; map writes .jsonl, .csv, .parquet"),
        ("out", "no extension; map writes"),
        ("missing/out.jsonl", "no folder"),
        (".", "a folder, not a file"),
    ],
)
def test_an_output_we_cannot_write_is_said_at_once(tmp_path: Path, name: str, words: str) -> None:
    with pytest.raises(WriterError, match=words):
        open_writer(tmp_path / name, COLUMNS)


def test_an_unwritable_folder(tmp_path: Path) -> None:
    import os

    if os.geteuid() == 0:
        target = Path("/proc/out.jsonl")  # not even root writes there
    else:
        (tmp_path / "ro").mkdir(mode=0o500)
        target = tmp_path / "ro" / "out.jsonl"
    with pytest.raises(WriterError, match="cannot write it"):
        open_writer(target, COLUMNS)


def test_a_chunking_kinds_parquet_has_each_column_once(tmp_path: Path) -> None:
    """minilm names ``chunk`` among its fields, and the records add it: the Parquet file had
    two ``chunk`` columns and pyarrow could not read it back."""
    import pyarrow.parquet as pq

    from netcore.jobs.records import columns, ok_records
    from netcore.models.kinds.base import Kind

    class Chunks(Kind):
        name = "chunks"
        fields = ("chunk", "span", "embedding")

        def read(self, item: object) -> object:
            return item

        def parts(self, prepared: object) -> list[object]:
            return [prepared, prepared]

    kind = Chunks.__new__(Chunks)
    cols = columns(kind)
    assert cols.count("chunk") == 1
    parts = [
        {"fields": {"span": [0, 3], "embedding": [0.5, 0.5]}, "worker": "w", "latency_ms": 1.0}
    ] * 2
    out = tmp_path / "e.parquet"
    writer = open_writer(out, cols)
    writer.write(ok_records("a.txt", parts, chunked=True))
    writer.commit()
    table = pq.read_table(out)
    assert table.column("chunk").to_pylist() == [0, 1]
    assert table.column("embedding").to_pylist() == [[0.5, 0.5]] * 2
