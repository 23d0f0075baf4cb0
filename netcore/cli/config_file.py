"""The TOML config file: reading it, coercing its values, what the running command got from it.

One TOML file, by default ``<platform config dir>/p2pai/config.toml`` (``p2pai config show``
prints the path), or ``--config FILE`` / ``P2PAI_CONFIG``. Top-level keys apply to every
command that has them; a table named after a command (``[node]``, ``[console]``, ``[submit]``,
``[serve]``...) overrides them for that command::

    network = "lab"
    interface = ["192.168.1.20"]
    peer = ["tcp://10.0.5.7:7000#rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf"]
    metrics_port = 9464
    expired_after = 15.0

    [node]
    capacity = 4

Keys are the long option names with ``_`` for ``-`` (``--queue-limit`` is ``queue_limit``)
plus every setting of :class:`netcore.config.settings.Config` that has no option (``ping_interval``,
``evasive_after``, ``expired_after``, ``max_attempts``, ``models_dirs``...). Precedence, highest
first: a flag on the command line, then an environment variable (an option's own, such as
``P2PAI_NETWORK``, else ``P2PAI_<KEY>``), then the file, then the default. Click gives the
first two and the last for free; the file enters as the command's ``default_map``, so it
ranks exactly between the environment and the defaults (the options that do this:
:mod:`netcore.cli.config_options`; ``p2pai config show``: :mod:`netcore.cli.config_show`).
"""

from __future__ import annotations

import dataclasses
import os
import sys
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
import platformdirs

from netcore.config.errors import ConfigError
from netcore.config.settings import Config
from netcore.config.sizes import parse_size

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

CONFIG_ENV = "P2PAI_CONFIG"
META_FILE = "p2pai.config_file"
META_PATH = "p2pai.config_path"
META_REACH = "p2pai.reach"
META_LOG_FORMAT = "p2pai.log_format"

NOT_FILE_SETTINGS = frozenset({"caps", "advertise", "base_dir"})
"""Config fields each command decides itself (``--client-only``; short-lived clients; the
client commands' base dir, netcore.trust.keys)."""
TABLE_ONLY = {"serve": frozenset({"port", "host"})}
"""Keys a command takes only from its own table: ``[serve] port`` is the web server's port,
while a top-level ``port`` is the nodes'."""
SECTION_ALIASES = {"show": "node"}
"""``p2pai config show`` shows what ``p2pai node`` would run with."""


def default_config_path() -> Path:
    return Path(platformdirs.user_config_dir("p2pai", appauthor=False)) / "config.toml"


class ConfigFileError(click.ClickException):
    """One line on stderr, exit 1, no traceback (like ``cli.CliError``)."""

    def show(self, file: Any = None) -> None:
        click.echo(f"p2pai: error: {self.format_message()}", err=True)


@dataclass(slots=True)
class FileSettings:
    """What the config file (and ``P2PAI_*``) said for the running command."""

    path: Path
    found: bool
    explicit: bool
    values: dict[str, Any] = field(default_factory=dict)
    """Top-level keys merged with the command's table, as written."""
    sources: dict[str, str] = field(default_factory=dict)
    """Option name -> ``file`` or ``env``, for values that entered through ``default_map``."""


# --- reading -----------------------------------------------------------------------------


def read_config_file(path: Path, explicit: bool) -> tuple[dict[str, Any], bool]:
    """The parsed TOML (``{}`` when a default path does not exist) and whether it exists."""
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh), True
    except FileNotFoundError:
        if explicit:
            raise ConfigFileError(f"config file {path}: no such file") from None
        return {}, False
    except IsADirectoryError:
        raise ConfigFileError(f"config file {path}: is a directory") from None
    except PermissionError:
        raise ConfigFileError(f"config file {path}: permission denied") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigFileError(f"config file {path}: not valid TOML: {exc}") from None


def option_keys(command: click.Command) -> dict[str, click.Option]:
    """The config-file key of each option of ``command`` (``--queue-limit`` -> ``queue_limit``)."""
    keys: dict[str, click.Option] = {}
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        for opt in param.opts:
            if opt.startswith("--"):
                keys.setdefault(opt[2:].replace("-", "_"), param)
                break
    keys.pop("config", None)
    keys.pop("help", None)
    return keys


def all_commands(root: click.Command) -> dict[str, click.Command]:
    found: dict[str, click.Command] = {}
    if isinstance(root, click.Group):
        for name, sub in root.commands.items():
            found[name] = sub
            for deeper, cmd in all_commands(sub).items():
                found.setdefault(deeper, cmd)
    return found


