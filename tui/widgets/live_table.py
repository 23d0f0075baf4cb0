"""A DataTable for tables that change several times a second."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

from textual.widgets import DataTable
from textual.widgets.data_table import CellKey, RowKey

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

    def remove_rows(self, keys: Iterable[RowKey | str]) -> None:
        """Remove many rows with one re-index and one refresh.

        ``remove_row`` rebuilds the whole row index and re-applies the cursor for every row it
        removes; a bounded live table drops dozens of old rows per refresh, which made those
        refreshes the console's slowest work under a stream of tasks (profiled). Falls back
        to ``remove_row`` when this Textual keeps its rows differently.
        """
        doomed = [RowKey(k) if isinstance(k, str) else k for k in keys]
        doomed = [k for k in doomed if k in self._row_locations]
        locations = getattr(self, "_row_locations", None)
        if len(doomed) < 2 or locations is None or not hasattr(locations, "get"):
            for key in doomed:
                self.remove_row(key)
            return
        gone = set(doomed)
        survivors = sorted((locations.get(k), k) for k in locations if k not in gone)
        reindexed = type(locations)({})
        for index, (_, key) in enumerate(survivors):
            reindexed[key] = index
        self._require_update_dimensions = True
        self.check_idle()
        self._row_locations = reindexed
        for key in doomed:
            for column_key in self._data.get(key, {}):
                self._updated_cells.discard(CellKey(key, column_key))
            del self.rows[key]
            del self._data[key]
        self.cursor_coordinate = self.cursor_coordinate
        self.hover_coordinate = self.hover_coordinate
        self._update_count += 1
        self.refresh(layout=True)
