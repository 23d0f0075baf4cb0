"""Models: manifests and ONNX sessions (registry), the data dir's model store, fetching a
model from a peer, plugins (entry points ``p2pai.models``) and execution providers.

Plugin packages import :class:`ModelPlugin` from here (``from netcore.models import
ModelPlugin``); ``netcore.plugins`` is kept as an alias of :mod:`netcore.models.plugins`."""

from __future__ import annotations

from netcore.models.plugins import ModelPlugin

__all__ = ["ModelPlugin"]