def config_field_types() -> dict[str, Any]:
    """Config fields the file may set directly (those that no option sets), with their types."""
    hints = typing.get_type_hints(Config)
    return {
        f.name: hints.get(f.name, Any)
        for f in dataclasses.fields(Config)
        if f.name not in NOT_FILE_SETTINGS
    }


OPTION_FIELDS = {
    "interface": "interfaces", "port": "port", "network": "network", "data_dir": "data_dir",
    "name": "name", "capacity": "capacity", "queue_limit": "queue_limit",
    "task_timeout": "task_timeout", "peer": "static_peers", "metrics_port": "metrics_port",
    "metrics_host": "metrics_host", "mdns": "mdns", "model_quota": "model_quota",
    "trust_key": "trusted_keys", "relay": "relays",
}  # fmt: skip
"""Option keys that set a Config field of another name (or the same): the option wins."""


def field_only_settings() -> dict[str, Any]:
    covered = set(OPTION_FIELDS.values())
    return {k: t for k, t in config_field_types().items() if k not in covered}


def known_keys(root: click.Command) -> set[str]:
    keys = set(field_only_settings())
    for command in all_commands(root).values():
        keys.update(option_keys(command))
    return keys


# --- coercion ----------------------------------------------------------------------------

SIZE_SETTINGS = frozenset({"model_quota", "max_model_bytes", "max_input_bytes"})
"""Byte counts that may also be written with a unit (``model_quota = "4GiB"``)."""
TRUE = {"1", "true", "yes", "on"}
FALSE = {"0", "false", "no", "off"}


def coerce(key: str, kind: Any, value: Any, where: str) -> Any:
    """A file or env value as the Config field's type; one-line error naming ``where``."""
    origin = typing.get_origin(kind)
    args = typing.get_args(kind)

    def bad(expected: str) -> ConfigFileError:
        return ConfigFileError(f"{where}: {key} = {value!r}: expected {expected}")

    if (
        origin in (typing.Union, getattr(__import__("types"), "UnionType", None))
        and type(None) in args
    ):
        if value is None or (isinstance(value, str) and value.lower() in ("", "off", "none")):
            return None
        inner = [a for a in args if a is not type(None)]
        return coerce(key, inner[0], value, where)
    if kind is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in TRUE | FALSE:
            return value.lower() in TRUE
        raise bad("true or false")
    if kind is int and key in SIZE_SETTINGS and isinstance(value, str):
        try:
            return parse_size(value, key)
        except ConfigError:
            raise bad("a size such as 4GiB, 512MiB, 500MB or a number of bytes") from None
    if kind is int:
        if isinstance(value, str) and value.strip().lstrip("-").isdigit():
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise bad("an integer")
    if kind is float:
        if isinstance(value, str):
            try:
                return float(value)
            except ValueError:
                raise bad("a number") from None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise bad("a number")
    if kind is str:
        if isinstance(value, str):
            return value
        raise bad("a string")
    if kind is Path:
        if isinstance(value, str):
            return Path(value).expanduser()
        raise bad("a path")
    if origin is tuple:
        items: list[Any] = value.replace(",", " ").split() if isinstance(value, str) else value
        if not isinstance(items, list):
            items = [items]
        element: Any = args[0] if args else str
        return tuple(coerce(key, element, item, where) for item in items)
    return value


# --- what the running command got --------------------------------------------------------


def file_settings() -> FileSettings | None:
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return None
    found = ctx.meta.get(META_FILE)
    return found if isinstance(found, FileSettings) else None


def config_extras() -> dict[str, Any]:
    """Config keyword arguments from the file, ``P2PAI_<KEY>`` and the reach options, for
    ``make_config`` (whose own arguments win)."""
    ctx = click.get_current_context(silent=True)
    if ctx is None:
        return {}
    extras: dict[str, Any] = {}
    settings = file_settings()
    for key, kind in field_only_settings().items():
        env = f"P2PAI_{key.upper()}"
        if env in os.environ:
            extras[key] = coerce(key, kind, os.environ[env], f"environment {env}")
        elif settings is not None and key in settings.values:
            extras[key] = coerce(key, kind, settings.values[key], f"config file {settings.path}")
    reach = ctx.meta.get(META_REACH, {})
    for key in ("static_peers", "relays", "metrics_port", "metrics_host", "mdns"):
        if key in reach and reach[key] is not None:
            extras[key] = reach[key]
    if reach.get("metrics_port") is None and "metrics_port" in reach:
        extras["metrics_port"] = None
    return extras


def current_log_format() -> str:
    ctx = click.get_current_context(silent=True)
    fmt = ctx.meta.get(META_LOG_FORMAT) if ctx is not None else None
    return fmt if fmt in ("text", "json") else "text"
