"""A DataTable for tables that change several times a second."""

from __future__ import annotations

import contextlib
from typing import Any

from textual.widgets import DataTable

CACHE_SIZES = {
    "_cell_render_cache": 600,
    "_row_render_cache": 150,
    "_row_renderable_cache": 150,
    "_line_cache": 150,
}
"""DataTable keys its render caches by an update counter that every change bumps, so in a
live table nearly every cached entry is stale, yet the defaults keep up to 10,000 rendered
cells alive per table. Those tens of thousands of objects make each full garbage collection
take 100+ ms (a visible freeze). A screenful is a few hundred cells: cache about that."""


class LiveTable(DataTable[Any]):
    """DataTable with render caches sized to a screen rather than to history."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        for name, size in CACHE_SIZES.items():
            with contextlib.suppress(AttributeError):  # private in Textual: best effort
                getattr(self, name).maxsize = size
