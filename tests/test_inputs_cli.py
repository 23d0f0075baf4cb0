"""``p2pai submit --input`` and ``p2pai infer INPUT``: what cannot be read or does not fit the
model is one line on stderr before the node connects, never a traceback (issue 15, items
4-6). Every case here fails before a socket is opened (the model is held locally)."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from netcore.cli.root import cli

READS = "submit reads .npy or .npz (x, y) files"
INFER_READS = "infer reads JSON ('[5.1, 3.5, 1.4, 0.2]' is one sample"


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "features.csv").write_text("a,b\n1,2\n")
    (tmp_path / "pngs").mkdir()
    (tmp_path / "pngs" / "digit_000.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(40))
    np.save(tmp_path / "digits-8x7.npy", np.zeros((500, 8, 7)))
    (tmp_path / "sample.json").write_text("[1, 2, 3]")
    (tmp_path / "notes.txt").write_text("five\n")
    return tmp_path


def run(tmp_path: Path, *args: str, stdin: str = "") -> str:
    """The one stderr line of a failing command, without its ``p2pai: error:`` prefix."""
    options = ["--interface", "127.0.0.1", "--network", f"inputs-{uuid.uuid4().hex[:10]}"]
    options += ["--data-dir", str(tmp_path / "data"), "--timeout", "1"]
    result = CliRunner().invoke(cli, [*args, *options], input=stdin)
    assert result.exit_code == 1, (result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("p2pai: error: ")
    return lines[0].removeprefix("p2pai: error: ")


@pytest.mark.parametrize(
    ("given", "said"),
    [
        # What `p2pai map` reads (the jobs work) is named with the command that reads it.
        (
            "features.csv",
            f"--input {{d}}/features.csv: a CSV file; {READS}; "
            "`p2pai map digits {d}/features.csv -o OUT` reads it",
        ),
        (
            "pngs/digit_000.png",
            f"--input {{d}}/pngs/digit_000.png: a PNG image; {READS}; "
            "`p2pai map digits {d}/pngs/digit_000.png -o OUT` reads it",
        ),
        (
            "pngs",
            f"--input {{d}}/pngs: a folder; {READS}; `p2pai map digits {{d}}/pngs -o OUT` reads it",
        ),
        ("notes.txt", f"--input {{d}}/notes.txt: a text file; {READS}"),
        ("nosuch.npy", "--input {d}/nosuch.npy: no such file"),
        (
            "digits-8x7.npy",
            "--input {d}/digits-8x7.npy: input 'input' of model digits: expected float32 "
            "[N, 64], given float64 [500, 8, 7]",
        ),
    ],
)
def test_submit_input_is_one_line(files: Path, given: str, said: str) -> None:
    assert run(files, "submit", "--input", str(files / given)) == said.format(d=files)


@pytest.mark.parametrize(
    ("given", "said"),
    [
        # digits reads images now (its kind, netcore/models/kinds/image.py): a broken one
        # is still one line before connecting; a folder is for `p2pai map`.
        ("{d}/pngs/digit_000.png", "digit_000.png: corrupt image"),
        ("{d}/pngs", "{d}/pngs is a folder: `p2pai map digits {d}/pngs -o OUT` runs one"),
        ("@{d}/pngs/digit_000.png", "INPUT @{d}/pngs/digit_000.png: a PNG image; @FILE reads"),
        (
            "@{d}/sample.json",
            "input 'input' of model digits: expected float32 [N, 64], given int64 [3]",
        ),
        ("hello there", "INPUT 'hello there' is not JSON and names no file; " + INFER_READS),
        ("[1, 2", "INPUT '[1, 2': not JSON"),
        ("-", "INPUT - (stdin): not JSON"),
        ('{"pixels": [1]}', "model digits takes input 'input'; given 'pixels'"),
        ("[[1, 2], [3]]", "input 'input' of model digits: the values are not a rectangular array"),
        # Longer than a file name may be (255 bytes): JSON or text all the same, not a path.
        pytest.param(
            str([round(i * 0.123456789, 9) for i in range(65)]),
            "input 'input' of model digits: expected float32 [N, 64], given float64 [65]",
            id="long-json",
        ),
        pytest.param(
            "seven " * 60,
            "INPUT 'seven seven seven seven seven seven seven seven seven sev...' is not",
            id="long-text",
        ),
    ],
)
def test_infer_input_is_one_line(files: Path, given: str, said: str) -> None:
    line = run(files, "infer", "digits", given.replace("{d}", str(files)), stdin="five")
    assert line.startswith(said.replace("{d}", str(files)))
