"""``p2pai models list|add|remove|show`` and ``p2pai infer``: the model registry from the shell.

Registered on the ``p2pai`` group by :mod:`netcore.cli.root`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from netcore.cli.common import (
    CliError,
    client_config,
    common_options,
    data_dir_option,
    note_line,
    run_async,
    setup_logging,
    worker_wait_options,
)
from netcore.config.settings import Config, default_data_dir
from netcore.models.registry import ModelError, ModelSpec
from netcore.models.store import add_model, check_name, read_labels, remove_models, stored_models

_data_dir_option = data_dir_option("Keys, models and history")


def _registry(data_dir: Path) -> Any:
    from netcore.models.plugins import load_registry

    return load_registry(Config(data_dir=data_dir, name="p2pai"))


def _shape(spec_shape: tuple[int, ...] | None) -> str:
    return "[" + ", ".join("N" if d == -1 else str(d) for d in (spec_shape or ())) + "]"


def spec_json(spec: ModelSpec) -> dict[str, Any]:
    data = spec.wire_entry()
    data.update(
        source=spec.source or "user",
        path=str(spec.path),
        labels=spec.labels,
        description=spec.description,
        processing=spec.processing,
    )
    return data


def _describe(spec: ModelSpec) -> str:
    inputs = ", ".join(f"{s.name} {s.dtype} {_shape(s.shape)}" for s in spec.inputs)
    outputs = ", ".join(f"{s.name} {s.dtype}" for s in spec.outputs)
    return f"inputs {inputs}; outputs {outputs}"


@click.group()
def models() -> None:
    """The models this node holds: shipped, from plugins, and yours (in <data-dir>/models)."""


@models.command("list")
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
def list_models(data_dir: Path | None, as_json: bool) -> None:
    """List every model and version a node with this data dir holds."""
    registry = _registry(data_dir or default_data_dir())
    specs = sorted(registry.specs(), key=lambda s: (s.name, s.version, s.sha256))
    if as_json:
        click.echo(json.dumps([spec_json(s) for s in specs]))
        return
    if not specs:
        click.echo("no models; add one with `p2pai models add FILE.onnx`")
        return
    click.echo(f"{'NAME':<16} {'VERSION':<10} {'SHA256':<12}  {'SIZE':>10}  {'SOURCE':<8} INPUTS")
    for s in specs:
        inputs = ", ".join(f"{i.name} {i.dtype} {_shape(i.shape)}" for i in s.inputs)
        click.echo(
            f"{s.name[:16]:<16} {s.version[:10]:<10} {s.sha256[:12]}  {s.size:>10}  "
            f"{(s.source or 'user'):<8} {inputs}"
        )


@models.command("add")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False))
@click.option("--name", default=None, help="Model name [default: the file name without .onnx].")
@click.option("--version", "version", default="1", show_default=True, help="Version text.")
@click.option(
    "--labels",
    "labels_file",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Class labels: a JSON list or one label a line.",
)
@click.option(
    "--label-output",
    default=None,
    help="The output holding class labels [default: an output named 'label'].",
)
@click.option("--description", default="", help="One line about the model.")
@click.option(
    "--replace",
    is_flag=True,
    help="Take a name a shipped or plugin model holds: yours is then the one used by that name.",
)
@_data_dir_option
def add(
    file: Path,
    name: str | None,
    version: str,
    labels_file: Path | None,
    label_output: str | None,
    description: str,
    replace: bool,
    data_dir: Path | None,
) -> None:
    """Check FILE loads in onnxruntime, then copy it (and a manifest) into <data-dir>/models.

    Inputs and outputs are read from the ONNX graph. Two versions of one name coexist:
    each is stored as <name>-<sha256[:12]>.onnx. A name that a shipped or plugin model holds
    is refused unless --replace.
    """
    base_dir = data_dir or default_data_dir()
    models_dir = base_dir / "models"
    try:
        held = _held_by_others(base_dir, check_name(file.stem if name is None else name))
        if held is not None and not replace:
            raise CliError(
                f"model name {held.name!r} is taken by the {held.source} model {held.name} "
                f"{held.version}: choose another --name, or --replace to use yours by that name"
            )
        labels = read_labels(labels_file) if labels_file is not None else None
        spec = add_model(
            models_dir,
            file,
            name=name,
            version=version,
            labels=labels,
            label_output=label_output,
            description=description,
        )
    except ModelError as exc:
        raise CliError(str(exc)) from None
    except OSError as exc:
        raise CliError(f"cannot store the model in {models_dir}: {exc.strerror or exc}") from None
    click.echo(f"added {spec.name} {spec.version} (sha256 {spec.sha256[:12]}) to {models_dir}")
    click.echo(f"  {_describe(spec)}")
    if held is not None:
        click.echo(
            f"  {spec.name} now means this model; the {held.source} one "
            f"(sha256 {held.sha256[:12]}) is used again after `p2pai models remove {spec.name}`"
        )


def _held_by_others(base_dir: Path, name: str) -> ModelSpec | None:
    """The shipped or plugin model that holds ``name``, if one does."""
    registry = _registry(base_dir)
    return next((s for s in registry.specs() if s.name == name and s.source != "user"), None)


@models.command("remove")
@click.argument("name")
@click.option(
    "--sha256",
    "sha_prefix",
    default=None,
    help="Remove only the version with this sha256 (a prefix will do).",
)
@click.option("--all", "remove_all", is_flag=True, help="Remove every stored version of NAME.")
@_data_dir_option
def remove(name: str, sha_prefix: str | None, remove_all: bool, data_dir: Path | None) -> None:
    """Remove a model you added (or one fetched from a peer) from <data-dir>/models."""
    models_dir = (data_dir or default_data_dir()) / "models"
    stored = [
        s
        for _, s in stored_models(models_dir)
        if s.name == name and (not sha_prefix or s.sha256.startswith(sha_prefix.lower()))
    ]
    if not stored:
        held = [s for s in _registry(data_dir or default_data_dir()).specs() if s.name == name]
        if held:
            raise CliError(
                f"{name} is a {held[0].source or 'read-only'} model (in {held[0].path.parent}); "
                f"only models in {models_dir} can be removed"
            )
        raise CliError(
            f"no model {name!r}{' with that sha256' if sha_prefix else ''} in {models_dir}"
        )
    if len(stored) > 1 and not remove_all:
        versions = ", ".join(s.sha256[:12] for s in stored)
        raise CliError(
            f"{name} has {len(stored)} versions here ({versions}): pick one with --sha256, or --all"
        )
    for spec in remove_models(models_dir, name, sha_prefix):
        click.echo(f"removed {spec.name} {spec.version} (sha256 {spec.sha256[:12]})")


@models.command("show")
@click.argument("name")
@click.option(
    "--sha256", "sha_prefix", default=None, help="The version with this sha256 (a prefix will do)."
)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_data_dir_option
def show(name: str, sha_prefix: str | None, as_json: bool, data_dir: Path | None) -> None:
    """Show one model's manifest: versions, inputs, outputs, labels, where it lives."""
    registry = _registry(data_dir or default_data_dir())
    specs = [
        s
        for s in registry.specs()
        if s.name == name and (not sha_prefix or s.sha256.startswith(sha_prefix.lower()))
    ]
    if not specs:
        known = ", ".join(registry.names()) or "none"
        raise CliError(
            f"no model {name!r}{' with that sha256' if sha_prefix else ''} (models: {known})"
        )
    if as_json:
        click.echo(json.dumps([spec_json(s) for s in specs]))
        return
    for spec in specs:
        click.echo(f"{spec.name} {spec.version}  ({spec.source or 'user'})")
        click.echo(f"  sha256       {spec.sha256}")
        click.echo(f"  file         {spec.path} ({spec.size} bytes)")
        if spec.description:
            click.echo(f"  description  {spec.description}")
        for s in spec.inputs:
            click.echo(f"  input        {s.name} {s.dtype} {_shape(s.shape)}")
        for s in spec.outputs:
            mark = "  (labels)" if s.name == spec.label_output else ""
            click.echo(f"  output       {s.name} {s.dtype}{mark}")
        if spec.labels:
            click.echo(f"  labels       {', '.join(spec.labels)}")
        if spec.processing:
            click.echo(f"  processing   plugin {spec.processing}")


