"""The old import path of :mod:`netcore.models.plugins`, kept for plugin packages written
before the layers (``from netcore.plugins import ModelPlugin`` still works)."""

from __future__ import annotations

from netcore.models.plugins import ModelPlugin, PluginError

__all__ = ["ModelPlugin", "PluginError"]
