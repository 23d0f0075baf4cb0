"""The config file and the options that reach past the LAN (``--peer``, ``--metrics-port``...).

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
ranks exactly between the environment and the defaults.
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

from netcore.config.settings import Config, ConfigError

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
    "metrics_host": "metrics_host", "mdns": "mdns",
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


def _check_option(
    ctx: click.Context, option: click.Option, value: Any, where: str, key: str
) -> Any:
    if option.multiple and not isinstance(value, (list, tuple)):
        value = [value]
    try:
        option.type_cast_value(ctx, value)
    except click.BadParameter as exc:
        raise ConfigFileError(f"{where}: {key} = {value!r}: {exc.format_message()}") from None
    return value


# --- click integration -------------------------------------------------------------------


def _config_path(ctx: click.Context, value: Path | None) -> tuple[Path, bool]:
    if value is not None:
        return Path(value).expanduser(), True
    chosen = ctx.meta.get(META_PATH)
    if chosen is not None:
        return chosen, True
    env = os.environ.get(CONFIG_ENV)
    if env:
        return Path(env).expanduser(), True
    return default_config_path(), False


def _on_group_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    if value is not None:
        ctx.meta[META_PATH] = Path(value).expanduser()


def _on_config(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    """Eager: read the file, then hand its values (and ``P2PAI_<KEY>``) to click as defaults."""
    path, explicit = _config_path(ctx, value)
    data, found = read_config_file(path, explicit)
    root = ctx.find_root().command
    commands = all_commands(root)
    known = known_keys(root)
    top: dict[str, Any] = {}
    for key, item in data.items():
        if isinstance(item, dict):
            if key not in commands:
                raise ConfigFileError(
                    f"config file {path}: unknown table [{key}]; tables are command names "
                    f"({', '.join(sorted(commands))})"
                )
            for sub in item:
                if sub not in known:
                    raise ConfigFileError(f"config file {path}: [{key}] unknown setting {sub!r}")
        elif key not in known:
            raise ConfigFileError(
                f"config file {path}: unknown setting {key!r} (`p2pai config show` lists them)"
            )
        else:
            top[key] = item
    name = ctx.command.name or ""
    section = data.get(SECTION_ALIASES.get(name, name))
    shared = {k: v for k, v in top.items() if k not in TABLE_ONLY.get(name, ())}
    merged = {**shared, **(section if isinstance(section, dict) else {})}
    options = option_keys(ctx.command)
    defaults: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, item in merged.items():
        option = options.get(key)
        if option is not None and option.name:
            defaults[option.name] = _check_option(ctx, option, item, f"config file {path}", key)
            sources[option.name] = "file"
    for key, option in options.items():
        env = f"P2PAI_{key.upper()}"
        if option.envvar or env not in os.environ or not option.name:
            continue  # an option with its own env var: click reads it, above the file
        raw = os.environ[env]
        given: Any = raw.replace(",", " ").split() if option.multiple else raw
        defaults[option.name] = _check_option(ctx, option, given, f"environment {env}", key)
        sources[option.name] = "env"
    ctx.default_map = {**(ctx.default_map or {}), **defaults}
    ctx.meta[META_FILE] = FileSettings(path, found, explicit, merged, sources)


def _store(key: str) -> Any:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        ctx.meta.setdefault(META_REACH, {})[key] = value
        return value

    return callback


def _on_log_format(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    ctx.meta[META_LOG_FORMAT] = value or "text"


def _check_peer(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    from netcore.net.reach import parse_static_peer

    peers: list[str] = []
    for item in value:
        for text in item.replace(",", " ").split():
            try:
                peers.append(parse_static_peer(text).text)
            except ConfigError as exc:
                raise ConfigFileError(str(exc)) from None
    ctx.meta.setdefault(META_REACH, {})["static_peers"] = tuple(peers)


class MetricsPort(click.ParamType):
    name = "PORT|off"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or (isinstance(value, str) and value.lower() in ("off", "none", "")):
            return None
        try:
            port = int(value)
        except (TypeError, ValueError):
            self.fail(f"{value!r} is not a port number or 'off'", param, ctx)
        if not 0 <= port <= 65535:
            self.fail(f"{port} is not in the range 0-65535", param, ctx)
        return port


def group_config_option(func: Any) -> Any:
    """``p2pai --config FILE COMMAND``."""
    return click.option(
        "--config",
        type=click.Path(path_type=Path, dir_okay=False),
        default=None,
        expose_value=False,
        is_eager=True,
        callback=_on_group_config,
        help=f"TOML config file [default: {default_config_path()}; env {CONFIG_ENV}].",
    )(func)


def reach_options(func: Any) -> Any:
    """Options every node-hosting command gets besides ``common_options``' own. They are not
    passed to the command function: :func:`config_extras` hands them to ``make_config``."""
    options = [
        click.option(
            "--config",
            type=click.Path(path_type=Path, dir_okay=False),
            default=None,
            expose_value=False,
            is_eager=True,
            callback=_on_config,
            help=f"TOML config file [default: {default_config_path()}; env {CONFIG_ENV}].",
        ),
        click.option(
            "--peer",
            multiple=True,
            expose_value=False,
            callback=_check_peer,
            help="A static peer, tcp://host:port#<z85 key>, for where multicast does not pass "
            "(repeatable; env P2PAI_PEER).",
        ),
        click.option(
            "--mdns/--no-mdns",
            default=True,
            expose_value=False,
            callback=_store("mdns"),
            help="Find peers with mDNS [default: on]; off, only static and shared peers.",
        ),
        click.option(
            "--metrics-port",
            type=MetricsPort(),
            default=None,
            expose_value=False,
            callback=_store("metrics_port"),
            help="Serve Prometheus /metrics on this port (0 picks one) [default: off].",
        ),
        click.option(
            "--metrics-host",
            default="127.0.0.1",
            show_default=True,
            expose_value=False,
            callback=_store("metrics_host"),
            help="Address of the /metrics endpoint (it names peers: keep it private).",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default=None,
            expose_value=False,
            callback=_on_log_format,
            help="Log lines as text or one JSON object a line [default: text].",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return func


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
    for key in ("static_peers", "metrics_port", "metrics_host", "mdns"):
        if key in reach and reach[key] is not None:
            extras[key] = reach[key]
    if reach.get("metrics_port") is None and "metrics_port" in reach:
        extras["metrics_port"] = None
    return extras


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


def current_log_format() -> str:
    ctx = click.get_current_context(silent=True)
    fmt = ctx.meta.get(META_LOG_FORMAT) if ctx is not None else None
    return fmt if fmt in ("text", "json") else "text"


# --- p2pai config show -------------------------------------------------------------------


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
