"""The console's commands, ``p2pai console`` and ``p2pai serve``, added to the ``p2pai`` group
through the entry point group ``p2pai.commands`` (pyproject.toml): netcore never imports the
console, the console brings its commands. Textual and the web server are imported only when
one of them runs, so ``p2pai node`` does not load them.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from netcore.cli.common import (
    CliError,
    capacity_option,
    common_options,
    make_config,
    model_quota_option,
    provider_option,
    setup_logging,
    trust_option,
)
from netcore.cli.config_file import current_log_format, file_settings
from netcore.cli.config_options import reach_options
from netcore.config.settings import ConfigError, default_data_dir


@click.command()
@common_options
@click.option(
    "--local",
    type=click.IntRange(0, 16),
    default=0,
    show_default=True,
    help="Also start N headless peers on 127.0.0.1 (a private swarm) that stop with the console.",
)
@capacity_option()
@provider_option
@trust_option
@model_quota_option
def console(
    interfaces: tuple[str, ...] = (),
    port: int = 0,
    network: str = "default",
    data_dir: Path | None = None,
    name: str | None = None,
    log_level: str | None = None,
    local: int = 0,
    capacity: int = 0,
    provider: str = "",
    trust: str | None = None,
    model_quota: int = 4 * 1024**3,
) -> None:
    """The terminal console: a node with live peers, tasks, latency and logs (the default command)."""
    config = make_config(
        interfaces,
        port,
        network,
        data_dir,
        name,
        capacity=capacity,
        provider=provider,
        model_quota=model_quota,
        **({"trust": trust} if trust else {}),
    )
    from tui.run import run_console  # Textual loads only now

    sys.exit(
        run_console(
            config, local=local, log_level=log_level or "info", log_format=current_log_format()
        )
    )


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address of the web server. Anyone who reaches it controls a node: "
    "keep it on loopback, or put it behind an authenticating proxy.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8000,
    show_default=True,
    help="Port of the web server (0 picks a free one).",
)
@click.option(
    "--interface",
    "interfaces",
    multiple=True,
    envvar="P2PAI_INTERFACE",
    help="IPv4 address each session's node serves on (repeatable; env "
    "P2PAI_INTERFACE) [default: the LAN].",
)
@click.option(
    "--network",
    envvar="P2PAI_NETWORK",
    default="default",
    show_default=True,
    help="Swarm name of the sessions' nodes (env P2PAI_NETWORK).",
)
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="P2PAI_DATA_DIR",
    default=None,
    help="Base directory: session n keeps its identity in "
    "<data-dir>/sessions/<n> (env P2PAI_DATA_DIR).",
)
@click.option("--name", default=None, help="Display name; session n is <name>-web<n>.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    default=None,
    help="Log level of the server and of each console's log pane.",
)
@capacity_option("Tasks each session's node runs at once [default: one per CPU core].")
@click.option(
    "--max-sessions",
    type=click.IntRange(1, 64),
    default=8,
    show_default=True,
    help="Browser sessions at once (each runs its own node).",
)
@reach_options
def serve(
    host: str,
    port: int,
    interfaces: tuple[str, ...],
    network: str,
    data_dir: Path | None,
    name: str | None,
    log_level: str | None,
    capacity: int,
    max_sessions: int,
) -> None:
    """The console in a web browser, at http://HOST:PORT/ (textual-serve).

    Each browser session runs `p2pai console` as its own process with its own node
    (its identity in <data-dir>/sessions/<n>, its node on a free port); closing the tab,
    or stopping this command, makes it leave the swarm gracefully.
    """
    # Imported here: the web server and Textual stay out of `import netcore`.
    from tui.serve import ConsoleServer, SessionSpec

    setup_logging(log_level or "info")
    config = make_config(interfaces, 0, network, data_dir, name, capacity=capacity)
    try:
        config.validate()
    except ConfigError as exc:
        raise CliError(str(exc)) from None
    spec = SessionSpec.from_config(
        config,
        base_dir=data_dir or default_data_dir(),
        log_level=log_level or "info",
        config_file=_config_file_argument(),
    )
    server = ConsoleServer(spec, host=host, port=port, max_sessions=max_sessions)
    try:
        code = server.run()
    except OSError as exc:
        raise CliError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    sys.exit(code)


def _config_file_argument() -> Path | None:
    settings = file_settings()
    if settings is not None and settings.found:
        return settings.path
    return None
