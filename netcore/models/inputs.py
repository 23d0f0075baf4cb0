"""What ``submit --input`` and ``infer INPUT`` read, and a one-line answer for the rest.

Sample files (``submit --input``) are read by their kind, named by the file's suffix in
:data:`SAMPLE_READERS`: ``.npy`` (an array, one sample a row) and ``.npz`` (``x``, and ``y``
labels if present). To read another kind (a folder of images, documents), add a reader
there and its words to :data:`SAMPLE_KINDS_READ`; every other kind is refused in one line
that says what it is (:func:`kind_of`) and what is read.

``infer INPUT`` (:func:`read_infer_input`) reads a JSON literal, a ``.npy``, ``.npz`` or
``.json`` file, ``@FILE`` (JSON text from a file) or ``-`` (JSON on stdin). Text that is
none of these comes back as :class:`PlainText`: a model plugin's ``preprocess`` may read it
(the test plugin's ``double`` reads ``"4 5"``); a model without one refuses it with
:data:`INFER_READS`.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from netcore.models.registry import default_samples_path


class InputError(Exception):
    """An input that cannot be read; the message is one line naming what was given."""


class PlainText(str):
    """An ``infer`` argument that is neither JSON nor a file: for a plugin to read."""


@dataclass(frozen=True, slots=True)
class Samples:
    """Samples as read from a file: ``x`` one sample a row, ``y`` labels when given."""

    x: np.ndarray
    y: np.ndarray | None
    source: Path


SAMPLE_KINDS_READ = ".npy or .npz (x, y) files"
MAP_READS = frozenset({"a folder", "a CSV file", "a Parquet file", "a JSON lines file"})
"""Kinds ``p2pai map`` reads (netcore.jobs) that ``submit`` does not, images aside: a refusal
names it."""
INFER_READS = (
    "infer reads JSON ('[5.1, 3.5, 1.4, 0.2]' is one sample, {\"input name\": values} for "
    "several inputs), a .npy, .npz or .json file, @FILE (JSON text) or - (JSON on stdin)"
)

_KINDS = {
    ".csv": "a CSV file",
    ".tsv": "a TSV file",
    ".txt": "a text file",
    ".json": "a JSON file",
    ".jsonl": "a JSON lines file",
    ".parquet": "a Parquet file",
    ".pkl": "a Python pickle",
    ".pickle": "a Python pickle",
    ".onnx": "an ONNX model",
    ".png": "a PNG image",
    ".jpg": "a JPEG image",
    ".jpeg": "a JPEG image",
    ".gif": "a GIF image",
    ".bmp": "a BMP image",
    ".webp": "a WebP image",
    ".tif": "a TIFF image",
    ".tiff": "a TIFF image",
    ".pdf": "a PDF document",
}
_MAGIC = (
    (b"\x93NUMPY", "a .npy array"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"%PDF", "a PDF document"),
    (b"\x80", "a Python pickle"),
)


def kind_of(path: Path) -> str:
    """What ``path`` is, in a few words: ``a folder``, ``a CSV file``, ``a PNG image``..."""
    if path.is_dir():
        return "a folder"
    if not path.exists():
        return "no such file"
    known = _KINDS.get(path.suffix.lower())
    if known:
        return known
    return _sniff(path)


def _sniff(path: Path) -> str:
    """What the first bytes of ``path`` say it is."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(512)
    except OSError as exc:
        return f"unreadable ({exc.strerror or exc})"
    if not head:
        return "an empty file"
    found = next((kind for magic, kind in _MAGIC if head.startswith(magic)), None)
    if found:
        return found
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return "a file of unknown kind"
    return "a text file"


