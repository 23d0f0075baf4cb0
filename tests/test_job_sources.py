"""A job's inputs as a stream: folders walked in sorted order, files, globs, and the rows of
CSV, Parquet, JSON lines, .npy and .npz tables; one line for what cannot work."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from netcore.jobs.sources import JobInputs, SourceError, Unreadable, classify, file_sources, walk
from netcore.jobs.tables import table_source


def accepts_png(path: Path) -> bool:
    return path.suffix.lower() == ".png"


def files(root: Path, names: list[str]) -> None:
    for name in names:
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(name.encode())


def test_a_folder_is_walked_recursively_in_sorted_order(tmp_path: Path) -> None:
    files(tmp_path / "in", ["b.png", "a/z.png", "a/b/c.png", "c.txt", ".hidden.png", "A.PNG"])
    inputs = file_sources(
        [classify(str(tmp_path / "in"))], accepts_png, "model m (x)", frozenset({".png"})
    )
    keys = [item.key for item in inputs.items()]
    assert keys == ["A.PNG", "a/b/c.png", "a/z.png", "b.png"]
    assert inputs.count() == 4
    assert all(item.path is not None and item.path.is_file() for item in inputs.items())


def test_a_walk_is_lazy(tmp_path: Path) -> None:
    files(tmp_path, [f"{i:03d}.png" for i in range(50)])
    it = walk(tmp_path)
    assert next(it).name == "000.png"  # nothing else needed to be listed first but the folder


def test_several_inputs_are_told_apart_by_their_argument(tmp_path: Path) -> None:
    files(tmp_path, ["one/a.png", "two/a.png", "three.png"])
    given = [classify(str(tmp_path / n)) for n in ("one", "two", "three.png")]
    keys = [i.key for i in file_sources(given, accepts_png, "m", frozenset({".png"})).items()]
    assert keys == [f"{tmp_path}/one/a.png", f"{tmp_path}/two/a.png", str(tmp_path / "three.png")]


def test_a_glob_gives_the_files_it_matches_in_order(tmp_path: Path) -> None:
    files(tmp_path, ["b.png", "a.png", "sub/c.png", "d.jpg"])
    given = classify(str(tmp_path / "**" / "*.png"))
    assert given.what == "glob"
    keys = [
        Path(i.key).name
        for i in file_sources([given], accepts_png, "m", frozenset({".png"})).items()
    ]
    assert keys == ["a.png", "b.png", "c.png"]


@pytest.mark.parametrize(
    ("make", "words"),
    [
        (lambda p: (p / "empty").mkdir(), "an empty folder"),
        (
            lambda p: files(p / "empty", ["x.txt"]),
            r"no file that model m \(x\) takes in it \(it takes .png files\)",
        ),
        (lambda p: files(p, ["empty"]), "a text file; model m .x. does not take it"),
    ],
)
def test_what_cannot_work_is_one_line_before_any_work(
    tmp_path: Path, make: object, words: str
) -> None:
    make(tmp_path)  # type: ignore[operator]
    with pytest.raises(SourceError, match=words):
        file_sources(
            [classify(str(tmp_path / "empty"))], accepts_png, "model m (x)", frozenset({".png"})
        )


def test_nothing_at_all_is_said(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="no such file or folder"):
        classify(str(tmp_path / "nope"))
    with pytest.raises(SourceError, match="matches no file"):
        classify(str(tmp_path / "*.png"))


def rows(source: object) -> list[object]:
    return list(source.items())  # type: ignore[attr-defined]


def test_csv_rows_with_a_header_and_picked_columns(tmp_path: Path) -> None:
    path = tmp_path / "t.csv"
    path.write_text('a,b,name\n1,2,x\n3,,y\n5,q,z\n7,"[8, 9]",w\n10\n')
    source = table_source(classify(str(path)), ("a", "b"), text=False, several=False)
    found = rows(source)
    assert [i.key for i in found] == ["1", "2", "3", "4", "5"]
    assert found[0].value == [1.0, 2.0]
    assert isinstance(found[1], Unreadable) and "column 'b' is empty" in found[1].error
    assert isinstance(found[2], Unreadable) and "'q', not a number" in found[2].error
    assert found[3].value == [7.0, 8.0, 9.0]  # a JSON list in a cell (as map's CSV writes them)
    assert isinstance(found[4], Unreadable) and "no value in column 'b'" in found[4].error
    assert source.count() == 5
    with pytest.raises(SourceError, match=r"no column .c. \(it has a, b, name\)"):
        table_source(classify(str(path)), ("c",), text=False, several=False)


def test_csv_without_columns_takes_the_columns_of_numbers_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "iris.csv"
    path.write_text("sl,sw,species\n5.1,3.5,setosa\n7.0,bad,versicolor\n")
    source = table_source(classify(str(path)), (), text=False, several=False)
    found = rows(source)
    assert found[0].value == [5.1, 3.5]
    assert isinstance(found[1], Unreadable)  # one bad cell is that row's error
    assert JobInputs([source], tables=True).notes == [
        f"INPUT {path}: rows are the columns of numbers (sl, sw); left out: species "
        "(--column picks others)"
    ]


def test_a_headerless_csv_is_all_rows(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    np.savetxt(path, np.arange(12).reshape(3, 4), delimiter=",", fmt="%g")
    found = rows(table_source(classify(str(path)), (), text=False, several=False))
    assert [i.value for i in found] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    picked = rows(table_source(classify(str(path)), ("1", "3"), text=False, several=True))
    assert picked[0].key == f"{path}:1" and picked[0].value == [1, 3]


def test_a_text_column(tmp_path: Path) -> None:
    path = tmp_path / "notes.csv"
    path.write_text('id,text\n1,"hello, world"\n2,second\n')
    found = rows(table_source(classify(str(path)), ("text",), text=True, several=False))
    assert [i.value for i in found] == ["hello, world", "second"]
    with pytest.raises(SourceError, match="pick the text column with --column"):
        table_source(classify(str(path)), (), text=True, several=False)


def test_parquet_rows_in_record_batches(tmp_path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from netcore.jobs import tables

    n = tables.BATCH_ROWS * 2 + 7
    features = [[float(i), float(i) + 0.5] for i in range(n)]
    table = pa.table({"id": list(range(n)), "features": features, "tag": ["t"] * n})
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=500)
    source = table_source(classify(str(path)), ("features",), text=False, several=False)
    assert source.count() == n
    found = rows(source)
    assert len(found) == n and found[-1].key == str(n) and found[-1].value == features[-1]
    default = table_source(classify(str(path)), (), text=False, several=False)
    assert rows(default)[3].value == [3.0, 3.0, 3.5]  # id and features, the text column left out
    bad = tmp_path / "bad.parquet"
    bad.write_bytes(b"PAR1 nothing")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        table_source(classify(str(bad)), (), text=False, several=False)


def test_json_lines(tmp_path: Path) -> None:
    path = tmp_path / "t.jsonl"
    lines = [
        json.dumps({"x": [1, 2], "y": 3, "name": "a"}),
        "",
        "{not json",
        json.dumps({"y": 4}),
        json.dumps([5, 6, 7]),
    ]
    path.write_text("\n".join(lines) + "\n")
    found = rows(table_source(classify(str(path)), ("x", "y"), text=False, several=False))
    assert [i.key for i in found] == ["1", "2", "3", "4"]
    assert found[0].value == [1.0, 2.0, 3.0]
    assert isinstance(found[1], Unreadable) and "not JSON" in found[1].error
    assert isinstance(found[2], Unreadable) and "no column 'x'" in found[2].error
    assert found[3].value == [5.0, 6.0, 7.0]  # a line that is a list is the row itself
    plain = rows(table_source(classify(str(path)), (), text=False, several=False))
    assert plain[3].value == [5.0, 6.0, 7.0]


def test_npy_rows_are_memory_mapped_and_npz_gives_x(tmp_path: Path) -> None:
    arr = np.arange(24, dtype=np.float32).reshape(3, 8)
    np.save(tmp_path / "a.npy", arr)
    np.savez(tmp_path / "a.npz", x=arr, y=np.arange(3))
    for name in ("a.npy", "a.npz"):
        source = table_source(classify(str(tmp_path / name)), (), text=False, several=False)
        found = rows(source)
        assert source.count() == 3 and len(found) == 3
        assert np.array_equal(found[2].value, arr[2]) and found[2].value.dtype == np.float32
    (tmp_path / "fake.npy").write_text("hello")
    with pytest.raises(SourceError, match=r"a text file, not a \.npy array"):
        table_source(classify(str(tmp_path / "fake.npy")), (), text=False, several=False)
    np.save(tmp_path / "empty.npy", np.zeros((0, 8)))
    with pytest.raises(SourceError, match="no rows"):
        table_source(classify(str(tmp_path / "empty.npy")), (), text=False, several=False)
