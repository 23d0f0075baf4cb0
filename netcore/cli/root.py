"""The ``p2pai`` group: every command group registered on it, then :func:`main`.

The commands live one group a module (``node``, ``submit``, ``peers``, ``models``, ``keys``,
``tasks``, ``demo``, ``reach``, ``bench``); ``console`` and ``serve`` come from the console
package through the entry point group ``p2pai.commands``, so netcore never imports the UI.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib.metadata import entry_points

import click

from netcore.bench.runner import register as register_bench
from netcore.cli.config_options import group_config_option
from netcore.cli.demo import demo
from netcore.cli.keys import keys, reputation
from netcore.cli.map import map_command
from netcore.cli.models import infer, models
from netcore.cli.node import node
from netcore.cli.peers import peers
from netcore.cli.reach import register_reach_commands
from netcore.cli.relay import relay
from netcore.cli.submit import submit
from netcore.cli.tasks import tasks

log = logging.getLogger("p2pai")

COMMAND_PLUGINS = "p2pai.commands"
"""Entry point group of commands other packages add (the console's ``console`` and ``serve``)."""


@click.group(invoke_without_command=True, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="p2p-ai-agents", prog_name="p2pai")
@group_config_option
@click.pass_context
def cli(ctx: click.Context) -> None:
    """p2pai: a peer-to-peer AI inference network for the machines you already have.

    Nodes find each other on the LAN by mDNS, talk over encrypted ZeroMQ (CURVE), and run
    ONNX models with onnxruntime. Start with `p2pai demo`, or `p2pai node` on each machine.
    """
    if ctx.invoked_subcommand is None:
        console = cli.commands.get("console")
        if console is None:
            raise click.UsageError("the console is not installed here; try `p2pai --help`")
        # Parse an empty command line so that P2PAI_* variables and defaults apply.
        with console.make_context("console", [], parent=ctx) as sub:
            console.invoke(sub)


for command in (node, submit, peers, demo, models, infer, keys, reputation, tasks, relay):
    cli.add_command(command)
cli.add_command(map_command)  # map: a folder, files or a table through a model (netcore.jobs)
register_reach_commands(cli)  # config show, doctor
register_bench(cli)  # bench: performance beside baselines
for plugin in entry_points(group=COMMAND_PLUGINS):
    try:
        cli.add_command(plugin.load(), plugin.name)
    except Exception as exc:  # a broken plugin must not take the other commands down
        log.warning("command %s (%s) not loaded: %s", plugin.name, plugin.value, exc)


def main() -> None:
    """Run the CLI. Click's own handling of a Ctrl-C that comes before a command has set up
    its own ("Aborted!", exit 1) is replaced by one line and exit 130, as everywhere else."""
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        code = cli.main(prog_name="p2pai", standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, EOFError):
            click.echo("p2pai: the input ended before an answer", err=True)
            sys.exit(1)
        click.echo("p2pai: interrupted before any work started: nothing was done", err=True)
        sys.exit(130)
    except KeyboardInterrupt:  # between click's handler and a command's own
        click.echo("p2pai: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
