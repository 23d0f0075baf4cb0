"""The disk quota of fetched models: ``<data_dir>/models`` holds at most ``model_quota`` bytes of
models fetched from peers (default 4 GiB, ``--model-quota``).

* Only models the node **fetched** count and are ever deleted (manifest ``source`` is
  ``fetched``); models the user added with ``p2pai models add``, shipped and plugin models
  are never touched.
* To make room for a new one, fetched models go **least recently used first**. When a model
  was last used is tracked by the node itself, not by the file's atime (``noatime``,
  ``relatime``): each loaded model notes its last run (``LoadedModel.last_used``), and the
  times are kept in a small index, ``<data_dir>/models/.fetched-usage`` (JSON), written when a
  model is stored or evicted and when the node stops. A model with no recorded use counts
  from when it was stored (its manifest's mtime).
* A model larger than the whole quota is refused before any byte is written, with a line
  that names the quota; the task then fails ``unknown_model`` here and the requester
  retries it on another worker.
"""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

from netcore.config.sizes import format_size
from netcore.models.registry import ModelRegistry, ModelSpec
from netcore.models.store import atomic_write, stored_models

log = logging.getLogger("p2pai.models")

USAGE_FILE = ".fetched-usage"
"""JSON, but not named *.json: the registry reads every *.json in the store as a manifest."""
DEFAULT_QUOTA = 4 * 1024**3


class QuotaExceeded(Exception):
    """A model that cannot fit in the quota even with every fetched model gone."""


class ModelQuota:
    """How much room fetched models take in ``models_dir``, and making room for one more."""

    def __init__(self, models_dir: Path, registry: ModelRegistry, limit: int = DEFAULT_QUOTA):
        self.models_dir = models_dir
        self.registry = registry
        self.limit = limit
        self.evicted = 0
        """Fetched models deleted to make room."""
        self._reserved: dict[str, int] = {}
        """Bytes of models being stored right now (made room for, not yet on disk)."""
        self._usage: dict[str, float] | None = None

    # --- what is there ---------------------------------------------------------------------

    def fetched(self) -> list[tuple[Path, ModelSpec]]:
        """The fetched models in the store: (manifest, spec)."""
        return [
            (manifest, spec)
            for manifest, spec in stored_models(self.models_dir)
            if spec.source == "fetched" and spec.path.parent == self.models_dir
        ]

    def used(self) -> int:
        """Bytes the fetched models take."""
        return sum(spec.size for _, spec in self.fetched())

    def last_used(self, manifest: Path, spec: ModelSpec) -> float:
        """Unix time of the model's last use here (this run, else the index, else stored)."""
        seen = self.registry.last_used(spec)
        if seen is not None:
            return seen
        recorded = self._index().get(spec.sha256)
        if recorded is not None:
            return recorded
        try:
            return manifest.stat().st_mtime
        except OSError:
            return 0.0

    # --- making room -----------------------------------------------------------------------

    def check(self, name: str, size: int) -> None:
        """Raise :class:`QuotaExceeded` when ``size`` bytes could never fit."""
        if size > self.limit:
            raise QuotaExceeded(
                f"model {name} is {format_size(size)}, more than this node's quota for fetched "
                f"models ({format_size(self.limit)}, --model-quota)"
            )

    def make_room(self, name: str, sha256: str, size: int) -> list[ModelSpec]:
        """Delete least recently used fetched models until ``size`` more bytes fit; reserve
        them until :meth:`release`. Returns the models deleted (the registry forgets them)."""
        self.check(name, size)
        stored = [(m, s) for m, s in self.fetched() if s.sha256 != sha256]
        others = sum(n for sha, n in self._reserved.items() if sha != sha256)
        total = sum(s.size for _, s in stored) + others
        order = sorted(stored, key=lambda item: self.last_used(*item))
        evicted: list[ModelSpec] = []
        while total + size > self.limit and order:
            manifest, spec = order.pop(0)
            self._delete(manifest, spec)
            total -= spec.size
            evicted.append(spec)
        if total + size > self.limit:  # what is left is being stored by other downloads
            raise QuotaExceeded(
                f"model {name} ({format_size(size)}) does not fit in this node's quota for "
                f"fetched models ({format_size(self.limit)}, --model-quota) while "
                f"{format_size(others)} of other models are being stored"
            )
        self._reserved[sha256] = size
        if evicted:
            self.save()
        return evicted

    def release(self, sha256: str) -> None:
        """The model is stored (or failed): its bytes count from the disk again."""
        self._reserved.pop(sha256, None)

    def _delete(self, manifest: Path, spec: ModelSpec) -> None:
        self.registry.remove(spec)
        shared = [
            m for m, s in stored_models(self.models_dir) if m != manifest and s.path == spec.path
        ]
        with contextlib.suppress(OSError):
            manifest.unlink()
        if not shared:
            with contextlib.suppress(OSError):
                spec.path.unlink()
        self.evicted += 1
        self._index().pop(spec.sha256, None)
        log.info(
            "model %s (%s, %s) deleted to make room for fetched models (quota %s)",
            spec.name,
            spec.sha256[:12],
            format_size(spec.size),
            format_size(self.limit),
        )

    # --- the index of last uses ------------------------------------------------------------

    def _index(self) -> dict[str, float]:
        if self._usage is None:
            self._usage = {}
            with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
                data = json.loads((self.models_dir / USAGE_FILE).read_text("utf-8"))
                self._usage = {
                    str(k): float(v)
                    for k, v in data.get("last_used", {}).items()
                    if isinstance(v, (int, float))
                }
        return self._usage

    def save(self) -> None:
        """Write the last use of every fetched model to the index (best effort)."""
        index = self._index()
        current = {spec.sha256: self.last_used(m, spec) for m, spec in self.fetched()}
        index.clear()
        index.update(current)
        if not current and not (self.models_dir / USAGE_FILE).exists():
            return
        data = json.dumps({"version": 1, "last_used": current}, indent=1) + "\n"
        try:
            atomic_write(self.models_dir / USAGE_FILE, data.encode("utf-8"))
        except OSError as exc:
            log.warning("cannot write %s: %s", self.models_dir / USAGE_FILE, exc.strerror)
