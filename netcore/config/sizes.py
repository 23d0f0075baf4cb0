"""Sizes in bytes as people write them: ``4GiB``, ``512 MiB``, ``1.5G``, ``500MB``, ``65536``."""

from __future__ import annotations

import re

from netcore.config.errors import ConfigError

KIB = 1024
MIB = 1024 * KIB
GIB = 1024 * MIB

_UNITS = {
    "": 1, "b": 1,
    "k": KIB, "kib": KIB, "kb": 1000,
    "m": MIB, "mib": MIB, "mb": 1000**2,
    "g": GIB, "gib": GIB, "gb": 1000**3,
    "t": 1024 * GIB, "tib": 1024 * GIB, "tb": 1000**4,
}  # fmt: skip
"""A bare letter is binary (``4G`` = 4 GiB); ``MB``/``GB`` are decimal, as disks count."""

_SIZE_RE = re.compile(r"^\s*([0-9]+(?:\.[0-9]+)?)\s*([A-Za-z]*)\s*$")


def parse_size(text: str | int, what: str = "size") -> int:
    """Bytes from ``text``; :class:`ConfigError` with one line when it is not a size."""
    if isinstance(text, int) and not isinstance(text, bool):
        return text
    match = _SIZE_RE.match(str(text))
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ConfigError(
            f"{what} {text!r}: give a size such as 4GiB, 512MiB, 500MB or a number of bytes"
        )
    return int(float(match.group(1)) * _UNITS[unit])


def format_size(size: int) -> str:
    """``size`` bytes in the largest binary unit that keeps it readable (``4 GiB``)."""
    for unit, factor in (("TiB", 1024 * GIB), ("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= factor:
            value = size / factor
            return f"{value:.0f} {unit}" if value == int(value) else f"{value:.1f} {unit}"
    return f"{size} B"
