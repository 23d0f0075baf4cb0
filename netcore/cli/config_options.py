"""The options that read the config file (``--config``) and that reach past the LAN (``--peer``,
``--mdns``, ``--metrics-port``, ``--metrics-host``, ``--log-format``), with their callbacks.

``--config`` is eager: its callback reads the file (netcore.cli.config_file) and hands its values,
and ``P2PAI_<KEY>``, to click as the command's ``default_map``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click

from netcore.cli.config_file import (
    CONFIG_ENV,
    META_FILE,
    META_LOG_FORMAT,
    META_PATH,
    META_REACH,
    SECTION_ALIASES,
    TABLE_ONLY,
    ConfigFileError,
    FileSettings,
    all_commands,
    default_config_path,
    known_keys,
    option_keys,
    read_config_file,
)
from netcore.config.settings import ConfigError


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
    from netcore.config.peers import parse_static_peer

    peers: list[str] = []
    for item in value:
        for text in item.replace(",", " ").split():
            try:
                peers.append(parse_static_peer(text).text)
            except ConfigError as exc:
                raise ConfigFileError(str(exc)) from None
    ctx.meta.setdefault(META_REACH, {})["static_peers"] = tuple(peers)


def _check_relay(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> None:
    from netcore.config.peers import parse_relay

    relays: list[str] = []
    for item in value:
        for text in item.replace(",", " ").split():
            try:
                relays.append(parse_relay(text).text)
            except ConfigError as exc:
                raise ConfigFileError(str(exc)) from None
    ctx.meta.setdefault(META_REACH, {})["relays"] = tuple(relays)


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
            "--relay",
            multiple=True,
            expose_value=False,
            callback=_check_relay,
            help="A relay, tcp://host:port#<relay key> (`p2pai relay` prints it): reach and be "
            "reached across NATs, and find this network's nodes there (repeatable; env "
            "P2PAI_RELAY). With --no-mdns: relays (and --peer) only.",
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