def _check_magic(path: Path, option: str, magic: bytes, what: str) -> None:
    """Refuse a file whose content is not ``what`` before numpy guesses (it tries pickle)."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(len(magic))
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    if head != magic:
        raise InputError(f"{option} {path}: {_sniff(path)}, not {what}")


def _refuse(label: str, path: Path, reads: str) -> InputError:
    """``--input features.csv: a CSV file; submit reads ...`` (``label`` names what was given)."""
    kind = kind_of(path)
    if kind == "a folder" and "p2pai map" not in reads:
        return InputError(f"{label}: a folder; {reads} (`p2pai map` reads folders)")
    return InputError(f"{label}: {kind}; {reads}")


def _load_npy(path: Path, option: str) -> np.ndarray:
    _check_magic(path, option, b"\x93NUMPY", "a .npy array")
    try:
        arr = np.load(path, allow_pickle=False)
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(
                f"{option} {path}: holds Python objects, not numbers (an object array)"
            ) from None
        raise InputError(f"{option} {path}: not a readable .npy array ({exc})") from None
    except OSError as exc:
        raise InputError(f"{option} {path}: cannot read it ({exc.strerror or exc})") from None
    if not isinstance(arr, np.ndarray):
        raise InputError(f"{option} {path}: {kind_of(path)}, not a .npy array")
    return arr


def _load_npz(path: Path, option: str) -> dict[str, np.ndarray]:
    _check_magic(path, option, b"PK\x03\x04", "an .npz archive")
    try:
        with np.load(path, allow_pickle=False) as data:
            if not hasattr(data, "files"):
                raise InputError(f"{option} {path}: a .npy array, not an .npz archive")
            return {name: np.asarray(data[name]) for name in data.files}
    except ValueError as exc:
        if "pickle" in str(exc):
            raise InputError(
                f"{option} {path}: holds Python objects, not numbers (an object array)"
            ) from None
        raise InputError(f"{option} {path}: not a readable .npz archive ({exc})") from None
    except (OSError, EOFError) as exc:
        raise InputError(f"{option} {path}: not a readable .npz archive ({exc})") from None


def _read_npy(path: Path, option: str) -> Samples:
    arr = _load_npy(path, option)
    if arr.ndim == 0:
        raise InputError(f"{option} {path}: a single number, not samples (one sample a row)")
    return Samples(arr, None, path)


def _read_npz(path: Path, option: str) -> Samples:
    arrays = _load_npz(path, option)
    if "x" not in arrays:
        held = ", ".join(sorted(arrays)) or "nothing"
        raise InputError(
            f"{option} {path}: no array named x (it holds {held}); an .npz gives samples as x "
            "and optionally labels as y"
        )
    x, y = arrays["x"], arrays.get("y")
    if x.ndim == 0:
        raise InputError(f"{option} {path}: x is a single number, not samples (one sample a row)")
    if y is not None:
        y = y.reshape(-1) if y.ndim > 1 and y.size == len(x) else y
        if y.ndim != 1 or len(y) != len(x):
            raise InputError(
                f"{option} {path}: y holds {list(y.shape)} labels for {len(x)} samples in x"
            )
        if y.dtype.kind not in "iub" and not (
            y.dtype.kind == "f" and np.isfinite(y).all() and np.array_equal(np.trunc(y), y)
        ):
            raise InputError(f"{option} {path}: y must be whole-number class labels, got {y.dtype}")
        y = y.astype(np.int64)
    return Samples(x, y, path)


SAMPLE_READERS: dict[str, Callable[[Path, str], Samples]] = {
    ".npy": _read_npy,
    ".npz": _read_npz,
}
"""Sample readers by the file's suffix; the place to add a kind (see the module's doc)."""


def read_samples(path: Path | None, option: str = "--input", model: str = "MODEL") -> Samples:
    """The samples in ``path`` (the bundled held-out digits when None), or one line why not
    (naming ``p2pai map`` for what it reads: a folder, an image, a table)."""
    path = path or default_samples_path()
    reader = SAMPLE_READERS.get(path.suffix.lower())
    if reader is None or not path.is_file():
        if not path.exists():
            raise InputError(f"{option} {path}: no such file")
        reads = f"submit reads {SAMPLE_KINDS_READ}"
        if kind_of(path) in MAP_READS or kind_of(path).endswith(" image"):
            reads += f"; `p2pai map {model} {path} -o OUT` reads it"
        raise _refuse(f"{option} {path}", path, reads)
    samples = reader(path, option)
    if len(samples.x) == 0:
        raise InputError(f"{option} {path}: no samples (x has shape {list(samples.x.shape)})")
    return samples


def read_infer_input(text: str, stdin: IO[str] | None = None) -> Any:
    """``infer``'s INPUT: a JSON value, a file's content, or :class:`PlainText`."""
    if text == "-":
        source = stdin if stdin is not None else _stdin()
        return _json(source.read(), "INPUT - (stdin)")
    if text.startswith("@"):
        path = Path(text[1:])
        if not path.is_file():
            raise _refuse(f"INPUT {text}", path, "@FILE reads JSON text from a file")
        if path.suffix.lower() != ".json" and _sniff(path) != "a text file":
            raise _refuse(f"INPUT {text}", path, "@FILE reads JSON text from a file")
        return _json(_read_text(path, f"INPUT {text}"), f"INPUT {text}")
    try:
        return json.loads(text)
    except ValueError as exc:
        if text.lstrip()[:1] in ("[", "{", '"'):
            raise InputError(f"INPUT {_short(text)}: not JSON ({exc}); {INFER_READS}") from None
    path = Path(text)
    try:
        exists = path.exists()
    except OSError:  # e.g. a name too long to be a path: it is text
        exists = False
    if not exists:
        return PlainText(text)
    suffix = path.suffix.lower()
    if path.is_file() and suffix == ".npy":
        return _load_npy(path, "INPUT")
    if path.is_file() and suffix == ".npz":
        arrays = _load_npz(path, "INPUT")
        return arrays["x"] if set(arrays) in ({"x"}, {"x", "y"}) else arrays
    if path.is_file() and suffix == ".json":
        return _json(_read_text(path, f"INPUT {text}"), f"INPUT {text}")
    raise _refuse(f"INPUT {text}", path, INFER_READS)


def plain_text_error(text: str) -> str:
    """The line for text a model without a plugin cannot read."""
    return f"INPUT {_short(text)} is not JSON and names no file; {INFER_READS}"


def _short(text: str) -> str:
    return repr(text if len(text) <= 60 else text[:57] + "...")


def _stdin() -> IO[str]:
    import sys

    return sys.stdin


def _read_text(path: Path, where: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"{where}: cannot read it as text ({exc})") from None


def _json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise InputError(f"{where}: not JSON ({exc}); {INFER_READS}") from None
