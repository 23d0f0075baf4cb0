"""Model registry: ONNX files with a JSON manifest beside each, loaded into onnxruntime.

A manifest ``<name>.json`` names its ONNX ``file``, its ``sha256`` (checked when the model
is loaded: a file that does not match is refused), its input specs (dtype and shape, ``-1``
for any size) and outputs. Shipped models live in ``assets/models``; user models in
``<data_dir>/models``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netcore.wire.protocol import dtype_name

log = logging.getLogger("p2pai.models")

QUICK_RUN_S = 0.0002


class ModelError(Exception):
    """A model that cannot be used; the message says which and why."""


class InputMismatch(Exception):
    """Well-formed tensors that do not fit the model (protocol code ``bad_input``)."""


def assets_dir() -> Path:
    """The shipped assets: the source tree's ``assets/`` or the installed shared data."""
    candidates = [
        Path(__file__).resolve().parents[2] / "assets",
        Path(sys.prefix) / "share" / "p2pai" / "assets",
    ]
    for candidate in candidates:
        if (candidate / "models").is_dir():
            return candidate
    return candidates[0]


def default_samples_path() -> Path:
    return assets_dir() / "samples" / "digits-test.npz"


@dataclass(frozen=True, slots=True)
class TensorSpec:
    name: str
    dtype: str
    shape: tuple[int, ...] | None = None
    """``None`` for outputs, whose shape is not declared."""


