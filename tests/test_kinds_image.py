"""The image-classification kind on real PNG/JPEG/BMP files and the real digits graphs."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
from kind_helpers import LocalInfer, digit_image

from netcore.models.kinds import InputError, Item, KindError, kind_for
from netcore.models.kinds.image import ImageClassification
from netcore.models.registry import ModelRegistry, assets_dir, load_samples


@pytest.fixture(scope="module")
def registry() -> ModelRegistry:
    return ModelRegistry([assets_dir() / "models"])


@pytest.fixture(scope="module")
def held_out() -> tuple[np.ndarray, np.ndarray]:
    x, y = load_samples()
    assert y is not None
    return x, y


async def classify(kind: ImageClassification, infer: LocalInfer, item: Item) -> dict:
    return await kind.run(kind.read(item), infer)


async def test_digit_pngs_are_classified_like_the_held_out_set(
    registry: ModelRegistry, held_out: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = held_out
    spec = registry.find("digits")
    assert spec is not None and spec.kind == "image-classification"
    kind = kind_for(spec)
    assert isinstance(kind, ImageClassification) and kind.models == ("digits-u8",)
    infer = LocalInfer(registry)
    right = 0
    for i, (values, truth) in enumerate(zip(x, y, strict=True)):
        path = tmp_path / f"{i:03d}.png"
        digit_image(values, 32).save(path)
        record = await classify(kind, infer, Item(path.name, path))
        assert set(record) == set(kind.fields)
        assert record["label"] == str(record["class"])
        assert 0.0 <= record["confidence"] <= 1.0 and len(record["probabilities"]) == 10
        right += record["class"] == truth
    accuracy = right / len(y)
    assert accuracy >= 0.9, accuracy
    # Every call was one uint8 row of 64 pixels to the folded graph.
    assert {c for c in infer.calls[0][1].values()} == {((1, 64), "uint8")}
    assert set(infer.models) == {"digits-u8"}


@pytest.mark.parametrize(("fmt", "size"), [("BMP", 40), ("JPEG", 64), ("PNG", 17)])
async def test_other_formats_and_sizes(
    registry: ModelRegistry, held_out: tuple[np.ndarray, np.ndarray], tmp_path: Path,
    fmt: str, size: int,
) -> None:  # fmt: skip
    x, y = held_out
    kind = kind_for(registry.find("digits"))  # type: ignore[arg-type]
    infer = LocalInfer(registry)
    right = 0
    for i in range(100):
        path = tmp_path / f"{i}.{fmt.lower()}"
        image = digit_image(x[i], size)
        image.save(path, format=fmt, **({"quality": 95} if fmt == "JPEG" else {}))
        right += (await classify(kind, infer, Item(path.name, path)))["class"] == y[i]
    assert right >= 85, right


async def test_invert_reads_dark_ink_on_white(
    registry: ModelRegistry, held_out: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    x, y = held_out
    spec = registry.find("digits")
    assert spec is not None
    inverted, plain = kind_for(spec, invert=True), kind_for(spec)
    infer = LocalInfer(registry)
    right_inv = right_plain = 0
    for i in range(120):
        path = tmp_path / f"scan{i}.png"
        digit_image(x[i], 32, invert=True).save(path)
        right_inv += (await classify(inverted, infer, Item(path.name, path)))["class"] == y[i]
        right_plain += (await classify(plain, infer, Item(path.name, path)))["class"] == y[i]
    assert right_inv / 120 >= 0.9
    assert right_plain / 120 < 0.5  # the flag matters: white paper is not a digit
    # The manifest flag does the same.
    spec_inv = registry.find("digits")
    assert spec_inv is not None
    by_param = ImageClassification(spec_inv, {**spec_inv.kind_params, "invert": True})
    assert by_param.invert and by_param.identity() != plain.identity()


async def test_transparent_png_is_flattened_onto_the_ground(
    registry: ModelRegistry, held_out: tuple[np.ndarray, np.ndarray], tmp_path: Path
) -> None:
    from PIL import Image

    x, y = held_out
    kind = kind_for(registry.find("digits"))  # type: ignore[arg-type]
    infer = LocalInfer(registry)
    right = 0
    for i in range(50):
        alpha = digit_image(x[i], 32)
        rgba = Image.new("RGBA", alpha.size, (255, 255, 255, 0))  # white, fully transparent
        rgba.putalpha(alpha)  # white ink where the digit is
        path = tmp_path / f"a{i}.png"
        rgba.save(path)
        right += (await classify(kind, infer, Item(path.name, path)))["class"] == y[i]
    assert right >= 45


def test_bad_files_are_one_line_errors(registry: ModelRegistry, tmp_path: Path) -> None:
    kind = kind_for(registry.find("digits"))  # type: ignore[arg-type]
    good = io.BytesIO()
    digit_image(np.arange(64) % 17, 32).save(good, format="PNG")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.getvalue()[: len(good.getvalue()) // 2])
    text = tmp_path / "notes.png"
    text.write_text("not an image at all\n")
    missing = tmp_path / "gone.png"
    for path, words in (
        (truncated, "corrupt image"),
        (text, "not an image"),
        (missing, "cannot read"),
    ):
        with pytest.raises(InputError) as err:
            kind.read(Item(path.name, path))
        message = str(err.value)
        assert message.startswith(f"{path.name}: ") and words in message, message
        assert "\n" not in message


async def test_rows_run_the_float_graph(
    registry: ModelRegistry, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    """A .npy row (0-16 already) keeps working: it runs digits itself, not digits-u8."""
    x, _y = held_out
    kind = kind_for(registry.find("digits"))  # type: ignore[arg-type]
    infer = LocalInfer(registry)
    labels = [
        (await kind.run(kind.read(Item(str(i), value=x[i])), infer))["class"] for i in range(40)
    ]
    direct = registry.load(registry.find("digits")).run({"input": x[:40]})["label"]  # type: ignore[arg-type]
    assert labels == direct.tolist()
    assert set(infer.models) == {"digits"}
    with pytest.raises(InputError, match="a row of 3 numbers"):
        kind.read(Item("1", value=[1.0, 2.0, 3.0]))


def test_u8_graph_agrees_with_the_float_graph(
    registry: ModelRegistry, held_out: tuple[np.ndarray, np.ndarray]
) -> None:
    x, _ = held_out
    u8 = registry.load(registry.find("digits-u8")).run(  # type: ignore[arg-type]
        {"pixels": np.rint(x * 255 / 16).astype(np.uint8)}
    )
    f32 = registry.load(registry.find("digits")).run({"input": x})  # type: ignore[arg-type]
    assert np.mean(u8["label"] == f32["label"]) >= 0.99
    np.testing.assert_allclose(u8["probabilities"], f32["probabilities"], atol=0.02)


def test_bad_kind_params_are_one_line(registry: ModelRegistry) -> None:
    spec = registry.find("digits")
    assert spec is not None
    with pytest.raises(KindError, match="size must be"):
        ImageClassification(spec, {"size": [8]})
