"""``p2pai infer MODEL FILE`` against a real ``p2pai node`` process serving the real models:
a digit image, a page for OCR, a text file and a text for MiniLM; bad files in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from kind_helpers import char_accuracy, digit_image, render_page

from netcore.models.registry import load_samples

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]
pytest.importorskip("cv2", reason="the ocr extra")
pytest.importorskip("tokenizers", reason="the embed extra")

Run = Callable[..., subprocess.CompletedProcess[str]]


def client_args(network: str, data_dir: Path) -> list[str]:
    return ["--interface", "127.0.0.1", "--network", network, "--data-dir", str(data_dir)]


def records(res: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    assert res.returncode == 0, res.stderr
    return [json.loads(line) for line in res.stdout.splitlines()]


def one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("p2pai: error: ")
    return res.stderr.strip()


def test_infer_files_of_every_kind(
    start_node: Callable[..., Any], run_cli: Run, network: str, tmp_path: Path
) -> None:
    start_node("w1")
    args = client_args(network, tmp_path / "client")
    x, y = load_samples()
    assert y is not None

    digit = tmp_path / "seven.png"
    index = int(np.flatnonzero(y == 7)[0])
    digit_image(x[index], 32).save(digit)
    (rec,) = records(run_cli("infer", "digits", str(digit), *args))
    assert rec["label"] == "7" and rec["class"] == 7 and rec["confidence"] > 0.5
    scan = tmp_path / "scan.png"
    digit_image(x[index], 32, invert=True).save(scan)
    (rec,) = records(run_cli("infer", "digits", str(scan), "--invert", *args))
    assert rec["class"] == 7

    page = tmp_path / "page.png"
    lines = ["Real jobs on real models", "a folder in, a results file out"]
    page.write_bytes(render_page(lines))
    (rec,) = records(run_cli("infer", "ocr", str(page), *args, timeout=120))
    assert char_accuracy(rec["text"], "\n".join(lines)) >= 0.95, rec["text"]
    assert [line["text"] for line in rec["lines"]] == rec["text"].splitlines()

    notes = tmp_path / "notes.txt"
    notes.write_text(" ".join(f"Note {i}: peers share work." for i in range(120)), "utf-8")
    chunks = records(run_cli("infer", "minilm", str(notes), *args))
    assert [c["chunk"] for c in chunks] == list(range(len(chunks))) and len(chunks) >= 3
    assert all(len(c["embedding"]) == 384 for c in chunks)
    (rec,) = records(run_cli("infer", "minilm", "peers share work", *args))
    assert abs(np.linalg.norm(rec["embedding"]) - 1) < 1e-4

    # Tensors still take the plain path.
    npy = tmp_path / "rows.npy"
    np.save(npy, x[:3])
    res = run_cli("infer", "digits", str(npy), *args)
    assert res.returncode == 0, res.stderr
    assert [r["class"] for r in json.loads(res.stdout)["results"]] == y[:3].tolist()

    bad = tmp_path / "broken.png"
    bad.write_bytes(digit.read_bytes()[: len(digit.read_bytes()) // 2])
    assert "broken.png: corrupt image" in one_error_line(
        run_cli("infer", "digits", str(bad), *args)
    )
    line = one_error_line(run_cli("infer", "digits", str(notes), *args))
    assert (
        "model digits (image-classification) reads" in line and "notes.txt is a text file" in line
    )
    line = one_error_line(run_cli("infer", "ocr", str(tmp_path / "nowhere.png"), *args))
    assert "no such file" in line