def named_result(model: str, result: Any, outcome: Any, registry: Any) -> Any:
    """``infer``'s result: a plugin's postprocess as it is; else the raw outputs plus, for a
    classifier, ``results``: each sample's ``label`` (its class name when the model has
    names, ``models add --labels``), ``class`` index and ``confidence``."""
    from netcore.models.plugins import processing_for
    from netcore.tasks.results import predictions, sample_results

    plugin = processing_for(model, registry)
    if plugin is not None and plugin.postprocess is not None:
        return result
    if not isinstance(result, dict) or "results" in result:
        return result
    outputs = outcome.outputs
    first = next(iter(outputs.values()), None)
    count = int(first.shape[0]) if first is not None and first.ndim else 1
    preds = predictions(outputs, outcome.label_output, count)
    if preds.classes is None:
        return result
    spec = registry.find(model)
    names = spec.labels if spec is not None else []
    found = []
    for s in sample_results(preds, 0, None, names):
        item = s.to_json()
        item.pop("probabilities", None)  # they are in the outputs already
        found.append(item)
    return {**result, "results": found}


@click.command()
@common_options
@click.argument("model")
@click.argument("raw_input", metavar="INPUT")
@worker_wait_options(
    task_timeout=30.0,
    task_timeout_help="Seconds one attempt may take (a worker may first fetch the model).",
)
@click.option(
    "--invert",
    is_flag=True,
    default=None,
    help="Images: dark ink on a light ground (a scan), turned light on dark for the model.",
)
def infer(
    interfaces: tuple[str, ...],
    port: int,
    network: str,
    data_dir: Path | None,
    name: str | None,
    log_level: str | None,
    model: str,
    raw_input: str,
    wait_peers: int,
    timeout: float,
    task_timeout: float,
    invert: bool | None,
) -> None:
    """Run MODEL once on a peer with INPUT and print the result as JSON.

    INPUT is JSON ('[5.1, 3.5, 1.4, 0.2]' is one sample; {"input name": values} for a model
    with several inputs), a .npy, .npz or .json file, @FILE (JSON text from a file) or -
    (JSON on stdin). A model with a plugin reads INPUT with the plugin's preprocess (which
    may take plain text: `p2pai infer double "4 5"`) and prints its postprocess; other models print their outputs with, for a classifier,
    `results`: each sample's label name, class and confidence. INPUT is
    checked against the model's inputs before it is sent; values convert to the model's
    dtype when nothing is lost.

    A model with a kind takes a FILE (docs/models.md): an image for digits (--invert for dark
    ink on white), a page for ocr, a .txt/.md file or a text for minilm; each record's result
    fields are printed as one JSON line (one per chunk of a long text).
    """
    from netcore.models.inputs import InputError, read_infer_input
    from netcore.models.locate import UnknownModel, find_workers, peer_signature
    from netcore.models.plugins import PluginError, finish, prepare
    from netcore.node import Node

    setup_logging(log_level or "warning")
    config = client_config(
        interfaces, port, network, data_dir, name, with_models=True, task_timeout=task_timeout
    )
    if _infer_kind(config, model, raw_input, wait_peers, timeout, {"invert": invert}):
        return
    try:
        raw = read_infer_input(raw_input)
    except InputError as exc:
        raise CliError(str(exc)) from None

    def fitted(registry: Any, signature: Any = None) -> dict[str, Any]:
        notes: list[str] = []
        try:
            inputs = prepare(model, raw, registry, signature, notes)
        except PluginError as exc:
            raise CliError(str(exc)) from None
        for note in notes:
            note_line(note)
        return inputs

    async def main() -> int:
        client = Node(config)
        holds = client.registry.find(model) is not None
        inputs = fitted(client.registry) if holds else None  # a bad input fails before connecting
        async with client:
            try:
                found = await find_workers(
                    client, wait_peers, timeout, model, client.registry.names(), holds
                )
            except UnknownModel as exc:
                raise CliError(str(exc)) from None
            if len(found) < wait_peers:
                raise CliError(
                    f"found {len(found)} of {wait_peers} worker(s) for model {model!r} on network "
                    f"{network!r} after {timeout:g}s"
                )
            if inputs is None:
                signature = peer_signature(found, model)
                if signature is None:
                    note_line(f"cannot check INPUT: no peer advertises the inputs of {model}")
                inputs = fitted(client.registry, signature)
            outcome = await client.submit(model, inputs)
        if not outcome.ok:
            raise CliError(f"{model}: {outcome.error_code}: {outcome.error}")
        try:
            result = finish(model, outcome.outputs, client.registry)
        except PluginError as exc:
            raise CliError(str(exc)) from None
        click.echo(json.dumps(named_result(model, result, outcome, client.registry)))
        return 0

    sys.exit(run_async(main()))


def _infer_kind(
    config: Config,
    model: str,
    raw_input: str,
    wait_peers: int,
    timeout: float,
    options: dict[str, Any],
) -> bool:
    """``infer MODEL FILE`` through the model's kind (netcore.cli.infer_file); False when
    INPUT is for the tensor path."""
    from netcore.cli.infer_file import echo_records, kind_input, read_item, run_parts
    from netcore.models.plugins import load_registry
    from netcore.node import Node

    found = kind_input(model, raw_input, load_registry(config), options)
    if found is None:
        return False
    kind, item = found
    parts = read_item(kind, item)

    async def main() -> int:
        client = Node(config)
        async with client:
            peers = await client.wait_for_peers(wait_peers, timeout)
            if len(peers) < wait_peers:
                raise CliError(
                    f"found {len(peers)} of {wait_peers} worker(s) on network "
                    f"{config.network!r} after {timeout:g}s"
                )
            records = await run_parts(client, kind, parts)
        echo_records(records)
        return 0

    sys.exit(run_async(main()))
