"""Commands for reach and observability: ``config show``, ``doctor`` and ``serve``.

Registered on the ``p2pai`` group by :func:`register_reach_commands` (cli.py calls it), so that
cli.py itself only grows by two lines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def register_reach_commands(cli: click.Group) -> None:
    from netcore.cli.root import CliError, common_options, make_config, run_async, setup_logging
    from netcore.config.file import reach_options
    from netcore.config.settings import ConfigError, default_data_dir

    # --- p2pai config show -------------------------------------------------------------

    @click.group("config")
    def config_group() -> None:
        """The config file: `p2pai config show` prints the effective settings."""

    @config_group.command("show")
    @common_options
    @click.option("--json", "as_json", is_flag=True, help="Print JSON: each value and its source.")
    @click.pass_context
    def show(
        ctx: click.Context,
        interfaces: tuple[str, ...],
        port: int,
        network: str,
        data_dir: Path | None,
        name: str | None,
        log_level: str | None,
        as_json: bool,
        **more: Any,
    ) -> None:
        """Print the settings `p2pai node` would run with, and where each comes from.

        Precedence: a flag, then the environment (P2PAI_*), then the config file, then the
        default. The output (without --json) is itself a valid config file.
        """
        from netcore.config.file import describe, foreign_option_settings, to_toml

        config = make_config(
            interfaces, port, network, data_dir, name, **foreign_option_settings(ctx)
        )
        description = describe(ctx, config)
        if as_json:
            click.echo(json.dumps(description, indent=2))
        else:
            click.echo(to_toml(description))

    cli.add_command(config_group)

    # --- p2pai doctor ------------------------------------------------------------------

    @click.command()
    @common_options
    @click.option(
        "--timeout",
        type=click.FloatRange(0.5, 60),
        default=3.0,
        show_default=True,
        help="Seconds to listen for mDNS answers and connections.",
    )
    @click.option("--json", "as_json", is_flag=True, help="Print the findings as JSON.")
    def doctor(
        interfaces: tuple[str, ...],
        port: int,
        network: str,
        data_dir: Path | None,
        name: str | None,
        log_level: str | None,
        timeout: float,
        as_json: bool,
        **more: Any,
    ) -> None:
        """Explain why no peers are seen, and what to do about each finding.

        Checks the interfaces, multicast, the answers to our mDNS query (other network
        names, duplicate ids), TCP connections to the nodes found and to static --peer
        entries, clocks and firewalls. Exit status: 0 no problem, 2 problems found.
        """
        from netcore.doctor import exit_code, run_doctor

        setup_logging(log_level or "error")
        config = make_config(interfaces, port, network, data_dir, name, caps=(), advertise=False)

        async def main() -> int:
            report = await run_doctor(config, timeout)
            if as_json:
                click.echo(json.dumps(report.to_json()))
            else:
                click.echo(report.text())
            return exit_code(report)

        sys.exit(run_async(main()))

    cli.add_command(doctor)

    # --- p2pai serve -------------------------------------------------------------------

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
    @click.option(
        "--capacity",
        type=click.IntRange(0, 1024),
        default=0,
        help="Tasks each session's node runs at once [default: one per CPU core].",
    )
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

    cli.add_command(serve)


def _config_file_argument() -> Path | None:
    from netcore.config.file import file_settings

    settings = file_settings()
    if settings is not None and settings.found:
        return settings.path
    return None
