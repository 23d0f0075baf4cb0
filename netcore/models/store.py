"""The user's model store, ``<data_dir>/models``: adding, removing, inspecting ONNX files.

Every model is stored under a name pinned by its content, ``<name>-<sha12>.onnx``, with its
manifest ``<name>-<sha12>.json`` beside it, so two versions of one name coexist. Files are
written to a temporary name, fsynced and renamed: a reader (or a crash) never sees half a
model under its final name.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from netcore.models.registry import ModelError, ModelSpec, TensorSpec, load_manifest, sha256_file

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Model names: they become file names, so no separators, no leading dot."""

SHA_RE = re.compile(r"^[0-9a-f]{64}$")

ORT_DTYPES: dict[str, str] = {
    "tensor(float)": "float32",
    "tensor(double)": "float64",
    "tensor(float16)": "float16",
    "tensor(int8)": "int8",
    "tensor(int16)": "int16",
    "tensor(int32)": "int32",
    "tensor(int64)": "int64",
    "tensor(uint8)": "uint8",
    "tensor(uint16)": "uint16",
    "tensor(uint32)": "uint32",
    "tensor(uint64)": "uint64",
    "tensor(bool)": "bool",
}
"""onnxruntime's type names of the tensors the wire protocol can carry."""


@dataclass(frozen=True, slots=True)
class OnnxInfo:
    """What an ONNX graph takes and gives, as onnxruntime reads it."""

    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    skipped: list[str]
    """Outputs left out of results (neither a tensor nor a ZipMap), as ``name (type)``."""


def check_name(name: str) -> str:
    if not NAME_RE.fullmatch(name):
        raise ModelError(f"model name {name!r}: use 1-64 letters, digits, '.', '_' or '-'")
    return name


def stem(name: str, sha256: str) -> str:
    """The file name (without suffix) a model version is stored under."""
    return f"{name}-{sha256[:12]}"


def _dim(value: Any) -> int:
    return value if isinstance(value, int) and value > 0 else -1


def inspect_onnx(source: Path | bytes, label: str | None = None) -> OnnxInfo:
    """Load ``source`` in onnxruntime (CPU) and read its inputs and outputs.

    Raises :class:`ModelError` with one line when onnxruntime cannot load it, or when an input
    is not a tensor the protocol can carry.
    """
    import onnxruntime as ort

    shown = label or (str(source) if isinstance(source, Path) else "model")
    options = ort.SessionOptions()
    options.log_severity_level = 4
    options.intra_op_num_threads = 1
    try:
        if isinstance(source, Path) and not source.is_file():
            raise ModelError(f"{shown}: no such file")
        session = ort.InferenceSession(
            str(source) if isinstance(source, Path) else source,
            sess_options=options,
            providers=["CPUExecutionProvider"],
        )
    except ModelError:
        raise
    except Exception as exc:
        reason = " ".join(str(exc).split())
        reason = reason.split("] : ", 1)[-1][:200]  # drop onnxruntime's "[ONNXRuntimeError] : 7 :"
        raise ModelError(f"{shown}: not a model onnxruntime can load ({reason})") from None
    return onnx_info(session, shown)


def onnx_info(session: Any, shown: str) -> OnnxInfo:
    """What an open onnxruntime session takes and gives (see :func:`inspect_onnx`)."""
    inputs = []
    for item in session.get_inputs():
        dtype = ORT_DTYPES.get(item.type)
        if dtype is None:
            raise ModelError(
                f"{shown}: input {item.name!r} is {item.type}; only numeric tensors can be sent"
            )
        inputs.append(TensorSpec(item.name, dtype, tuple(_dim(d) for d in (item.shape or []))))
    outputs, skipped = [], []
    for item in session.get_outputs():
        if item.type in ORT_DTYPES:
            outputs.append(TensorSpec(item.name, ORT_DTYPES[item.type]))
        elif item.type.startswith("seq(map("):
            outputs.append(TensorSpec(item.name, "float32"))  # see models.zipmap_to_tensor
        else:
            skipped.append(f"{item.name} ({item.type})")
    if not outputs:
        raise ModelError(f"{shown}: no output is a tensor ({', '.join(skipped)})")
    return OnnxInfo(inputs, outputs, skipped)


def _specs_json(specs: Iterable[TensorSpec], with_shape: bool) -> list[dict[str, Any]]:
    out = []
    for s in specs:
        item: dict[str, Any] = {"name": s.name, "dtype": s.dtype}
        if with_shape:
            item["shape"] = list(s.shape or ())
        out.append(item)
    return out


