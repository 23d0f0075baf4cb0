"""``p2pai console``: run the console in this terminal, optionally with local child peers."""

from __future__ import annotations

import gc
import secrets
from dataclasses import replace

from netcore.config.settings import Config
from netcore.net.identity import IdentityError, load_or_create
from netcore.trust.keys import base_dir_of, local_keys

from .app import P2PConsole
from .local_peers import LocalPeers


def local_session(config: Config, count: int) -> tuple[Config, LocalPeers]:
    """The console's config and ``count`` local peers (not started yet) that trust each other.

    The console goes onto 127.0.0.1 and their network (a private random name unless
    ``--network`` named one). Its keys (the node's and its base dir's client identity) are
    handed to the children with ``--trust-key``; the children's, made now, join its
    ``trusted_keys``: trust for this session only, so that ``--trust allowlist`` works
    without ``p2pai keys trust`` and without writing any trust list.
    Raises :class:`IdentityError` when the console's identity cannot be read or made.
    """
    network = config.network if config.network != "default" else f"local-{secrets.token_hex(4)}"
    own = {load_or_create(config.data_dir, config.name).public_text}
    own |= local_keys(base_dir_of(config))
    local_peers = LocalPeers(
        count,
        network,
        log_level="info",
        trust=config.trust,
        trusted_keys=tuple(sorted(own)),
        model_quota=config.model_quota,
    )
    try:
        children = tuple(k for k in local_peers.identity_keys() if k not in config.trusted_keys)
    except (OSError, IdentityError):
        local_peers.stop()  # removes the private dir it made
        raise
    config = replace(
        config,
        interfaces=("127.0.0.1",),
        network=network,
        trusted_keys=(*config.trusted_keys, *children),
    )
    return config, local_peers


def run_console(
    config: Config, local: int = 0, log_level: str = "info", log_format: str = "text"
) -> int:
    """Run the console in this terminal until the user quits; returns the exit code.

    With ``local`` > 0 it first starts that many headless peers on 127.0.0.1 as child
    processes, forces its own node onto 127.0.0.1 and onto their network (a private random
    name unless ``--network`` named one), and stops the children however the console ends.
    """
    from netcore.node import Node

    local_peers: LocalPeers | None = None
    if local > 0:
        try:
            config, local_peers = local_session(config, local)
        except IdentityError as exc:
            print(f"p2pai: error: {exc}")
            return 1
    try:
        if local_peers is not None:
            try:
                local_peers.start()
            except (OSError, IdentityError) as exc:
                print(f"p2pai: error: cannot start local peers: {exc}")
                return 1
        app = P2PConsole(
            Node(config),
            log_level=log_level,
            local_peers=local_peers,
            handle_signals=True,
            log_format=log_format,
        )
        # Everything imported so far lives as long as the process: keep it out of the
        # collector's full passes, which otherwise stall the UI for tens of ms each.
        gc.collect()
        gc.freeze()
        app.run()
        return app.return_code or 0
    finally:
        if local_peers is not None:
            local_peers.stop()
