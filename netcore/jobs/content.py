"""What a journal keys a result by: the job's identity and each input's content hash.

Two inputs with the same content (a file copied under two names, a row given twice) get the
same hash, so a result computed once serves both, in this run or a later one. The hash is
over what the kind reads: a file's bytes, a text's UTF-8, a row's numbers (as float64 unless
they come as an array, then with its dtype and shape). The identity is the kind's
(:meth:`Kind.identity`: the sha256 of every model it runs) with the kind's options
(``--invert``): a result is reused only for the same graphs and the same processing.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np

from netcore.models.kinds.base import InputError, Item, Kind


def content_hash(item: Item) -> bytes:
    """The sha256 of ``item``'s content; an :class:`InputError` if it cannot be read."""
    h = hashlib.sha256()
    value = item.value
    if value is None:
        h.update(b"file\0")
        h.update(item.read_bytes())
    elif isinstance(value, str):
        h.update(b"text\0")
        h.update(value.encode("utf-8", "surrogatepass"))
    else:
        arr = value if isinstance(value, np.ndarray) else _numbers(item, value)
        h.update(b"array\0")
        h.update(f"{arr.dtype.str}{arr.shape}\0".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.digest()


def _numbers(item: Item, value: Any) -> np.ndarray:
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise InputError(f"{item.key}: not a row of numbers") from None


def job_identity(kind: Kind) -> str:
    """The kind's identity with its options, as one sha256 (hex)."""
    options = json.dumps(kind.options, sort_keys=True, default=str)
    text = f"{kind.name}\0{kind.identity()}\0{options}"
    return hashlib.sha256(text.encode()).hexdigest()
