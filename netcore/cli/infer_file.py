"""``p2pai infer MODEL FILE`` for models with a kind: an image, a page, a text file, a text.

The model's kind (netcore.models.kinds) reads the file here, runs its graphs on peers (one
task per graph call: detection, then the page's lines, for OCR) and prints each record's
result fields as one JSON line (a long text gives one line per chunk). Tensors (``.npy``,
JSON) for any model still go the plain way (:func:`netcore.cli.models.infer`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import click
import numpy as np

from netcore.cli.common import CliError
from netcore.models.inputs import kind_of
from netcore.models.kinds import DEFAULT_KIND, InputError, Item, Kind, KindError, kind_for
from netcore.models.packaged import missing_extra

TENSOR_SUFFIXES = frozenset({".npy", ".npz", ".json"})


def kind_input(
    model: str, raw_input: str, registry: Any, options: Mapping[str, Any]
) -> tuple[Kind, Item] | None:
    """The kind and item for ``infer MODEL INPUT`` when the model's kind reads INPUT; None
    when INPUT is for the plain tensor path. :class:`CliError` (one line) when it cannot work:
    a missing extra, a file this kind does not read."""
    spec = registry.find(model)
    if spec is None:
        line = missing_extra(model)
        if line is not None:
            raise CliError(line)
        return None
    if (spec.kind or DEFAULT_KIND) == DEFAULT_KIND:
        return None
    line = missing_extra(model)
    if line is not None:
        raise CliError(line)
    try:
        kind = kind_for(spec, **{k: v for k, v in options.items() if v is not None})
    except KindError as exc:
        raise CliError(str(exc)) from None
    if raw_input == "-" or raw_input.startswith("@"):
        return None  # JSON on stdin or in a file: the tensor path
    path = Path(raw_input)
    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except OSError:  # a name too long to be a path (a long JSON sample, a text): not a file
        is_file = is_dir = False
    if is_file:
        if kind.accepts(path):
            return kind, Item(path.name, path)
        if path.suffix.lower() in TENSOR_SUFFIXES:
            return None
        takes = ", ".join(sorted(kind.suffixes))
        raise CliError(
            f"model {model} ({kind.name}) reads {takes} files; {path.name} is {kind_of(path)}"
        )
    if is_dir:
        raise CliError(f"{raw_input} is a folder: `p2pai map {model} {raw_input} -o OUT` runs one")
    if kind.takes_text:
        return kind, Item("text", value=raw_input)
    if raw_input.lower().endswith(tuple(kind.suffixes)):
        raise CliError(f"no such file: {raw_input}")
    return None


def read_item(kind: Kind, item: Item) -> list[Any]:
    """The item read and split into its parts here, before any socket opens (a bad file is
    one line and no connection)."""
    try:
        return kind.parts(kind.read(item))
    except (InputError, KindError) as exc:
        raise CliError(str(exc)) from None


async def run_parts(client: Any, kind: Kind, parts: list[Any]) -> list[dict[str, Any]]:
    """Run each part through ``client``'s peers (one task per graph call); the records."""

    async def infer(model: str, inputs: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
        outcome = await client.submit(model, dict(inputs))
        if not outcome.ok:
            raise InputError(f"{model}: {outcome.error_code}: {outcome.error}")
        outputs: Mapping[str, np.ndarray] = outcome.outputs
        return outputs

    try:
        return [await kind.run(part, infer) for part in parts]
    except (InputError, KindError) as exc:
        raise CliError(str(exc)) from None


def echo_records(records: list[dict[str, Any]]) -> None:
    for record in records:
        click.echo(json.dumps(record, ensure_ascii=False))