def build_manifest(
    name: str,
    sha256: str,
    size: int,
    file: str,
    info: OnnxInfo,
    *,
    version: str = "1",
    labels: list[str] | None = None,
    label_output: str | None = None,
    description: str = "",
    processing: str | None = None,
    source: str = "user",
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A manifest dict for :func:`netcore.models.registry.load_manifest`."""
    output_names = [o.name for o in info.outputs]
    if label_output is not None and label_output not in output_names:
        raise ModelError(
            f"label output {label_output!r} is not an output ({', '.join(output_names)})"
        )
    if label_output is None:  # "label", or skl2onnx's "output_label"
        label_output = next(
            (
                o.name
                for o in info.outputs
                if (o.name == "label" or o.name.endswith("_label"))
                and o.dtype in ("int64", "int32")
            ),
            None,
        )
    manifest: dict[str, Any] = {
        "name": name,
        "version": version,
        "file": file,
        "sha256": sha256,
        "size": size,
        "description": description,
        "inputs": _specs_json(info.inputs, True),
        "outputs": _specs_json(info.outputs, False),
        "source": source,
    }
    if label_output:
        manifest["label_output"] = label_output
    if labels:
        manifest["labels"] = list(labels)
    if processing:
        manifest["processing"] = processing
    manifest.update(extra or {})
    return manifest


def _fsync_dir(directory: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem lets a directory be opened
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file, fsync, rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_copy(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dst.name}.", suffix=".part", dir=dst.parent)
    try:
        with os.fdopen(fd, "wb") as out, open(src, "rb") as inp:
            shutil.copyfileobj(inp, out, 1 << 20)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dst)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(dst.parent)


def write_manifest(directory: Path, manifest: dict[str, Any]) -> Path:
    path = directory / f"{stem(manifest['name'], manifest['sha256'])}.json"
    atomic_write(path, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return path


def read_labels(path: Path) -> list[str]:
    """Class labels from a file: a JSON list, or one label a line."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ModelError(f"--labels {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise ModelError(f"--labels {path}: not UTF-8 text") from None
    if text.lstrip()[:1] in ("[", "{"):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise ModelError(f"--labels {path}: bad JSON: {exc}") from None
        if not isinstance(data, list):
            raise ModelError(f"--labels {path}: expected a JSON list")
        return [str(x) for x in data]
    return [line.strip() for line in text.splitlines() if line.strip()]


def add_model(
    models_dir: Path,
    source: Path,
    *,
    name: str | None = None,
    version: str = "1",
    labels: list[str] | None = None,
    label_output: str | None = None,
    description: str = "",
    processing: str | None = None,
) -> ModelSpec:
    """Check ``source`` loads in onnxruntime, then store it (and a manifest) in ``models_dir``."""
    if not source.is_file():
        raise ModelError(f"{source}: no such file")
    name = check_name(source.stem if name is None else name)
    info = inspect_onnx(source)
    sha = sha256_file(source)
    file = f"{stem(name, sha)}.onnx"
    manifest = build_manifest(
        name,
        sha,
        source.stat().st_size,
        file,
        info,
        version=version,
        labels=labels,
        label_output=label_output,
        description=description,
        processing=processing,
    )
    target = models_dir / file
    models_dir.parent.mkdir(
        parents=True, exist_ok=True, mode=0o700
    )  # the data dir, as identity makes it
    if not (target.is_file() and sha256_file(target) == sha):
        atomic_copy(source, target)
    return load_manifest(write_manifest(models_dir, manifest))


def store_verified(
    models_dir: Path,
    name: str,
    sha256: str,
    part: Path,
    manifest_extra: dict[str, Any],
    info: OnnxInfo | None = None,
) -> ModelSpec:
    """Move a downloaded file whose sha256 was checked to its final name, with a manifest.

    The manifest's inputs and outputs come from the file itself (read by onnxruntime; pass
    ``info`` when a session on it is open already, so the file is not loaded once more), and
    ``manifest_extra`` adds what the peer said (version, label output).
    """
    check_name(name)
    file = f"{stem(name, sha256)}.onnx"
    target = models_dir / file
    if info is None:
        info = inspect_onnx(part, label=f"model {name}")
    extra = dict(manifest_extra)
    label_output = extra.pop("label_output", None)
    if label_output not in [o.name for o in info.outputs]:
        label_output = None
    manifest = build_manifest(
        name,
        sha256,
        part.stat().st_size,
        file,
        info,
        version=str(extra.pop("version", "1")),
        label_output=label_output,
        description=str(extra.pop("description", "")),
        source="fetched",
        extra=extra,
    )
    os.replace(part, target)
    _fsync_dir(models_dir)
    return load_manifest(write_manifest(models_dir, manifest))


def stored_models(models_dir: Path) -> list[tuple[Path, ModelSpec]]:
    """The manifests in ``models_dir`` that load, with their specs."""
    found = []
    if models_dir.is_dir():
        for manifest in sorted(models_dir.glob("*.json")):
            with contextlib.suppress(ModelError):
                found.append((manifest, load_manifest(manifest)))
    return found


def remove_models(models_dir: Path, name: str, sha_prefix: str | None = None) -> list[ModelSpec]:
    """Delete the stored versions of ``name`` (those whose sha256 starts with ``sha_prefix``)."""
    removed = []
    for manifest, spec in stored_models(models_dir):
        if spec.name != name or (sha_prefix and not spec.sha256.startswith(sha_prefix.lower())):
            continue
        others = [s for m, s in stored_models(models_dir) if m != manifest and s.path == spec.path]
        manifest.unlink(missing_ok=True)
        if not others and spec.path.parent == models_dir:
            spec.path.unlink(missing_ok=True)
        removed.append(spec)
    return removed


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
