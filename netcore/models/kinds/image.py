"""``image-classification``: one image in, its class out (the ``digits`` model).

Any PNG, JPEG, BMP (GIF, WebP, TIFF) of any size is read with Pillow, flattened onto its
ground, made grayscale and resized to the manifest's ``size`` by area averaging, which is what
scikit-learn's digits are (32x32 bitmaps counted in 4x4 blocks: 0-16). Pixels travel as uint8
0-255, light ink on a dark ground; the graph scales them (``digits-u8`` folds x * 16/255 in
front of the MLP), so a digit is 64 bytes on the wire instead of 256. Dark ink on white
(a scan) needs ``invert`` (``--invert``, or ``"invert": true`` in ``kind_params``).

``kind_params``: ``size`` [width, height] (default [8, 8]); ``graph``, the model that takes the
uint8 pixels when it is not this one (``digits`` names ``digits-u8``); ``input``, that model's
input name (default: this model's first input); ``invert``. A feature row (a ``.npy`` or a
table's numbers, already 0-16) runs this model's own float graph, as ``submit`` does.
"""

from __future__ import annotations

import io
import math
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from netcore.models.kinds.base import Infer, InputError, Item, Kind, KindError

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
IMAGE_MAGIC = (
    (b"\x89PNG", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"BM", "BMP"),
    (b"GIF8", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
)
MAX_PIXELS = 64_000_000
"""Larger images are refused (a decompression bomb costs memory before it is resized)."""


@dataclass(frozen=True, slots=True)
class Pixels:
    """One image, prepared: uint8 [H*W] for the pixel graph."""

    values: np.ndarray


@dataclass(frozen=True, slots=True)
class Row:
    """One feature row for the model's own graph (float32 [features])."""

    values: np.ndarray


def decode_image(data: bytes, key: str, mode: str, ground: int = 0) -> Any:
    """Pillow's image of ``data`` in ``mode`` (``L`` or ``RGB``), transparency flattened
    onto ``ground``; :class:`InputError` for anything that is not a readable image."""
    from PIL import Image, UnidentifiedImageError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            if image.width * image.height > MAX_PIXELS:
                raise InputError(
                    f"{key}: image of {image.width}x{image.height} pixels is too large "
                    f"(at most {MAX_PIXELS:,})"
                )
            image.load()
    except InputError:
        raise
    except UnidentifiedImageError:
        known = next((name for magic, name in IMAGE_MAGIC if data.startswith(magic)), None)
        if known is not None:
            raise InputError(f"{key}: corrupt image (a {known} header, unreadable data)") from None
        raise InputError(f"{key}: not an image Pillow can read") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise InputError(f"{key}: image too large to decode safely") from None
    except (OSError, ValueError, SyntaxError) as exc:  # truncated or corrupt data
        reason = " ".join(str(exc).split())[:120]
        raise InputError(f"{key}: corrupt image ({reason})") from None
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        back = Image.new("RGBA", rgba.size, (ground, ground, ground, 255))
        return Image.alpha_composite(back, rgba).convert(mode)
    return image.convert(mode)


class ImageClassification(Kind):
    """Images of one object (a digit), each classified by one graph run."""

    name = "image-classification"
    suffixes = IMAGE_SUFFIXES
    fields = ("label", "class", "confidence", "probabilities")
    vote = "label"

    def __init__(self, spec: Any, params: Mapping[str, Any], **options: Any) -> None:
        super().__init__(spec, params, **options)
        size = self.params.get("size", [8, 8])
        if (
            not isinstance(size, (list, tuple))
            or len(size) != 2
            or not all(isinstance(v, int) and 0 < v <= 4096 for v in size)
        ):
            raise KindError(f"model {spec.name}: kind_params size must be [width, height]")
        self.size = (int(size[0]), int(size[1]))
        self.graph = str(self.params.get("graph") or spec.name)
        self.input = str(
            self.params.get("input") or (spec.inputs[0].name if spec.inputs else "input")
        )
        invert = options.get("invert")
        self.invert = bool(self.params.get("invert", False) if invert is None else invert)
        self.features = math.prod(spec.inputs[0].shape[1:]) if spec.inputs else 0
        if spec.inputs and any(d <= 0 for d in (spec.inputs[0].shape or ())[1:]):
            self.features = 0

    @property
    def models(self) -> tuple[str, ...]:
        return (self.graph,)

    def identity(self) -> str:
        w, h = self.size
        return f"{self.spec.sha256}:{self.graph}:{w}x{h}:{'inv' if self.invert else 'raw'}"

    def read(self, item: Item) -> Pixels | Row:
        if item.path is None and item.value is not None:
            return self._row(item)
        image = decode_image(item.read_bytes(), item.key, "L", 255 if self.invert else 0)
        return Pixels(self.pixels(image))

    def pixels(self, image: Any) -> np.ndarray:
        """A grayscale Pillow image as the graph's uint8 pixels (area-averaged to ``size``)."""
        from PIL import Image

        small = image.resize(self.size, Image.Resampling.BOX)
        values = np.asarray(small, dtype=np.uint8).reshape(-1)
        return 255 - values if self.invert else values

    def _row(self, item: Item) -> Row:
        try:
            values = np.asarray(item.value, dtype=np.float32).reshape(-1)
        except (TypeError, ValueError):
            raise InputError(f"{item.key}: not an image and not a row of numbers") from None
        if self.features and values.size != self.features:
            raise InputError(
                f"{item.key}: a row of {values.size} numbers; model {self.spec.name} takes "
                f"{self.features}"
            )
        if not np.all(np.isfinite(values)):
            raise InputError(f"{item.key}: the row has values that are not finite numbers")
        if self.spec.inputs and self.spec.inputs[0].dtype == "uint8":
            if np.any((values < 0) | (values > 255) | (values != np.rint(values))):
                raise InputError(f"{item.key}: model {self.spec.name} takes pixels 0-255")
            return Row(values.astype(np.uint8))
        return Row(values)

    async def run(self, prepared: Any, infer: Infer) -> dict[str, Any]:
        if isinstance(prepared, Row):
            name = self.spec.inputs[0].name if self.spec.inputs else "input"
            outputs = await infer(self.spec.name, {name: prepared.values[None, :]})
        else:
            outputs = await infer(self.graph, {self.input: prepared.values[None, :]})
        return self.finish(prepared, outputs)

    def sample(self, prepared: Any) -> dict[str, np.ndarray]:
        return {self.input: prepared.values[None, :]}

    def finish(self, prepared: Any, outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        label_name = self.spec.label_output or "label"
        probs = outputs.get("probabilities")
        label = outputs.get(label_name)
        row: np.ndarray | None = None
        if probs is not None:
            arr = np.asarray(probs)
            if arr.ndim == 2 and arr.shape[0] == 1 and arr.dtype.kind == "f":
                row = arr[0].astype(np.float64)
        if label is not None and np.asarray(label).size == 1:
            cls = int(np.asarray(label).reshape(-1)[0])
        elif row is not None and row.size:
            cls = int(np.argmax(row))
        else:
            raise InputError(f"model {self.graph} returned no usable {label_name}")
        names = self.spec.labels
        result: dict[str, Any] = {
            "label": names[cls] if 0 <= cls < len(names) else str(cls),
            "class": cls,
            "confidence": None,
            "probabilities": None,
        }
        if row is not None and 0 <= cls < row.size and np.all(np.isfinite(row)):
            result["confidence"] = round(float(row[cls]), 4)
            result["probabilities"] = [round(float(p), 4) for p in row]
        return result

    def same_result(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        return a.get("class") == b.get("class") and a.get("label") == b.get("label")


KIND = ImageClassification
