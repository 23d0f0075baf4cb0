"""``ocr``: a page (a scan, a photo, a rendered line) in, its text out (PP-OCRv6).

A page is a pipeline of graphs, each run through the swarm with ``infer``:

1. **detection** (the ``ocr`` model itself): the page, resized so that its short side is 736
   and both sides are multiples of 32, as uint8 BGR pixels; back comes a uint8 probability
   map, from which the requester finds the text boxes (:mod:`netcore.models.kinds.ocr_boxes`);
2. the requester cuts each line out with a perspective transform, and (``kind_params``
   ``cls: true``) the angle classifier ``ocr-cls`` says which are upside down;
3. **recognition** (``ocr-rec``): all lines of the page in one batch, 48 pixels high, padded
   on the right to the widest; back comes the best character per time step, which a greedy
   CTC decode with the recogniser's own character list turns into text.

The pre- and post-processing follow rapidocr 3.10 (its defaults for PP-OCRv6, see
``../shared/MODELS-OFFLINE.md``) without importing it. Record fields: ``text`` (the lines
joined by newlines; boxes side by side on one line are joined by a space) and ``lines``, each
box ``{"text", "score", "box"}`` with its four corners in the page's pixels.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from netcore.models.kinds.base import Infer, InputError, Item, Kind, KindError
from netcore.models.kinds.image import IMAGE_SUFFIXES, decode_image
from netcore.models.kinds.ocr_boxes import (
    DbParams,
    boxes_from_map,
    crop_line,
    line_width,
    sort_boxes,
)

REC_HEIGHT = 48
REC_MIN_RATIO = 320 / 48
"""rapidocr pads every batch to at least 320 pixels wide (its rec_img_shape)."""
CLS_SHAPE = (48, 192)
PAD_PIXEL = 128
"""Padding of recognition lines: PaddleOCR pads with 0 after normalisation, i.e. pixel 127.5;
uint8 pixels on the wire get the nearest (a difference of 0.4%)."""


@dataclass(slots=True)
class Page:
    """One page, prepared for detection."""

    key: str
    image: np.ndarray
    """BGR uint8 [H, W, 3] after bounding and padding: what lines are cut from."""
    det: np.ndarray
    """The detection input, uint8 [H', W', 3], sides multiples of 32."""
    scale: tuple[float, float]
    """(x, y) from ``image`` back to the original page."""
    top: int
    """Rows of padding added above the page."""
    size: tuple[int, int] = (0, 0)
    """The original page's (width, height)."""
    meta: dict[str, Any] = field(default_factory=dict)


def _resize(image: np.ndarray, width: int, height: int) -> np.ndarray:
    import cv2

    return np.ascontiguousarray(cv2.resize(image, (width, height)))


def _round32(value: float) -> int:
    return int(round(value / 32) * 32)