@dataclass(slots=True)
class ModelSpec:
    name: str
    version: str
    sha256: str
    size: int
    path: Path
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    label_output: str | None = None
    labels: list[str] = field(default_factory=list)
    description: str = ""
    processing: str | None = None
    """Name of the installed plugin whose pre/post-processing goes with this model."""
    source: str = ""
    """Where the model came from: ``shipped``, ``user``, ``plugin`` or ``fetched``."""
    kind: str | None = None
    """What it takes and gives (netcore.models.kinds): ``tabular`` when not said."""
    kind_params: dict[str, Any] = field(default_factory=dict)
    """The kind's parameters (image size, colour mode, tokenizer, columns...)."""

    def wire_entry(self) -> dict[str, Any]:
        """The model entry advertised in ``hello`` (PROTOCOL.md §4)."""
        entry: dict[str, Any] = {
            "name": self.name,
            "version": self.version,
            "sha256": self.sha256,
            "size": self.size,
            "inputs": [
                {"name": s.name, "dtype": s.dtype, "shape": list(s.shape or ())}
                for s in self.inputs
            ],
            "outputs": [{"name": s.name, "dtype": s.dtype} for s in self.outputs],
        }
        if self.label_output:
            entry["label_output"] = self.label_output
        return entry

    def check_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Raise :class:`InputMismatch` unless names, dtypes and shapes fit the model."""
        expected = {s.name for s in self.inputs}
        if set(inputs) != expected:
            raise InputMismatch(
                f"model {self.name} takes inputs {sorted(expected)}, got {sorted(inputs)}"
            )
        for spec in self.inputs:
            arr = inputs[spec.name]
            if dtype_name(arr.dtype) != spec.dtype:
                raise InputMismatch(
                    f"input '{spec.name}' must be {spec.dtype}, got {arr.dtype.name}"
                )
            want = spec.shape or ()
            if len(arr.shape) != len(want) or any(
                w != -1 and w != got for w, got in zip(want, arr.shape, strict=True)
            ):
                shown = ["N" if w == -1 else w for w in want]
                raise InputMismatch(
                    f"input '{spec.name}' must have shape {shown}, got {list(arr.shape)}"
                )
            if any(d == 0 for d in arr.shape):
                raise InputMismatch(f"input '{spec.name}' is empty")


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _tensor_specs(raw: Any, where: str, with_shape: bool) -> list[TensorSpec]:
    if not isinstance(raw, list) or not raw:
        raise ModelError(f"{where}: must be a non-empty list")
    specs = []
    for item in raw:
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ModelError(f"{where}: each entry needs a name")
        dtype = str(item.get("dtype", ""))
        shape = None
        if with_shape:
            shape_raw = item.get("shape")
            if not isinstance(shape_raw, list) or not all(isinstance(d, int) for d in shape_raw):
                raise ModelError(f"{where}: '{item['name']}' needs an int shape list")
            shape = tuple(shape_raw)
        specs.append(TensorSpec(item["name"], dtype, shape))
    return specs


def load_manifest(manifest_path: Path) -> ModelSpec:
    """Read and check one manifest; the ONNX file must exist (its hash is checked on load)."""
    try:
        data = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelError(f"manifest {manifest_path}: {exc}") from None
    return parse_manifest(data, manifest_path.parent, f"manifest {manifest_path}")


def parse_manifest(data: Any, base_dir: Path, where: str) -> ModelSpec:
    """Check manifest fields; ``file`` is relative to ``base_dir`` (or absolute)."""
    if not isinstance(data, dict):
        raise ModelError(f"{where}: not a JSON object")
    try:
        name = str(data["name"])
        onnx_path = base_dir / str(data.get("file", f"{name}.onnx"))
        sha = str(data["sha256"]).lower()
        spec = ModelSpec(
            name=name,
            version=str(data.get("version", "0")),
            sha256=sha,
            size=int(data.get("size") or onnx_path.stat().st_size),
            path=onnx_path,
            inputs=_tensor_specs(data.get("inputs"), f"{where} inputs", True),
            outputs=_tensor_specs(data.get("outputs"), f"{where} outputs", False),
            label_output=data.get("label_output"),
            labels=[str(x) for x in data.get("labels", [])],
            description=str(data.get("description", "")),
            processing=str(data["processing"]) if data.get("processing") else None,
            source=str(data.get("source", "")),
            kind=str(data["kind"]) if data.get("kind") else None,
            kind_params=dict(data.get("kind_params") or {}),
        )
    except KeyError as exc:
        raise ModelError(f"{where}: missing {exc}") from None
    except OSError as exc:
        raise ModelError(f"{where}: model file: {exc.strerror}") from None
    except (TypeError, ValueError) as exc:  # e.g. "size": "big", "labels": 10
        raise ModelError(f"{where}: bad value: {exc}") from None
    if len(sha) != 64 or any(c not in "0123456789abcdef" for c in sha):
        raise ModelError(f"{where}: sha256 must be 64 hex characters")
    if not onnx_path.is_file():
        raise ModelError(f"{where}: model file {onnx_path} is missing")
    return spec


def open_session(path: Path, providers: list[str] | None, label: str) -> tuple[Any, list[str]]:
    """A new onnxruntime session on ``path`` (the one way models are loaded to run) and the
    providers it uses; :class:`ModelError` when onnxruntime cannot load the file."""
    import onnxruntime as ort

    from netcore.models.providers import create_session

    options = ort.SessionOptions()
    # Many small tasks run side by side; one thread per run avoids oversubscription.
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    try:
        return create_session(str(path), options, providers or ["CPUExecutionProvider"], label)
    except Exception as exc:
        reason = " ".join(str(exc).split())
        reason = reason.split("] : ", 1)[-1][:200]  # drop onnxruntime's "[ONNXRuntimeError] : 7 :"
        raise ModelError(f"{label}: onnxruntime cannot load it ({reason})") from None


class LoadedModel:
    """A model spec with its onnxruntime session (thread-safe ``run``).

    ``session`` (with the providers it uses) adopts a session opened already, on a file
    whose sha256 was checked already (a fetched model: netcore.models.fetch), so that a
    model is loaded once; otherwise the file's sha256 is checked and a session opened.
    """

    def __init__(
        self,
        spec: ModelSpec,
        providers: list[str] | None = None,
        session: tuple[Any, list[str]] | None = None,
    ) -> None:
        self.spec = spec
        if session is None:
            actual = sha256_file(spec.path)
            if actual != spec.sha256:
                raise ModelError(
                    f"model {spec.name}: {spec.path.name} has sha256 {actual[:12]}…, "
                    f"manifest says {spec.sha256[:12]}… (file changed or corrupt)"
                )
            session = open_session(spec.path, providers, f"model {spec.name}")
        self.session, self.providers = session
        self.last_used: float | None = None
        """Unix time of the last run, None before the first: fetched models are evicted
        least recently used first (netcore.models.quota)."""
        self.output_names, self._zipmaps = tensor_outputs(self.session)
        self.typical_run_s: float | None = None
        """A slowly rising minimum of the wall time of one ``run``; decides where it runs.

        Not a mean: a run in a pool thread also waits for the GIL while the loop is busy, and
        that wait would make a quick model look slow and keep it in threads for good. The
        minimum drops at once and rises by 5% a run, so a model that became slow is noticed
        within a few dozen runs. (Thread CPU time would be exact, but CLOCK_THREAD_CPUTIME_ID
        is a real system call that cost more than the digits model under load here.)"""

    def run(self, inputs: Mapping[str, np.ndarray], use: bool = True) -> dict[str, np.ndarray]:
        """Run the model; ``use=False`` (a warm-up) leaves :attr:`last_used` as it is."""
        started = time.perf_counter()
        results = self.session.run(self.output_names, dict(inputs))
        took = time.perf_counter() - started
        if use:
            self.last_used = time.time()
        typical = self.typical_run_s
        self.typical_run_s = (
            took if typical is None or took < typical else min(took, typical * 1.05)
        )
        if self._zipmaps:
            return {
                name: zipmap_to_tensor(value) if name in self._zipmaps else np.asarray(value)
                for name, value in zip(self.output_names, results, strict=True)
            }
        return {
            name: np.asarray(value) for name, value in zip(self.output_names, results, strict=True)
        }

    def is_quick(self) -> bool:
        """True when a run is known to take under QUICK_RUN_S.

        Handing such a run to a thread costs more than the run (two GIL hand-offs and loop
        wake-ups, ~50-100 us), so the worker runs it inline: the loop is blocked for less
        time than decoding one large frame takes. Slow or unknown models go to threads.
        """
        return self.typical_run_s is not None and self.typical_run_s < QUICK_RUN_S


class ModelRegistry:
    """Models by name (and sha256), loaded lazily on first use."""

    def __init__(self, dirs: Iterable[Path]) -> None:
        self._specs: dict[str, list[ModelSpec]] = {}
        self._loaded: dict[str, LoadedModel] = {}
        self._lock = threading.Lock()
        self.providers: list[str] = ["CPUExecutionProvider"]
        """onnxruntime providers for new sessions, best first (see :mod:`netcore.models.providers`)."""
        self.failed_providers: set[str] = set()
        self.sessions_created = 0
        """onnxruntime sessions this registry opened to run models (one per model version)."""
        for directory in dirs:
            self.scan(directory)

    def scan(self, directory: Path, source: str = "") -> None:
        if not directory.is_dir():
            return
        for manifest in sorted(directory.glob("*.json")):
            try:
                spec = load_manifest(manifest)
            except ModelError as exc:
                log.warning("skipping model: %s", exc)
                continue
            spec.source = spec.source or source
            self.add(spec)

    def use_providers(self, providers: list[str]) -> None:
        self.providers = list(providers)

    @property
    def accel(self) -> list[str]:
        """The accelerators advertised in ``hello``: configured ones that did not fail."""
        from netcore.models.providers import accel_names

        return accel_names([p for p in self.providers if p not in self.failed_providers])

    def sha_of(self, name: str, sha256: str | None = None) -> str | None:
        """The sha256 of the version of ``name`` held here (the pinned one), or None."""
        spec = self.find(name, sha256)
        return spec.sha256 if spec is not None else None

    def add(self, spec: ModelSpec) -> None:
        versions = self._specs.setdefault(spec.name, [])
        if all(v.sha256 != spec.sha256 for v in versions):
            versions.append(spec)

    def specs(self) -> list[ModelSpec]:
        return [s for versions in self._specs.values() for s in versions]

    def names(self) -> list[str]:
        return sorted(self._specs)

    def find(self, name: str, sha256: str | None = None) -> ModelSpec | None:
        versions = self._specs.get(name, [])
        if sha256:
            return next((v for v in versions if v.sha256 == sha256), None)
        return versions[-1] if versions else None

    def loaded(self, spec: ModelSpec) -> LoadedModel | None:
        """The session for ``spec`` if it is loaded already (never loads)."""
        return self._loaded.get(spec.sha256)

    def load(self, spec: ModelSpec) -> LoadedModel:
        """The onnxruntime session for ``spec``, created once (may be called from threads)."""
        loaded = self._loaded.get(spec.sha256)
        if loaded is not None:
            return loaded
        with self._lock:
            loaded = self._loaded.get(spec.sha256)
            if loaded is None:
                loaded = LoadedModel(spec, self.providers)
                self.sessions_created += 1
                self.failed_providers.update(p for p in self.providers if p not in loaded.providers)
                self._loaded[spec.sha256] = loaded
        return loaded

    def open_session(self, path: Path, label: str) -> tuple[Any, list[str]]:
        """A session on ``path`` with this registry's providers, to :meth:`adopt` once the
        file has its final name (a fetched model is read by onnxruntime once, not twice)."""
        session = open_session(path, self.providers, label)
        with self._lock:
            self.sessions_created += 1
        return session

    def adopt(self, spec: ModelSpec, session: tuple[Any, list[str]]) -> LoadedModel:
        """Hold ``spec`` with a session opened by :meth:`open_session` on its checked file."""
        self.add(spec)
        with self._lock:
            loaded = self._loaded.get(spec.sha256)
            if loaded is None:
                loaded = LoadedModel(spec, session=session)
                self.failed_providers.update(p for p in self.providers if p not in loaded.providers)
                self._loaded[spec.sha256] = loaded
        return loaded

    def remove(self, spec: ModelSpec) -> None:
        """Forget ``spec`` and its session (its files are the caller's: netcore.models.quota).
        A task running on the session keeps it until it finishes."""
        with self._lock:
            versions = [v for v in self._specs.get(spec.name, []) if v.sha256 != spec.sha256]
            if versions:
                self._specs[spec.name] = versions
            else:
                self._specs.pop(spec.name, None)
            self._loaded.pop(spec.sha256, None)

    def last_used(self, spec: ModelSpec) -> float | None:
        """Unix time ``spec`` last ran in this process, if it did."""
        loaded = self._loaded.get(spec.sha256)
        return loaded.last_used if loaded is not None else None

    def wire_entries(self) -> list[dict[str, Any]]:
        return [s.wire_entry() for s in self.specs()]


def tensor_outputs(session: Any) -> tuple[list[str], set[str]]:
    """The outputs a task can return: tensors, and ZipMap-style sequences of maps.

    A ``seq(map(key, float))`` output (scikit-learn converters add one for probabilities) is
    returned as a float32 tensor [N, classes] with the classes in key order (see
    :func:`zipmap_to_tensor`); other non-tensor outputs cannot go on the wire and are left out.
    """
    names: list[str] = []
    zipmaps: set[str] = set()
    for out in session.get_outputs():
        if out.type.startswith("tensor("):
            names.append(out.name)
        elif out.type.startswith("seq(map("):
            names.append(out.name)
            zipmaps.add(out.name)
        else:
            log.info(
                "output %s of type %s is not a tensor: left out of results", out.name, out.type
            )
    return names, zipmaps


def zipmap_to_tensor(value: Any) -> np.ndarray:
    """A list of ``{class: probability}`` maps as float32 [N, classes], classes in key order."""
    rows = list(value)
    if not rows:
        return np.zeros((0, 0), dtype=np.float32)
    keys = sorted(rows[0])
    return np.asarray([[row[k] for k in keys] for row in rows], dtype=np.float32)


def load_samples(path: Path | None = None) -> tuple[np.ndarray, np.ndarray | None]:
    """Samples for ``demo``, the console and ``submit --resume``: an ``.npz`` with ``x`` (and
    ``y``) or a ``.npy`` array, float32, each sample flattened to one row (``submit`` itself
    reads with :mod:`netcore.models.inputs` and checks them against the model's signature)."""
    path = path or default_samples_path()
    try:
        if path.suffix == ".npy":
            x = np.asarray(np.load(path, allow_pickle=False), dtype=np.float32)
            if x.ndim >= 2:
                return x.reshape(len(x), -1), None
            return x.reshape(-1, x.shape[-1] if x.ndim else 1), None
        with np.load(path, allow_pickle=False) as data:
            x = np.asarray(data["x"], dtype=np.float32)
            y = np.asarray(data["y"], dtype=np.int64) if "y" in data else None
            return x, y
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot read samples {path}: {exc}") from None
