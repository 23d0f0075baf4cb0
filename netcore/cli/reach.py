"""Commands for reach and observability: ``config show`` and ``doctor``.

Registered on the ``p2pai`` group by :func:`register_reach_commands` (:mod:`netcore.cli.root`).
``serve`` (the console in a browser) comes with the console: :mod:`tui.commands`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click


def register_reach_commands(cli: click.Group) -> None:
    from netcore.cli.common import common_options, make_config, run_async, setup_logging

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
        from netcore.cli.config_show import describe, foreign_option_settings, to_toml

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
        entries, each --relay (its key, round trip, whether this machine looks public or
        NATed from there, and whether hole punching can work: does the NAT keep source
        ports), clocks and firewalls. Exit status: 0 no problem, 2 problems found.
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