class Ocr(Kind):
    """PP-OCRv6 detection + recognition (+ angle classification) over one page."""

    name = "ocr"
    suffixes = IMAGE_SUFFIXES
    fields = ("text", "lines")
    vote = "label"
    """Each stage's label output (the uint8 map, the character indices) compared exactly."""
    inputs_per_worker = 2
    """A page is megabytes on the wire and about half a second of work: one running, one
    on its way per worker."""

    def __init__(self, spec: Any, params: Mapping[str, Any], **options: Any) -> None:
        super().__init__(spec, params, **options)
        p = self.params
        self.rec = str(p.get("rec") or "ocr-rec")
        self.cls = str(p.get("cls_model") or "ocr-cls")
        self.use_cls = bool(options.get("cls", p.get("cls", False)))
        self.db = DbParams(
            thresh=float(p.get("thresh", 0.3)),
            box_thresh=float(p.get("box_thresh", 0.5)),
            unclip_ratio=float(p.get("unclip_ratio", 1.6)),
            dilation=bool(p.get("dilation", True)),
        )
        self.limit_side = int(p.get("limit_side_len", 736))
        self.min_side = int(p.get("min_side_len", 30))
        self.max_side = int(p.get("max_side_len", 2000))
        self.text_score = float(p.get("text_score", 0.5))
        self.det_max_bytes = int(p.get("det_max_bytes", 6 * 1024 * 1024))
        """A detection input is scaled down to fit (a node takes 8 MiB of inputs by default)."""
        self.rec_batch_bytes = int(p.get("rec_batch_bytes", 4 * 1024 * 1024))
        """Lines of a page go in one recognition call while they fit in this many bytes."""
        self._characters: list[str] | None = None

    @property
    def models(self) -> tuple[str, ...]:
        return (self.spec.name, self.rec, *((self.cls,) if self.use_cls else ()))

    def identity(self) -> str:
        shas = self.params.get("stage_sha256") or {}
        parts = [self.spec.sha256, *(str(shas.get(m, m)) for m in self.models[1:])]
        db = self.db
        knobs = f"{db.thresh}:{db.box_thresh}:{db.unclip_ratio}:{db.dilation}:{self.text_score}"
        return ":".join([*parts, knobs, f"{self.limit_side}:{self.use_cls}"])

    # --- reading a page ------------------------------------------------------------------

    def characters(self) -> list[str]:
        """The recogniser's characters: index 0 is CTC's blank, the last one a space."""
        if self._characters is None:
            source = self.params.get("characters")
            if not source:
                raise KindError(f"model {self.spec.name}: kind_params has no characters file")
            try:
                text = Path(str(source)).read_text(encoding="utf-8")
            except OSError as exc:
                raise KindError(
                    f"model {self.spec.name}: cannot read its characters ({exc.strerror})"
                ) from None
            self._characters = ["blank", *text.splitlines(), " "]
        return self._characters

    def read(self, item: Item) -> Page:
        if item.path is None and isinstance(item.value, np.ndarray) and item.value.ndim == 3:
            bgr = np.ascontiguousarray(item.value[:, :, :3], dtype=np.uint8)
        else:
            rgb = decode_image(item.read_bytes(), item.key, "RGB", 255)
            bgr = np.ascontiguousarray(np.asarray(rgb, dtype=np.uint8)[:, :, ::-1])
        return self.prepare(item.key, bgr)

    def prepare(self, key: str, bgr: np.ndarray) -> Page:
        """A BGR page as detection input: bounded to 30-2000 pixels a side, padded when it is
        one short line (rapidocr's vertical padding), resized for the detector."""
        h0, w0 = bgr.shape[:2]
        image, sx, sy = bgr, 1.0, 1.0
        if max(h0, w0) > self.max_side:
            ratio = self.max_side / max(h0, w0)
            image = self._bounded(image, ratio)
        h, w = image.shape[:2]
        if min(h, w) < self.min_side:
            ratio = self.min_side / min(h, w)
            image = self._bounded(image, ratio)
        h, w = image.shape[:2]
        sx, sy = w0 / w, h0 / h
        top = 0
        if h <= 30 or w / h > 8:
            new_h = max(int(w / 8), 30) * 2
            top = int(abs(new_h - h) / 2)
            import cv2

            image = cv2.copyMakeBorder(image, top, top, 0, 0, cv2.BORDER_CONSTANT, value=(0, 0, 0))
        h, w = image.shape[:2]
        ratio = self.limit_side / min(h, w) if min(h, w) < self.limit_side else 1.0
        dh, dw = _round32(int(h * ratio)), _round32(int(w * ratio))
        if dh * dw * 3 > self.det_max_bytes:
            shrink = math.sqrt(self.det_max_bytes / (dh * dw * 3))
            dh, dw = int(dh * shrink) // 32 * 32, int(dw * shrink) // 32 * 32
        if dh <= 0 or dw <= 0:
            raise InputError(f"{key}: image too small to read ({w0}x{h0})")
        det = _resize(image, dw, dh)
        return Page(key, np.ascontiguousarray(image), det, (sx, sy), top, (w0, h0))

    def _bounded(self, image: np.ndarray, ratio: float) -> np.ndarray:
        h, w = image.shape[:2]
        nh, nw = max(32, _round32(int(h * ratio))), max(32, _round32(int(w * ratio)))
        return _resize(image, nw, nh)

    # --- the pipeline --------------------------------------------------------------------

    async def run(self, prepared: Any, infer: Infer) -> dict[str, Any]:
        page: Page = prepared
        det = await infer(self.spec.name, {"image": page.det[None]})
        prob_u8 = np.asarray(det["prob"])
        if prob_u8.ndim != 4 or prob_u8.shape[0] != 1:
            raise InputError(f"{page.key}: detection returned a map of shape {prob_u8.shape}")
        prob = prob_u8[0, 0].astype(np.float32) / 255.0
        h, w = page.image.shape[:2]
        found, line_of = sort_boxes(boxes_from_map(prob, w, h, self.db))
        if not found:
            return {"text": "", "lines": []}
        lines = [crop_line(page.image, box) for box, _ in found]
        if self.use_cls:
            lines = await self._upright(lines, infer)
        texts = await self._recognise(lines, infer)
        records: list[dict[str, Any]] = []
        rows: dict[int, list[str]] = {}
        for (box, _), (text, score), row in zip(found, texts, line_of, strict=True):
            if score < self.text_score or not text:
                continue
            rows.setdefault(row, []).append(text)
            corners = box.copy()
            corners[:, 1] -= page.top
            corners[:, 0] *= page.scale[0]
            corners[:, 1] *= page.scale[1]
            corners[:, 0] = np.clip(corners[:, 0], 0, page.size[0])
            corners[:, 1] = np.clip(corners[:, 1], 0, page.size[1])
            records.append(
                {
                    "text": text,
                    "score": round(score, 4),
                    "box": [[round(float(x)), round(float(y))] for x, y in corners],
                }
            )
        text = "\n".join(" ".join(parts) for _, parts in sorted(rows.items()))
        return {"text": text, "lines": records}

    async def _upright(self, lines: list[np.ndarray], infer: Infer) -> list[np.ndarray]:
        """Lines the angle classifier finds upside down (> 0.9) turned 180 degrees."""
        ch, cw = CLS_SHAPE
        batch = np.full((len(lines), ch, cw, 3), PAD_PIXEL, dtype=np.uint8)
        for i, line in enumerate(lines):
            width = min(cw, line_width(line, ch))
            batch[i, :, :width] = _resize(line, width, ch)
        out = await infer(self.cls, {"image": batch})
        angle = np.asarray(out["angle"])
        turned = []
        for i, line in enumerate(lines):
            flip = (
                angle.shape == (len(lines), 2) and angle[i, 1] > 0.9 and angle[i, 1] > angle[i, 0]
            )
            turned.append(np.ascontiguousarray(line[::-1, ::-1]) if flip else line)
        return turned

    async def _recognise(self, lines: list[np.ndarray], infer: Infer) -> list[tuple[str, float]]:
        """Each line's text and score: the lines in as few calls as fit the byte budget
        (usually one a page), sent side by side."""
        widths = [line_width(line, REC_HEIGHT) for line in lines]
        order = sorted(range(len(lines)), key=lambda i: widths[i])
        batches: list[list[int]] = [[]]
        for i in order:
            widest = max(math.ceil(REC_HEIGHT * REC_MIN_RATIO), widths[i])
            if (
                batches[-1]
                and (len(batches[-1]) + 1) * REC_HEIGHT * widest * 3 > self.rec_batch_bytes
            ):
                batches.append([])
            batches[-1].append(i)
        decoded = await asyncio.gather(*(self._rec_batch(lines, widths, b, infer) for b in batches))
        results: list[tuple[str, float]] = [("", 0.0)] * len(lines)
        for batch, texts in zip(batches, decoded, strict=True):
            for i, text in zip(batch, texts, strict=True):
                results[i] = text
        return results

    async def _rec_batch(
        self, lines: list[np.ndarray], widths: list[int], batch: list[int], infer: Infer
    ) -> list[tuple[str, float]]:
        widest = max(math.ceil(REC_HEIGHT * REC_MIN_RATIO), *(widths[i] for i in batch))
        pixels = np.full((len(batch), REC_HEIGHT, widest, 3), PAD_PIXEL, dtype=np.uint8)
        for row, i in enumerate(batch):
            pixels[row, :, : widths[i]] = _resize(lines[i], widths[i], REC_HEIGHT)
        out = await infer(self.rec, {"image": pixels})
        index, score = np.asarray(out["index"]), np.asarray(out["score"])
        if index.ndim != 2 or index.shape[0] != len(batch) or score.shape != index.shape:
            raise InputError(f"recognition returned outputs of shape {index.shape}")
        return [self.decode(index[row], score[row]) for row in range(len(batch))]

    def decode(self, index: np.ndarray, score: np.ndarray) -> tuple[str, float]:
        """Greedy CTC: repeats merged, blanks (index 0) dropped; the score is the mean
        probability of the characters kept."""
        chars = self.characters()
        keep = np.ones(index.shape, dtype=bool)
        keep[1:] = index[1:] != index[:-1]
        keep &= index != 0
        keep &= (index >= 0) & (index < len(chars))
        text = "".join(chars[int(i)] for i in index[keep])
        kept = score[keep]
        return text, float(np.mean(kept)) if kept.size else 0.0

    def same_result(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        return a.get("text") == b.get("text")


KIND = Ocr
