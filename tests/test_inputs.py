"""What ``submit --input`` and ``infer INPUT`` read, and one line for the rest
(netcore.models.inputs)."""

from __future__ import annotations

import io
import json
import pickle
from pathlib import Path

import numpy as np
import pytest

from netcore.models.inputs import (
    InputError,
    PlainText,
    kind_of,
    read_infer_input,
    read_samples,
)

READS = "submit reads .npy or .npz (x, y) files"


def refused(path: Path) -> str:
    with pytest.raises(InputError) as err:
        read_samples(path)
    message = str(err.value)
    assert "\n" not in message
    return message


def test_npy_and_npz_samples_are_read_as_they_are(tmp_path: Path) -> None:
    x = np.arange(24, dtype=np.float64).reshape(3, 2, 4)
    np.save(tmp_path / "x.npy", x)
    got = read_samples(tmp_path / "x.npy")
    assert got.x.shape == (3, 2, 4) and got.x.dtype == np.float64 and got.y is None
    np.savez(tmp_path / "xy.npz", x=x, y=np.array([1.0, 2.0, 0.0]))
    got = read_samples(tmp_path / "xy.npz")
    assert got.y is not None and got.y.dtype == np.int64 and got.y.tolist() == [1, 2, 0]
    bundled = read_samples(None)
    assert bundled.x.shape == (360, 64) and bundled.y is not None


def test_other_kinds_are_one_line_naming_them(tmp_path: Path) -> None:
    (tmp_path / "features.csv").write_text("a,b\n1,2\n")
    assert (
        refused(tmp_path / "features.csv")
        == f"--input {tmp_path}/features.csv: a CSV file; {READS}; "
        f"`p2pai map MODEL {tmp_path}/features.csv -o OUT` reads it"
    )
    (tmp_path / "digit.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    assert f"digit.png: a PNG image; {READS}; `p2pai map MODEL " in refused(tmp_path / "digit.png")
    (tmp_path / "pngs").mkdir()
    assert refused(tmp_path / "pngs").endswith(
        f"pngs: a folder; {READS}; `p2pai map MODEL {tmp_path}/pngs -o OUT` reads it"
    )
    (tmp_path / "photo").write_bytes(b"\xff\xd8\xff\xe0" + bytes(20))
    assert refused(tmp_path / "photo").endswith(
        f"photo: a JPEG image; {READS}; `p2pai map MODEL {tmp_path}/photo -o OUT` reads it"
    )
    assert refused(tmp_path / "none.npy").endswith("none.npy: no such file")


def test_a_wrong_file_behind_a_npy_name_is_named_not_unpickled(tmp_path: Path) -> None:
    (tmp_path / "features.npy").write_text("1,2,3\n")
    assert refused(tmp_path / "features.npy").endswith(
        "features.npy: a text file, not a .npy array"
    )
    (tmp_path / "objects.npy").write_bytes(b"")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert "holds Python objects" in refused(tmp_path / "objects.npy")
    (tmp_path / "data.npz").write_bytes(pickle.dumps([1, 2]))
    assert refused(tmp_path / "data.npz").endswith("a Python pickle, not an .npz archive")


def test_npz_contents_are_checked(tmp_path: Path) -> None:
    np.savez(tmp_path / "a.npz", features=np.zeros((2, 2)))
    assert "no array named x (it holds features)" in refused(tmp_path / "a.npz")
    np.savez(tmp_path / "b.npz", x=np.zeros((3, 2)), y=np.zeros(2))
    assert "y holds [2] labels for 3 samples" in refused(tmp_path / "b.npz")
    np.savez(tmp_path / "c.npz", x=np.zeros((2, 2)), y=np.array([0.5, 1.0]))
    assert "whole-number class labels" in refused(tmp_path / "c.npz")
    np.save(tmp_path / "empty.npy", np.zeros((0, 64)))
    assert "no samples" in refused(tmp_path / "empty.npy")


def test_infer_reads_json_files_at_files_and_stdin(tmp_path: Path) -> None:
    assert read_infer_input("[5.1, 3.5, 1.4, 0.2]") == [5.1, 3.5, 1.4, 0.2]
    assert read_infer_input('{"input": [1]}') == {"input": [1]}
    (tmp_path / "s.json").write_text(json.dumps([[1, 2]]))
    assert read_infer_input(f"@{tmp_path}/s.json") == [[1, 2]]
    assert read_infer_input(f"{tmp_path}/s.json") == [[1, 2]]
    assert read_infer_input("-", io.StringIO("[3]\n")) == [3]
    np.save(tmp_path / "one.npy", np.ones((1, 4)))
    assert read_infer_input(str(tmp_path / "one.npy")).shape == (1, 4)
    np.savez(tmp_path / "xy.npz", x=np.ones((2, 4)), y=np.zeros(2))
    assert read_infer_input(str(tmp_path / "xy.npz")).shape == (2, 4)
    np.savez(tmp_path / "named.npz", a=np.ones(1), b=np.ones(1))
    assert set(read_infer_input(str(tmp_path / "named.npz"))) == {"a", "b"}
    text = read_infer_input("4 5")
    assert isinstance(text, PlainText) and text == "4 5"


@pytest.mark.parametrize(
    ("arg", "expected"),
    [
        ("{tmp}/digit_000.png", "INPUT {tmp}/digit_000.png: a PNG image; infer reads JSON"),
        ("{tmp}", "INPUT {tmp}: a folder; infer reads JSON"),
        ("@{tmp}/digit_000.png", "INPUT @{tmp}/digit_000.png: a PNG image; @FILE reads JSON"),
        ("@{tmp}/missing.json", "INPUT @{tmp}/missing.json: no such file; @FILE reads JSON"),
        ("@{tmp}/bad.json", "INPUT @{tmp}/bad.json: not JSON (Expecting value"),
        ("[1, 2", "INPUT '[1, 2': not JSON (Expecting"),
        ("-", "INPUT - (stdin): not JSON"),
    ],
)
def test_infer_inputs_it_cannot_read_are_one_line(tmp_path: Path, arg: str, expected: str) -> None:
    (tmp_path / "digit_000.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    (tmp_path / "bad.json").write_text("five")
    with pytest.raises(InputError) as err:
        read_infer_input(arg.format(tmp=tmp_path), io.StringIO("not json"))
    assert str(err.value).startswith(expected.format(tmp=tmp_path))
    assert "\n" not in str(err.value)


def test_kind_of(tmp_path: Path) -> None:
    (tmp_path / "empty").write_bytes(b"")
    assert kind_of(tmp_path / "empty") == "an empty file"
    (tmp_path / "blob").write_bytes(bytes(range(200, 256)))
    assert kind_of(tmp_path / "blob") == "a file of unknown kind"
