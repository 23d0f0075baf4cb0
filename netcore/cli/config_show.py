"""``p2pai config show``: every setting ``p2pai node`` would use and where its value came from,
as JSON or as a config file one could save."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from netcore.cli.config_file import (
    META_LOG_FORMAT,
    OPTION_FIELDS,
    coerce,
    config_field_types,
    default_config_path,
    field_only_settings,
    file_settings,
    option_keys,
)
from netcore.config.settings import Config


def foreign_option_settings(ctx: click.Context) -> dict[str, Any]:
    """Config kwargs for options of *other* commands (``[node] capacity``...), from the
    environment or the file: what ``config show`` needs to show ``p2pai node``'s view."""
    settings = file_settings()
    own = option_keys(ctx.command)
    types = config_field_types()
    extras: dict[str, Any] = {}
    for key, field_name in OPTION_FIELDS.items():
        if key in own or field_name not in types:
            continue
        env = f"P2PAI_{key.upper()}"
        if env in os.environ:
            extras[field_name] = coerce(
                key, types[field_name], os.environ[env], f"environment {env}"
            )
        elif settings is not None and key in settings.values:
            value = settings.values[key]
            extras[field_name] = coerce(
                key, types[field_name], value, f"config file {settings.path}"
            )
    return extras


def describe(ctx: click.Context, config: Config) -> dict[str, Any]:
    """Every setting ``p2pai node`` would use, with where its value came from."""
    settings = file_settings()
    sources = settings.sources if settings else {}
    rows: dict[str, dict[str, Any]] = {}
    options = option_keys(ctx.command)

    def source_of_option(key: str) -> str:
        option = options.get(key)
        if option is None or not option.name:
            return "default"
        got = ctx.get_parameter_source(option.name)
        if got is click.core.ParameterSource.COMMANDLINE:
            return "flag"
        if got is click.core.ParameterSource.ENVIRONMENT:
            return "env"
        if got is click.core.ParameterSource.DEFAULT_MAP:
            return sources.get(option.name, "file")
        return "default"

    for key, field_name in OPTION_FIELDS.items():
        value = getattr(config, field_name)
        source = source_of_option(key)
        if source == "default" and key not in options:  # an option of another command
            if f"P2PAI_{key.upper()}" in os.environ:
                source = "env"
            elif settings and key in settings.values:
                source = "file"
        rows[key] = {"value": _plain(value), "source": source}
    for key in field_only_settings():
        env = f"P2PAI_{key.upper()}"
        if env in os.environ:
            source = "env"
        elif settings is not None and key in settings.values:
            source = "file"
        else:
            source = "default"
        rows[key] = {"value": _plain(getattr(config, key)), "source": source}
    for key in ("log_level", "log_format"):
        value = ctx.params.get(key) if key in ctx.params else ctx.meta.get(META_LOG_FORMAT)
        rows[key] = {"value": value or ("info" if key == "log_level" else "text"),
                     "source": source_of_option(key)}  # fmt: skip
    return {
        "config_file": str(settings.path) if settings else str(default_config_path()),
        "config_file_found": bool(settings and settings.found),
        "settings": rows,
    }


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def to_toml(description: dict[str, Any]) -> str:
    """``p2pai config show``: a config file one could save, each line saying its source."""
    found = "found" if description["config_file_found"] else "not found"
    lines = [
        f"# config file: {description['config_file']} ({found})",
        "# what `p2pai node` would run with; precedence: flag > env > file > default",
    ]
    for key, row in description["settings"].items():
        value = row["value"]
        if value is None:
            lines.append(f"# {key} = (off)  # {row['source']}")
            continue
        lines.append(f"{key} = {_toml_value(value)}  # {row['source']}")
    return "\n".join(lines)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
