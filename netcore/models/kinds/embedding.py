"""``text-embedding``: a text in, one vector per chunk out (the ``minilm`` model).

Texts (``.txt``/``.md`` files, a table's text column, or a string) are tokenised on the
requester with ``tokenizers`` from the tokenizer file vendored in ``assets/tokenizers/``. A text
longer than ``max_length`` tokens (256, [CLS] and [SEP] included) is cut into consecutive
windows, each its own record with ``chunk`` (0, 1, ...) and ``span`` (its first and last
character offsets in the text). Token ids travel as int32, padded with 0 to a small bucket
(16, 32, 64, 128, 256 tokens) so that the job engine can batch texts of similar length; the
graph makes the attention mask from ``ids != 0`` and returns the mean-pooled, L2-normalised
vector, 384 floats (:func:`netcore.models.folding.fold_minilm`). Padding changes no result:
padded tokens are masked out of attention and of the mean.

Votes compare embeddings by cosine (>= 0.999): the same graph gives slightly different floats
on different hardware.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from netcore.models.kinds.base import Infer, InputError, Item, Kind, KindError

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown", ".rst", ".text"})
BUCKETS = (16, 32, 64, 128, 256, 512)
COSINE_SAME = 0.999
MAX_TEXT_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Chunk:
    """One window of a text's tokens: ids with [CLS]/[SEP], and where it is in the text."""

    ids: np.ndarray
    index: int
    span: tuple[int, int]


@dataclass(frozen=True, slots=True)
class Text:
    """A tokenised text: its chunks (always at least one)."""

    chunks: tuple[Chunk, ...]


def bucket(length: int) -> int:
    """The padded length of ``length`` tokens."""
    return next((b for b in BUCKETS if b >= length), length)


def cosine(a: Any, b: Any) -> float:
    x = np.asarray(a, dtype=np.float64).reshape(-1)
    y = np.asarray(b, dtype=np.float64).reshape(-1)
    if x.shape != y.shape or not x.size:
        return -1.0
    denom = float(np.linalg.norm(x) * np.linalg.norm(y))
    return float(np.dot(x, y) / denom) if denom > 0 else -1.0


_TOKENIZERS: dict[str, Any] = {}


def load_tokenizer(name: str) -> Any:
    """A ``tokenizers.Tokenizer`` from ``assets/tokenizers/<name>/tokenizer.json`` (or a path),
    with its own truncation and padding off (chunks and buckets are made here)."""
    if name in _TOKENIZERS:
        return _TOKENIZERS[name]
    from netcore.models.registry import assets_dir

    path = Path(name)
    if not path.is_file():
        path = assets_dir() / "tokenizers" / name / "tokenizer.json"
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise KindError("text embeddings need `pip install 'p2pai[embed]'`") from None
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:
        raise KindError(f"cannot load tokenizer {path}: {' '.join(str(exc).split())}") from None
    tokenizer.no_truncation()
    tokenizer.no_padding()
    _TOKENIZERS[name] = tokenizer
    return tokenizer


class TextEmbedding(Kind):
    """Sentence embeddings of texts, a record per chunk."""

    name = "text-embedding"
    suffixes = TEXT_SUFFIXES
    takes_text = True
    fields = ("chunk", "span", "embedding")
    vote = "cosine"

    def __init__(self, spec: Any, params: Mapping[str, Any], **options: Any) -> None:
        super().__init__(spec, params, **options)
        self.max_length = int(self.params.get("max_length", 256))
        if not 8 <= self.max_length <= 512:
            raise KindError(f"model {spec.name}: kind_params max_length must be 8 to 512")
        self.input = str(self.params.get("input") or spec.inputs[0].name)
        self.output = str(self.params.get("output") or spec.outputs[0].name)
        self.tokenizer = load_tokenizer(str(self.params.get("tokenizer", "all-MiniLM-L6-v2")))
        self.cls_id = self.tokenizer.token_to_id("[CLS]")
        self.sep_id = self.tokenizer.token_to_id("[SEP]")
        if self.cls_id is None or self.sep_id is None:
            raise KindError(f"model {spec.name}: its tokenizer has no [CLS]/[SEP] tokens")

    def identity(self) -> str:
        tok = str(self.params.get("tokenizer", "all-MiniLM-L6-v2"))
        return f"{self.spec.sha256}:{tok}:{self.max_length}"

    def read(self, item: Item) -> Text:
        if item.path is None:
            if not isinstance(item.value, str):
                raise InputError(f"{item.key}: not a text")
            return self.tokenise(item.value)
        data = item.read_bytes()
        if len(data) > MAX_TEXT_BYTES:
            raise InputError(f"{item.key}: text of {len(data):,} bytes is too large")
        if b"\x00" in data[:8192]:
            raise InputError(f"{item.key}: not a text file (binary data)")
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InputError(f"{item.key}: not UTF-8 text (byte {exc.start})") from None
        return self.tokenise(text)

    def tokenise(self, text: str) -> Text:
        """``text`` as windows of at most ``max_length`` tokens (an empty text: one chunk of
        [CLS] [SEP], as the model would embed it)."""
        encoding = self.tokenizer.encode(text, add_special_tokens=False)
        ids = np.asarray(encoding.ids, dtype=np.int32)
        offsets = encoding.offsets
        width = self.max_length - 2
        chunks = []
        for index, start in enumerate(range(0, max(len(ids), 1), width)):
            part = ids[start : start + width]
            body = np.concatenate(([self.cls_id], part, [self.sep_id])).astype(np.int32)
            if part.size:
                span = (int(offsets[start][0]), int(offsets[start + part.size - 1][1]))
            else:
                span = (0, 0)
            chunks.append(Chunk(body, index, span))
        return Text(tuple(chunks))

    def parts(self, prepared: Any) -> list[Any]:
        text: Text = prepared
        return list(text.chunks)

    def sample(self, prepared: Any) -> dict[str, np.ndarray]:
        chunk = prepared.chunks[0] if isinstance(prepared, Text) else prepared
        padded = np.zeros((1, bucket(chunk.ids.size)), dtype=np.int32)
        padded[0, : chunk.ids.size] = chunk.ids
        return {self.input: padded}

    async def run(self, prepared: Any, infer: Infer) -> dict[str, Any]:
        outputs = await infer(self.spec.name, self.sample(prepared))
        return self.finish(prepared, outputs)

    def finish(self, prepared: Any, outputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
        chunk: Chunk = prepared.chunks[0] if isinstance(prepared, Text) else prepared
        vector = outputs.get(self.output)
        arr = np.asarray(vector) if vector is not None else None
        if arr is None or arr.ndim != 2 or arr.shape[0] != 1 or arr.dtype.kind != "f":
            raise InputError(f"model {self.spec.name} returned no {self.output} [1, D]")
        row = arr[0].astype(np.float32)
        if not np.all(np.isfinite(row)):
            raise InputError(f"model {self.spec.name} returned an embedding that is not finite")
        return {
            "chunk": chunk.index,
            "span": list(chunk.span),
            "embedding": [float(v) for v in row],
        }

    def same_result(self, a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
        return (
            a.get("chunk") == b.get("chunk")
            and cosine(a.get("embedding"), b.get("embedding")) >= COSINE_SAME
        )


KIND = TextEmbedding
