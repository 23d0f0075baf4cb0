"""Model plugins: installed Python packages that bring a model and its pre/post-processing.

A plugin is registered under the entry point group ``p2pai.models``; the entry point names a
:class:`ModelPlugin` (or a function without arguments returning one)::

    # the plugin's pyproject.toml
    [project.entry-points."p2pai.models"]
    iris = "my_package.plugin:plugin"

A plugin brings the ONNX model (a path, or bytes from its package), its manifest fields, and
optionally ``preprocess(raw) -> inputs`` and ``postprocess(outputs) -> result``. Those two run
on the requester: :func:`infer` turns a raw input (text, a list of numbers, ...) into tensors,
sends an ordinary task, and turns the output tensors into a result. Workers only ever run the
ONNX graph, never code from a peer; a plugin's code runs only where it is installed.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import numpy as np

from netcore.config.settings import Config
from netcore.models.inputs import PlainText, plain_text_error
from netcore.models.registry import (
    ModelError,
    ModelRegistry,
    ModelSpec,
    TensorSpec,
    assets_dir,
    parse_manifest,
    sha256_file,
)
from netcore.models.signature import SignatureMismatch, as_array, fit_inputs
from netcore.models.store import (
    atomic_write,
    build_manifest,
    check_name,
    inspect_onnx,
    sha256_bytes,
    stem,
)

log = logging.getLogger("p2pai.plugins")

ENTRY_POINT_GROUP = "p2pai.models"

Preprocess = Callable[[Any], Mapping[str, np.ndarray]]
Postprocess = Callable[[Mapping[str, np.ndarray]], Any]


@dataclass(frozen=True)
class ModelPlugin:
    """A model (and its processing) provided by an installed package."""

    name: str
    """The model name (and the name manifests use in ``processing``)."""
    model: Path | bytes | None = None
    """The ONNX file, or its bytes; None for a plugin that only processes a model held elsewhere."""
    manifest: Mapping[str, Any] = field(default_factory=dict)
    """Manifest fields: ``version``, ``labels``, ``label_output``, ``description``; ``inputs``
    and ``outputs`` are read from the model when absent; ``sha256``, when given, is checked."""
    preprocess: Preprocess | None = None
    """Raw input (anything) -> ``{input name: array}``; runs on the requester."""
    postprocess: Postprocess | None = None
    """``{output name: array}`` -> result (anything JSON-friendly); runs on the requester."""
    samples: tuple[tuple[Any, int | None], ...] = ()
    """Known inputs to try the model with: ``(raw input, expected label or None)`` pairs, the
    raw input as ``preprocess`` takes it (the console's ``d`` sends them)."""


class PluginError(Exception):
    """A raw input or a plugin that cannot be used; the message is one line."""


_discovered: dict[str, ModelPlugin] | None = None


def discover(refresh: bool = False) -> dict[str, ModelPlugin]:
    """The installed plugins by name. One that fails to load is skipped with a warning."""
    global _discovered
    if _discovered is not None and not refresh:
        return _discovered
    found: dict[str, ModelPlugin] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            obj = ep.load()
            plugin = obj() if callable(obj) and not isinstance(obj, ModelPlugin) else obj
            if not isinstance(plugin, ModelPlugin):
                raise TypeError(f"{ep.value} is a {type(plugin).__name__}, not a ModelPlugin")
            check_name(plugin.name)
        except Exception as exc:
            log.warning(
                "skipping plugin %s (%s): %s", ep.name, ep.value, " ".join(str(exc).split())
            )
            continue
        if plugin.name in found:
            log.warning(
                "plugin %s: name %r taken by another plugin; skipped", ep.value, plugin.name
            )
            continue
        found[plugin.name] = plugin
    _discovered = found
    return found


def plugin_spec(plugin: ModelPlugin, cache_dir: Path) -> ModelSpec | None:
    """The registry entry of a plugin's model (bytes are written once to ``cache_dir``)."""
    if plugin.model is None:
        return None
    meta = dict(plugin.manifest)
    if isinstance(plugin.model, bytes):
        sha = sha256_bytes(plugin.model)
        path = cache_dir / f"{stem(plugin.name, sha)}.onnx"
        if not (path.is_file() and sha256_file(path) == sha):
            atomic_write(path, plugin.model)
    else:
        path = Path(plugin.model)
        if not path.is_file():
            raise ModelError(f"plugin {plugin.name}: model file {path} is missing")
        sha = sha256_file(path)
    if meta.get("sha256") and str(meta["sha256"]).lower() != sha:
        raise ModelError(f"plugin {plugin.name}: its model's sha256 is not the manifest's")
    if "inputs" not in meta or "outputs" not in meta:
        info = inspect_onnx(path, label=f"plugin {plugin.name}")
        generated = build_manifest(
            plugin.name, sha, path.stat().st_size, path.name, info, source="plugin"
        )
        meta = {**generated, **meta}
    meta.update(
        name=plugin.name, sha256=sha, size=path.stat().st_size, file=path.name, source="plugin"
    )
    if not meta.get("processing") and (plugin.preprocess or plugin.postprocess):
        meta["processing"] = plugin.name
    return parse_manifest(meta, path.parent, f"plugin {plugin.name}")


def load_registry(config: Config) -> ModelRegistry:
    """The models a node holds: shipped ones, plugins', data_dir/models, ``models_dirs``."""
    registry = ModelRegistry([])
    if config.shipped_models:
        registry.scan(assets_dir() / "models", source="shipped")
    registry.scan(config.data_dir / "models", source="user")
    for directory in config.models_dirs:
        registry.scan(Path(directory), source="user")
    if config.shipped_models:
        for plugin in discover().values():
            try:
                if isinstance(plugin.model, bytes):  # cached under the data dir: create it as
                    config.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)  # identity does
                spec = plugin_spec(plugin, config.data_dir / "models" / "plugins")
            except OSError as exc:
                if config.data_dir.is_dir():  # otherwise Node.start reports the data dir
                    log.warning("skipping plugin model %s: %s", plugin.name, exc)
                continue
            except ModelError as exc:
                log.warning("skipping model: %s", " ".join(str(exc).split()))
                continue
            if spec is not None:
                registry.add(spec)
        _add_packaged(registry, config)
    return registry


