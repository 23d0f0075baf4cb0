"""Helpers for the model-kind tests: a registry with the packaged models, a local ``infer``
built on LoadedModel (real onnxruntime, no network), and inputs rendered with Pillow."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from netcore.config.settings import Config
from netcore.models.plugins import load_registry
from netcore.models.registry import ModelRegistry

FONT_CANDIDATES = (
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
)


WORDS = [  # words of rendered pages and sentences (benchmarks)
    "invoice",
    "total",
    "due",
    "paid",
    "order",
    "number",
    "account",
    "balance",
    "meeting",
    "room",
    "tuesday",
    "friday",
    "network",
    "peer",
    "worker",
    "model",
    "image",
    "text",
    "page",
    "line",
    "scan",
    "folder",
    "result",
    "file",
    "swarm",
    "quick",
    "brown",
    "fox",
    "lazy",
    "dog",
    "alpha",
    "beta",
    "gamma",
    "delta",
    "report",
    "summary",
    "figure",
    "table",
]


def packaged_registry(data_dir: Path) -> ModelRegistry:
    """Shipped, plugin and packaged models (built into ``data_dir``)."""
    return load_registry(Config(data_dir=data_dir, name="kinds"))


class LocalInfer:
    """An :class:`~netcore.models.kinds.base.Infer` that runs graphs here and records calls."""

    def __init__(self, registry: ModelRegistry) -> None:
        self.registry = registry
        self.calls: list[tuple[str, dict[str, tuple[tuple[int, ...], str]]]] = []

    async def __call__(
        self, model: str, inputs: Mapping[str, np.ndarray]
    ) -> Mapping[str, np.ndarray]:
        spec = self.registry.find(model)
        assert spec is not None, model
        spec.check_inputs(inputs)  # what a worker checks before it runs a task
        self.calls.append((model, {k: (v.shape, v.dtype.name) for k, v in inputs.items()}))
        return self.registry.load(spec).run(inputs)

    @property
    def models(self) -> list[str]:
        return [m for m, _ in self.calls]


def font_path() -> str | None:
    """A TrueType font: a known DejaVu/Liberation file, else what fc-match names."""
    for candidate in FONT_CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    if shutil.which("fc-match"):
        out = subprocess.run(
            ["fc-match", "-f", "%{file}", "sans"], capture_output=True, text=True, check=False
        ).stdout.strip()
        if out.endswith((".ttf", ".otf")) and Path(out).is_file():
            return out
    return None


def font(size: int) -> Any:
    from PIL import ImageFont

    path = font_path()
    return ImageFont.truetype(path, size) if path else ImageFont.load_default(size=size)


def render_page(lines: list[str], size: int = 28, width: int = 1000, gap: int = 60) -> bytes:
    """Black text lines on white as PNG bytes."""
    from PIL import Image, ImageDraw

    image = Image.new("RGB", (width, gap * len(lines) + 40), "white")
    draw = ImageDraw.Draw(image)
    face = font(size)
    for i, line in enumerate(lines):
        draw.text((30, 25 + gap * i), line, fill="black", font=face)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def digit_image(values: np.ndarray, size: int = 32, invert: bool = False) -> Any:
    """One scikit-learn digit (8x8, 0-16) as a Pillow image ``size`` pixels wide, each cell a
    square (nearest neighbour): light ink on black, or dark ink on white with ``invert``."""
    from PIL import Image

    pixels = np.rint(np.asarray(values).reshape(8, 8) * 255.0 / 16.0).astype(np.uint8)
    if invert:
        pixels = 255 - pixels
    return Image.fromarray(pixels, "L").resize((size, size), Image.Resampling.NEAREST)


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def char_accuracy(got: str, want: str) -> float:
    """1 - edit distance / length of the truth."""
    return 1.0 - edit_distance(got, want) / max(1, len(want))
