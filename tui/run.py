"""``p2pai console``: run the console in this terminal, optionally with local child peers."""

from __future__ import annotations

import gc
import secrets
from dataclasses import replace

from netcore.config.settings import Config

from .app import P2PConsole
from .local_peers import LocalPeers


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
        network = config.network if config.network != "default" else f"local-{secrets.token_hex(4)}"
        config = replace(config, interfaces=("127.0.0.1",), network=network)
        local_peers = LocalPeers(local, network, log_level="info")
    try:
        if local_peers is not None:
            try:
                local_peers.start()
            except OSError as exc:
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
