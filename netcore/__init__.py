"""p2pai's node: discovery, encrypted transport, inference and scheduling (no UI imports)."""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
