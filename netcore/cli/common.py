"""What the commands share: options, config from flags, one-line errors, running a node's coroutine."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import click

from netcore.cli.config_file import config_extras, current_log_format
from netcore.cli.config_options import reach_options
from netcore.config.settings import Config, default_data_dir, default_name
from netcore.models.registry import ModelError
from netcore.observe.logs import configure as configure_logging

log = logging.getLogger("p2pai")

LAN_HINTS = (
    "check: the same --network name on every node? the same subnet? a firewall blocking "
    "UDP 5353 (mDNS) or the node's TCP port? multicast filtered by the Wi-Fi or switch?"
)

trust_option = click.option(
    "--trust", type=click.Choice(["open", "allowlist"]), default=None,
    help="open: any key may connect (still encrypted); allowlist: only keys trusted with "
    "`p2pai keys trust` connect and work for us [default: open; env P2PAI_TRUST].",
)  # fmt: skip
"""Not defaulted here, so that P2PAI_TRUST and the config file apply (netcore.trust.keys)."""


trust_key_option = click.option(
    "--trust-key", "trust_keys", multiple=True,
    help="A Z85 public key to trust for this run only, besides the trust list (repeatable; "
    "nothing is written; env P2PAI_TRUST_KEY).",
)  # fmt: skip
"""--trust-key: how ``console --local`` and its local peers trust each other."""


class ByteSize(click.ParamType):
    """A size in bytes: ``4GiB``, ``512MiB``, ``500MB`` or a number."""

    name = "SIZE"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        from netcore.config.errors import ConfigError
        from netcore.config.sizes import parse_size

        try:
            size = parse_size(value)
        except ConfigError:
            self.fail(f"{value!r} is not a size such as 4GiB, 512MiB or 500MB", param, ctx)
        if size <= 0:
            self.fail(f"{value!r}: must be more than 0 bytes", param, ctx)
        return size


model_quota_option = click.option(
    "--model-quota", type=ByteSize(), default="4GiB", show_default=True,
    help="Disk space all fetched models may take; the least recently used fetched ones make "
    "room, models added with `p2pai models add` never (env P2PAI_MODEL_QUOTA).",
)  # fmt: skip
"""--model-quota, for commands whose node fetches models (netcore.models.quota)."""


class CliError(click.ClickException):
    """One line on stderr, exit 1, no traceback."""

    def show(self, file: Any = None) -> None:
        click.echo(f"p2pai: error: {self.format_message()}", err=True)


def note_line(text: str) -> None:
    """One line on stderr about something done for the user (e.g. inputs reshaped)."""
    click.echo(f"p2pai: note: {text}", err=True)


def setup_logging(level: str) -> None:
    """Log to stderr at ``level`` in the ``--log-format`` of the running command."""
    configure_logging(level, current_log_format())


def common_options(func: Callable[..., Any]) -> Callable[..., Any]:
    """Options every node-hosting command shares."""
    options = [
        click.option(
            "--interface",
            "interfaces",
            multiple=True,
            envvar="P2PAI_INTERFACE",
            help="IPv4 address to serve on (repeatable; env P2PAI_INTERFACE). "
            "Default: every non-loopback interface that is up (the LAN).",
        ),
        click.option(
            "--port",
            type=click.IntRange(0, 65535),
            default=0,
            show_default=True,
            help="TCP port of the node's ROUTER; 0 picks a free one.",
        ),
        click.option(
            "--network",
            envvar="P2PAI_NETWORK",
            default="default",
            show_default=True,
            help="Swarm name; nodes only see peers with the same name (env P2PAI_NETWORK).",
        ),
        click.option(
            "--data-dir",
            type=click.Path(path_type=Path),
            envvar="P2PAI_DATA_DIR",
            default=None,
            help=f"Keys, models and history (env P2PAI_DATA_DIR) [default: {default_data_dir()}]",
        ),
        click.option("--name", default=None, help="Display name [default: the host name]."),
        click.option(
            "--log-level",
            type=click.Choice(["debug", "info", "warning", "error"]),
            default=None,
            help="Log level on stderr.",
        ),
    ]
    for option in reversed(options):
        func = option(func)
    return reach_options(func)  # --config, --peer, --mdns, --metrics-*, --log-format


def worker_wait_options(
    task_timeout: float, task_timeout_help: str
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """--wait-peers, --timeout and --task-timeout, for commands that send tasks."""
    options = [
        click.option(
            "--wait-peers",
            type=click.IntRange(1, 10_000),
            default=1,
            show_default=True,
            help="Workers to wait for before dispatching.",
        ),
        click.option(
            "--timeout",
            type=click.FloatRange(0.1, 3600),
            default=10.0,
            show_default=True,
            help="Seconds to wait for --wait-peers workers.",
        ),
        click.option(
            "--task-timeout",
            type=click.FloatRange(0.01, 3600),
            default=task_timeout,
            show_default=True,
            help=task_timeout_help,
        ),
    ]

    def apply(func: Callable[..., Any]) -> Callable[..., Any]:
        for option in reversed(options):
            func = option(func)
        return func

    return apply


def make_config(
    interfaces: tuple[str, ...],
    port: int,
    network: str,
    data_dir: Path | None,
    name: str | None,
    **extra: Any,
) -> Config:
    env_split: list[str] = []
    for item in interfaces:
        env_split.extend(part for part in item.replace(",", " ").split() if part)
    return Config(
        interfaces=tuple(env_split),
        port=port,
        network=network,
        data_dir=data_dir or default_data_dir(),
        name=name or default_name(),
        **{**config_extras(), **extra},  # the config file and P2PAI_* for the rest
    )


def split_keys(given: tuple[str, ...]) -> tuple[str, ...]:
    """``--trust-key`` values (from the environment: several, spaces or commas between)."""
    return tuple(k for item in given for k in item.replace(",", " ").split())


def client_config(
    interfaces: tuple[str, ...],
    port: int,
    network: str,
    data_dir: Path | None,
    name: str | None,
    *,
    with_models: bool,
    **extra: Any,
) -> Config:
    """A client-only node (``submit``, ``infer``, ``peers``): its own identity in
    ``<data-dir>/client``, the trust list and reputation of ``<data-dir>`` itself, and with
    ``with_models`` the models added there (workers fetch them from us)."""
    base_dir = data_dir or default_data_dir()
    if with_models:
        extra["models_dirs"] = (base_dir / "models",)
    return make_config(
        interfaces, port, network, base_dir / "client", name, caps=(), base_dir=base_dir, **extra
    )


def run_async(main: Coroutine[Any, Any, int]) -> int:
    """Run ``main`` with SIGINT/SIGTERM cancelling it cleanly."""
    from netcore.node import NodeStartError

    async def runner() -> int:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        stopping = False

        def on_signal() -> None:
            nonlocal stopping
            if not stopping:
                stopping = True
                task.cancel()

        for sig in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(sig, on_signal)
        try:
            return await main
        except asyncio.CancelledError:
            return 130 if not stopping else 0

    try:
        return asyncio.run(runner())
    except NodeStartError as exc:
        raise CliError(str(exc)) from None
    except ModelError as exc:
        raise CliError(str(exc)) from None


def capacity_option(help: str = "Tasks run at once [default: one per CPU core].") -> Any:
    """--capacity, for commands that run a worker."""
    return click.option("--capacity", type=click.IntRange(0, 1024), default=0, help=help)


provider_option = click.option(
    "--provider",
    envvar="P2PAI_PROVIDER",
    default="",
    help="onnxruntime execution provider: cuda, rocm, coreml, directml or cpu "
    "(env P2PAI_PROVIDER) [default: the best available].",
)
"""--provider, for commands that run models."""


def data_dir_option(help: str) -> Any:
    """--data-dir for commands that read the data dir without hosting a node."""
    return click.option(
        "--data-dir",
        type=click.Path(path_type=Path, file_okay=False),
        envvar="P2PAI_DATA_DIR",
        default=None,
        help=f"{help} (env P2PAI_DATA_DIR) [default: {default_data_dir()}]",
    )
