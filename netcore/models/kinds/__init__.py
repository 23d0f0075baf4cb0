"""Model kinds: what a model takes and gives, and the processing that runs on the requester.

A manifest's ``kind`` (``image-classification``, ``ocr``, ``text-embedding``, ``tabular``)
names a :class:`~netcore.models.kinds.base.Kind`; its ``kind_params`` (image size, colour
mode, tokenizer, columns...) configure it. Workers never run this code: they run ONNX graphs
only. The requester reads each input, runs the graphs through the swarm with an
:class:`~netcore.models.kinds.base.Infer` callable, and turns their outputs into a record.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from netcore.models.kinds.base import InputError, Item, Kind, KindError

if TYPE_CHECKING:
    from netcore.models.registry import ModelSpec

KIND_MODULES: dict[str, str] = {
    "tabular": "netcore.models.kinds.tabular",
    "image-classification": "netcore.models.kinds.image",
    "ocr": "netcore.models.kinds.ocr",
    "text-embedding": "netcore.models.kinds.embedding",
}
"""Kind name -> module whose ``KIND`` attribute is the :class:`Kind` subclass."""

DEFAULT_KIND = "tabular"
"""A manifest without ``kind``: rows of numbers in, the model's outputs out (digits, iris)."""


def kind_class(name: str) -> type[Kind]:
    """The class for a kind name; :class:`KindError` (one line) for an unknown one."""
    module = KIND_MODULES.get(name)
    if module is None:
        known = ", ".join(sorted(KIND_MODULES))
        raise KindError(f"unknown model kind '{name}' (known: {known})")
    cls: type[Kind] = importlib.import_module(module).KIND
    return cls


def kind_for(spec: ModelSpec, **options: Any) -> Kind:
    """The kind of a model, configured from its manifest (``options``: e.g. ``invert``)."""
    name = spec.kind or DEFAULT_KIND
    return kind_class(name)(spec, dict(spec.kind_params), **options)


__all__ = [
    "DEFAULT_KIND",
    "KIND_MODULES",
    "InputError",
    "Item",
    "Kind",
    "KindError",
    "kind_class",
    "kind_for",
]
