"""Text boxes from a detection map, and the lines cut out of a page (OCR's requester side).

This is PaddleOCR's DB post-processing as rapidocr 3.10 runs it for PP-OCRv6 (thresholds
0.3 / 0.5, unclip ratio 1.6, a 2x2 dilation, the "fast" box score), written again with numpy,
opencv and pyclipper (which come with the ``ocr`` extra): rapidocr's own Python code is
never imported, workers only ever run the ONNX graphs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MIN_SIZE = 3
MAX_CANDIDATES = 1000
SORT_Y_THRESHOLD = 10
"""Boxes whose tops differ by less than this many pixels are one line: sorted left to right."""


@dataclass(frozen=True, slots=True)
class DbParams:
    thresh: float = 0.3
    box_thresh: float = 0.5
    unclip_ratio: float = 1.6
    dilation: bool = True


def _cv2():  # type: ignore[no-untyped-def]
    import cv2

    return cv2


def mini_box(contour: np.ndarray) -> tuple[np.ndarray, float]:
    """The minimum-area rectangle of ``contour`` as 4 points (tl, tr, br, bl) and its short side."""
    cv2 = _cv2()
    rect = cv2.minAreaRect(contour)
    points = sorted(cv2.boxPoints(rect).tolist(), key=lambda p: p[0])
    i1, i4 = (0, 1) if points[1][1] > points[0][1] else (1, 0)
    i2, i3 = (2, 3) if points[3][1] > points[2][1] else (3, 2)
    box = np.array([points[i1], points[i2], points[i3], points[i4]], dtype=np.float32)
    return box, float(min(rect[1]))


def box_score(prob: np.ndarray, box: np.ndarray) -> float:
    """Mean probability inside ``box`` (DB's "fast" score: the box polygon, not the contour)."""
    cv2 = _cv2()
    h, w = prob.shape[:2]
    xmin = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
    xmax = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    ymin = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
    ymax = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    mask = np.zeros((ymax - ymin + 1, xmax - xmin + 1), dtype=np.uint8)
    shifted = box.copy()
    shifted[:, 0] -= xmin
    shifted[:, 1] -= ymin
    cv2.fillPoly(mask, shifted.reshape(1, -1, 2).astype(np.int32), 1)
    return float(cv2.mean(prob[ymin : ymax + 1, xmin : xmax + 1], mask)[0])


def unclip(box: np.ndarray, ratio: float) -> np.ndarray:
    """``box`` grown by area * ratio / perimeter (pyclipper, round joins)."""
    import pyclipper

    x, y = box[:, 0].astype(np.float64), box[:, 1].astype(np.float64)
    area = 0.5 * abs(float(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))))
    length = float(np.sum(np.hypot(x - np.roll(x, 1), y - np.roll(y, 1))))
    if length <= 0:
        return box.reshape(-1, 1, 2)
    offset = pyclipper.PyclipperOffset()
    offset.AddPath(box.tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
    grown = offset.Execute(area * ratio / length)
    if not grown:
        return box.reshape(-1, 1, 2)
    return np.array(grown[0], dtype=np.float32).reshape(-1, 1, 2)


def order_clockwise(pts: np.ndarray) -> np.ndarray:
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    (tl, bl), (tr, br) = left, right
    return np.array([tl, tr, br, bl], dtype=np.float32)


def boxes_from_map(
    prob: np.ndarray, dest_w: int, dest_h: int, params: DbParams
) -> list[tuple[np.ndarray, float]]:
    """Text boxes (4 points in a ``dest_w`` x ``dest_h`` image) and their scores, from a
    probability map float [H, W] in 0-1."""
    cv2 = _cv2()
    height, width = prob.shape
    bitmap = (prob > params.thresh).astype(np.uint8)
    if params.dilation:
        bitmap = cv2.dilate(bitmap, np.ones((2, 2), dtype=np.uint8))
    contours, _ = cv2.findContours(bitmap * 255, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
    found: list[tuple[np.ndarray, float]] = []
    for contour in contours[:MAX_CANDIDATES]:
        points, short = mini_box(contour)
        if short < MIN_SIZE:
            continue
        score = box_score(prob, points)
        if score < params.box_thresh:
            continue
        box, short = mini_box(unclip(points, params.unclip_ratio))
        if short < MIN_SIZE + 2:
            continue
        box[:, 0] = np.clip(np.round(box[:, 0] / width * dest_w), 0, dest_w)
        box[:, 1] = np.clip(np.round(box[:, 1] / height * dest_h), 0, dest_h)
        box = order_clockwise(box.astype(np.int32).astype(np.float32))
        box[:, 0] = np.clip(box[:, 0], 0, dest_w - 1).astype(np.int32)
        box[:, 1] = np.clip(box[:, 1], 0, dest_h - 1).astype(np.int32)
        if int(np.linalg.norm(box[0] - box[1])) <= 3 or int(np.linalg.norm(box[0] - box[3])) <= 3:
            continue
        found.append((box, score))
    return found


def sort_boxes(
    found: list[tuple[np.ndarray, float]],
) -> tuple[list[tuple[np.ndarray, float]], list[int]]:
    """Top to bottom, then left to right within a line (tops within SORT_Y_THRESHOLD of the
    box above); with each box's line number."""
    if not found:
        return found, []
    tops = np.array([b[0][0, 1] for b in found])
    order = np.argsort(tops, kind="stable")
    ys = tops[order]
    lines = np.concatenate([[0], np.cumsum(np.diff(ys) >= SORT_Y_THRESHOLD)])
    xs = np.array([found[i][0][0, 0] for i in order])
    final = np.lexsort((xs, lines))
    return [found[order[i]] for i in final], [int(lines[i]) for i in final]


def crop_line(image: np.ndarray, box: np.ndarray) -> np.ndarray:
    """The text line inside ``box`` straightened by a perspective transform (a tall crop is
    turned a quarter, as PaddleOCR does for vertical text)."""
    cv2 = _cv2()
    width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], dtype=np.float32)
    matrix = cv2.getPerspectiveTransform(box.astype(np.float32), target)
    line = cv2.warpPerspective(
        image, matrix, (width, height), borderMode=cv2.BORDER_REPLICATE, flags=cv2.INTER_CUBIC
    )
    if line.shape[0] / line.shape[1] >= 1.5:
        line = np.rot90(line)
    return np.ascontiguousarray(line)


def line_width(line: np.ndarray, height: int) -> int:
    """The width of ``line`` scaled to ``height`` with its aspect ratio kept."""
    h, w = line.shape[:2]
    return max(1, math.ceil(height * w / h))