def _add_packaged(registry: ModelRegistry, config: Config) -> None:
    """The models built from installed packages' weights (netcore.models.packaged)."""
    from netcore.models.packaged import add_packaged, cache_dir_for

    add_packaged(registry, cache_dir_for(config))


def processing_for(model: str, registry: ModelRegistry | None = None) -> ModelPlugin | None:
    """The installed plugin that processes ``model``: named by its manifest, else by name."""
    plugins = discover()
    spec = registry.find(model) if registry is not None else None
    if spec is not None and spec.processing:
        return plugins.get(spec.processing)
    return plugins.get(model)


def prepare(
    model: str,
    raw: Any,
    registry: ModelRegistry | None = None,
    signature: Sequence[TensorSpec] | None = None,
    notes: list[str] | None = None,
) -> dict[str, np.ndarray]:
    """A raw input as task inputs, through the model's plugin when it has a ``preprocess``,
    checked against the model's signature (the local one, else ``signature``, the one a peer
    advertises) and fitted to it (:mod:`netcore.models.signature`). Raises
    :class:`PluginError` with one line; reshapes made for the user are appended to ``notes``.
    """
    plugin = processing_for(model, registry)
    spec = registry.find(model) if registry is not None else None
    specs = list(spec.inputs) if spec is not None else signature
    if plugin is not None and plugin.preprocess is not None:
        try:
            inputs: Mapping[str, Any] = plugin.preprocess(raw)
            inputs = {str(k): np.asarray(v) for k, v in dict(inputs).items()}
        except Exception as exc:
            raise PluginError(f"plugin {plugin.name}: cannot read this input: {exc}") from None
    elif isinstance(raw, PlainText):
        raise PluginError(plain_text_error(raw))
    elif isinstance(raw, Mapping):
        inputs = {str(k): v for k, v in raw.items()}
    elif specs is None:
        raise PluginError(
            f"model {model!r}: its inputs are not known here; give {{input name: values}}"
        )
    elif len(specs) != 1:
        names = ", ".join(s.name for s in specs)
        raise PluginError(f"model {model} takes inputs {names}: give {{input name: values}}")
    else:
        inputs = {specs[0].name: raw}
    if specs is None:
        try:
            return {name: as_array(model, name, v) for name, v in inputs.items()}
        except SignatureMismatch as exc:
            raise PluginError(str(exc)) from None
    try:
        fitted = fit_inputs(model, inputs, specs, one_sample=True)
    except SignatureMismatch as exc:
        raise PluginError(str(exc)) from None
    if notes is not None:
        notes.extend(fitted.notes)
    return fitted.inputs


def finish(
    model: str, outputs: Mapping[str, np.ndarray], registry: ModelRegistry | None = None
) -> Any:
    """Task outputs as a result, through the model's plugin when it has a ``postprocess``."""
    plugin = processing_for(model, registry)
    if plugin is not None and plugin.postprocess is not None:
        try:
            return plugin.postprocess(outputs)
        except Exception as exc:
            raise PluginError(f"plugin {plugin.name}: cannot read the outputs: {exc}") from None
    return {name: arr.tolist() for name, arr in outputs.items()}


@dataclass(slots=True)
class InferResult:
    """What :func:`infer` returns: the task's outcome and, when it succeeded, the result."""

    outcome: Any
    result: Any = None


async def infer(node: Any, model: str, raw: Any, **options: Any) -> InferResult:
    """Preprocess ``raw`` here, run the model on a peer, postprocess its outputs here.

    A model this node does not hold is checked against the signature its peers advertise."""
    from netcore.models.locate import peer_signature

    held = node.registry.find(model) is not None
    inputs = prepare(model, raw, node.registry, None if held else peer_signature(node.peers, model))
    outcome = await node.submit(model, inputs, **options)
    if not outcome.ok:
        return InferResult(outcome)
    return InferResult(outcome, finish(model, outcome.outputs, node.registry))
