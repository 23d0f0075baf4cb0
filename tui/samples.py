"""What the console sends to each model: its own known samples, or inputs made from its
signature.

``d`` used to send a held-out digit to whatever model was picked, so every iris task failed
``bad_input``. Now each model gets, in this order: the samples the console was given (for its
first model), the shipped samples of a shipped model (``assets/samples/<name>-test.npz``,
labelled), its plugin's ``samples`` (raw inputs run through the plugin's ``preprocess``,
labelled when the plugin says), or random values that fit its declared input (dtype, and
shape with 32 for each free axis past the first, as a worker's warm-up: the OCR detection
graph fails on a 1x1 image). Known samples that do not fit the model's
signature (a user model that took a shipped name) are not used. A model the console cannot
feed (several inputs, no batch axis) is shown in the picker with the reason, and not picked.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from netcore.models.registry import ModelError, assets_dir, load_samples

GENERATED = 32
"""Random inputs made for a model without samples (tasks pick among them)."""
FREE_AXIS = 32
"""The size of a free axis past the first in generated inputs: an image's height and width (a
detection graph down-samples them by 32), a text's tokens. netcore.tasks.worker's warm-up
zeros take the same."""
MAX_GENERATED_VALUES = 1 << 20
"""Values in one generated sample at most (a model that wants more is not fed)."""
FLOATS = frozenset({"float16", "float32", "float64"})
INTEGERS = frozenset({"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64"})


@dataclass(frozen=True, slots=True)
class InputSpec:
    """One declared model input (from the registry's manifest or a peer's hello)."""

    name: str
    dtype: str
    shape: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Feed:
    """Samples for one model: a task sends ``x[i : i + 1]`` (and expects ``y[i]``)."""

    x: np.ndarray
    y: np.ndarray | None
    source: str
    """What they are, in words: ``held-out digits``, ``iris samples``, ``random inputs ...``."""


class CannotFeed(Exception):
    """The console has nothing valid to send this model; the message says why, in one line."""


def input_specs(node: Any, model: str) -> list[InputSpec] | None:
    """The model's declared inputs, from the registry or else a peer's advertisement; None
    when neither declares them (a fake registry, a model nobody advertises)."""
    find = getattr(node.registry, "find", None)
    spec = find(model) if find is not None else None
    if spec is not None:
        return [InputSpec(s.name, s.dtype, tuple(s.shape or ())) for s in spec.inputs]
    for peer in node.peers:
        for entry in peer.models:
            if entry.get("name") == model and entry.get("inputs"):
                return [
                    InputSpec(str(i.get("name")), str(i.get("dtype")), tuple(i.get("shape") or ()))
                    for i in entry["inputs"]
                ]
    return None


def fits(spec: InputSpec, sample: np.ndarray) -> bool:
    """One task's input (``x[i : i + 1]``) matches the declared dtype and shape."""
    if sample.dtype.name != spec.dtype or sample.ndim != len(spec.shape):
        return False
    return all(want in (-1, got) for want, got in zip(spec.shape, sample.shape, strict=True))


def feedable(specs: Sequence[InputSpec]) -> InputSpec:
    """The single input a console task fills, or :class:`CannotFeed` saying why not."""
    if len(specs) != 1:
        names = ", ".join(s.name for s in specs)
        raise CannotFeed(f"takes {len(specs)} inputs ({names}); the console sends one")
    spec = specs[0]
    if not spec.shape or spec.shape[0] not in (-1, 1):
        raise CannotFeed(
            f"input {spec.name!r} has no batch axis (shape {list(spec.shape)}); "
            "the console sends one sample per task"
        )
    if spec.dtype not in FLOATS | INTEGERS | {"bool"}:
        raise CannotFeed(f"input {spec.name!r} is {spec.dtype}; the console sends numbers")
    return spec


