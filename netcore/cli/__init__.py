"""The ``p2pai`` command: one module per command group, shared options in ``common``."""

from __future__ import annotations

from netcore.cli.root import main

__all__ = ["main"]
