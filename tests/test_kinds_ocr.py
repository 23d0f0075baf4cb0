"""The ocr kind: PP-OCRv6 from the rapidocr wheel, on pages rendered with a TrueType font."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kind_helpers import LocalInfer, char_accuracy, packaged_registry, render_page

from netcore.models.kinds import InputError, Item, kind_for
from netcore.models.kinds.ocr import Ocr
from netcore.models.registry import ModelRegistry

pytest.importorskip("cv2", reason="the ocr extra")
pytestmark = pytest.mark.timeout(300)

PAGES = [
    [
        "The quick brown fox jumps over the lazy dog.",
        "Invoice 2024-117: total due 1,234.56 EUR",
        "Peer-to-peer inference on the machines at hand",
    ],
    [
        "Sphinx of black quartz, judge my vow!",
        "Meeting at 10:45 in room B-12 on Tuesday",
        "p2pai map ocr scans -o text.jsonl",
        "Call +1 (555) 010-4477 before Friday",
    ],
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    return packaged_registry(tmp_path_factory.mktemp("ocr-data"))


@pytest.fixture(scope="module")
def kind(registry: ModelRegistry) -> Ocr:
    spec = registry.find("ocr")
    assert spec is not None, "rapidocr is installed: the ocr model must be registered"
    found = kind_for(spec)
    assert isinstance(found, Ocr)
    return found


def page_item(tmp_path: Path, lines: list[str], name: str = "page.png", **kw: int) -> Item:
    path = tmp_path / name
    path.write_bytes(render_page(lines, **kw))
    return Item(path.name, path)


async def test_rendered_pages_are_read(kind: Ocr, registry: ModelRegistry, tmp_path: Path) -> None:
    total_chars = total_errors = 0
    for n, lines in enumerate(PAGES):
        infer = LocalInfer(registry)
        record = await kind.run(kind.read(page_item(tmp_path, lines, f"p{n}.png")), infer)
        truth = "\n".join(lines)
        accuracy = char_accuracy(record["text"], truth)
        total_chars += len(truth)
        total_errors += round((1 - accuracy) * len(truth))
        assert accuracy >= 0.95, (record["text"], truth)
        assert len(record["lines"]) == len(lines)
        # One detection task, then all the page's lines in one batched recognition task.
        assert infer.models == ["ocr", "ocr-rec"]
        (rec_shape, rec_dtype) = infer.calls[1][1]["image"]
        assert rec_dtype == "uint8" and rec_shape[0] == len(lines) and rec_shape[1] == 48
        tops = [line["box"][0][1] for line in record["lines"]]
        assert tops == sorted(tops)
        for line in record["lines"]:
            assert 0.5 <= line["score"] <= 1.0
            assert all(0 <= x <= 1000 and 0 <= y <= 60 * len(lines) + 40 for x, y in line["box"])
    assert 1 - total_errors / total_chars >= 0.95


async def test_one_line_image_and_a_blank_page(
    kind: Ocr, registry: ModelRegistry, tmp_path: Path
) -> None:
    from PIL import Image

    line = "Total due: 42.00"
    record = await kind.run(
        kind.read(page_item(tmp_path, [line], width=320, gap=40)), LocalInfer(registry)
    )
    assert char_accuracy(record["text"], line) >= 0.9, record["text"]
    blank = tmp_path / "blank.png"
    Image.new("RGB", (400, 300), "white").save(blank)
    infer = LocalInfer(registry)
    assert await kind.run(kind.read(Item("blank.png", blank)), infer) == {"text": "", "lines": []}
    assert infer.models == ["ocr"]  # nothing to recognise


async def test_lines_split_over_calls_when_the_batch_is_too_big(
    registry: ModelRegistry, tmp_path: Path
) -> None:
    spec = registry.find("ocr")
    assert spec is not None
    small = Ocr(spec, {**spec.kind_params, "rec_batch_bytes": 48 * 700 * 3 * 2})
    infer = LocalInfer(registry)
    lines = PAGES[1]
    record = await small.run(small.read(page_item(tmp_path, lines)), infer)
    assert infer.models.count("ocr-rec") >= 2
    assert char_accuracy(record["text"], "\n".join(lines)) >= 0.95


async def test_angle_classifier_stage(registry: ModelRegistry, tmp_path: Path) -> None:
    spec = registry.find("ocr")
    assert spec is not None
    with_cls = kind_for(spec, cls=True)
    assert with_cls.models == ("ocr", "ocr-rec", "ocr-cls")
    infer = LocalInfer(registry)
    lines = PAGES[0]
    record = await with_cls.run(with_cls.read(page_item(tmp_path, lines)), infer)
    assert infer.models == ["ocr", "ocr-cls", "ocr-rec"]
    assert char_accuracy(record["text"], "\n".join(lines)) >= 0.95


def test_bad_pages_are_one_line(kind: Ocr, tmp_path: Path) -> None:
    bad = tmp_path / "scan.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0" + b"\x00" * 40)
    with pytest.raises(InputError, match=r"^scan\.jpg: "):
        kind.read(Item(bad.name, bad))
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(InputError, match="not an image"):
        kind.read(Item(text.name, text))


async def test_a_lying_detector_is_an_item_error(kind: Ocr, tmp_path: Path) -> None:
    async def liar(model: str, inputs: dict) -> dict:
        return {"prob": np.zeros((3,), dtype=np.uint8)}

    with pytest.raises(InputError, match="detection returned"):
        await kind.run(kind.read(page_item(tmp_path, ["x"])), liar)  # type: ignore[arg-type]


def test_wire_is_uint8_both_ways(registry: ModelRegistry) -> None:
    det, rec = registry.find("ocr"), registry.find("ocr-rec")
    assert det is not None and rec is not None
    assert [(s.name, s.dtype) for s in det.inputs] == [("image", "uint8")]
    assert [s.dtype for s in det.outputs] == ["uint8"]
    assert [(s.name, s.dtype) for s in rec.outputs] == [("index", "int32"), ("score", "float32")]
    assert det.source == rec.source == "packaged"