def generated(spec: InputSpec, rng: np.random.Generator) -> Feed:
    """Random values of the declared dtype and shape (:data:`FREE_AXIS` for each free axis
    past the first)."""
    rest = tuple(FREE_AXIS if d == -1 else d for d in spec.shape[1:])
    if math.prod(rest) > MAX_GENERATED_VALUES:
        raise CannotFeed(f"input {spec.name!r} is too large to make up ({list(spec.shape)})")
    shape = (GENERATED, *rest)
    if spec.dtype in FLOATS:
        x = rng.random(shape).astype(spec.dtype)
    elif spec.dtype == "bool":
        x = rng.integers(0, 2, shape).astype(bool)
    else:
        x = rng.integers(0, 10, shape).astype(spec.dtype)
    shown = ["N" if d == -1 else d for d in spec.shape]
    return Feed(x, None, f"random {spec.dtype} inputs of shape {shown} (no samples known)")


def stacked(inputs: Iterable[Mapping[str, np.ndarray]], name: str) -> np.ndarray:
    """Preprocessed samples, each ``{name: [1, ...]}``, as one array along the batch axis."""
    arrays = [np.asarray(one[name]) for one in inputs]
    return np.concatenate([a if a.ndim and a.shape[0] == 1 else a[None] for a in arrays])


class FeedBook:
    """Each model's :class:`Feed`, made once (given samples are for ``given_for``)."""

    def __init__(
        self,
        given: tuple[np.ndarray, np.ndarray | None] | None = None,
        given_for: str = "digits",
        seed: int | None = None,
    ) -> None:
        self.given = given
        self.given_for = given_for
        self.rng = np.random.default_rng(seed)
        self._feeds: dict[str, Feed] = {}

    def feed(self, node: Any, model: str) -> Feed:
        """The samples for ``model``, or :class:`CannotFeed` saying why there are none."""
        if model in self._feeds:
            return self._feeds[model]
        specs = input_specs(node, model)
        if specs is None:
            if self.given is not None and model == self.given_for:
                return self._keep(model, Feed(*self.given, "the samples given"))
            if model == "digits":  # nothing declares it: the shipped digits, as before
                return self._keep(model, Feed(*self._shipped("digits"), "held-out digits"))
            raise CannotFeed(f"no signature known for {model!r}: not held here nor advertised")
        spec = feedable(specs)
        for feed in self._known(node, model):
            if len(feed.x) and fits(spec, feed.x[0:1]):
                return self._keep(model, feed)
        return self._keep(model, generated(spec, self.rng))

    def reason(self, node: Any, model: str) -> str | None:
        """Why the console cannot feed ``model``, or None when it can (for the picker)."""
        try:
            self.feed(node, model)
        except CannotFeed as exc:
            return str(exc)
        return None

    def _keep(self, model: str, feed: Feed) -> Feed:
        self._feeds[model] = feed
        return feed

    def _known(self, node: Any, model: str) -> Iterable[Feed]:
        """Known samples for the model, best first (checked against its signature later)."""
        if self.given is not None and model == self.given_for:
            yield Feed(*self.given, "the samples given")
        find = getattr(node.registry, "find", None)
        spec = find(model) if find is not None else None
        if spec is not None and spec.source == "shipped":
            path = assets_dir() / "samples" / f"{model}-test.npz"
            if path.is_file():
                yield Feed(*self._shipped(model), f"held-out {model} samples")
        plugin_feed = self._plugin(node, model)
        if plugin_feed is not None:
            yield plugin_feed

    def _shipped(self, model: str) -> tuple[np.ndarray, np.ndarray | None]:
        path = assets_dir() / "samples" / f"{model}-test.npz"
        try:
            return load_samples(path)
        except ModelError as exc:
            raise CannotFeed(str(exc)) from None

    def _plugin(self, node: Any, model: str) -> Feed | None:
        from netcore.models.plugins import PluginError, prepare, processing_for

        registry = node.registry if hasattr(node.registry, "find") else None
        plugin = processing_for(model, registry)
        if plugin is None or not plugin.samples:
            return None
        try:
            inputs = [prepare(model, raw, registry) for raw, _ in plugin.samples]
        except PluginError:
            return None
        names = {name for one in inputs for name in one}
        if len(names) != 1:
            return None
        x = stacked(inputs, names.pop())
        labels = [label for _, label in plugin.samples]
        y = None if any(label is None for label in labels) else np.asarray(labels, np.int64)
        return Feed(x, y, f"{plugin.name} samples")
