"""The ``p2pai`` command: one module per command group, shared options in ``common``."""

from __future__ import annotations

import sys


def main() -> None:
    """The entry point. The commands load in about a second (onnxruntime, numpy, ZeroMQ; more
    on a Raspberry Pi): a Ctrl-C meanwhile ends in one line and exit 130, not a traceback."""
    try:
        from netcore.cli.root import main as run
    except KeyboardInterrupt:
        sys.stderr.write("p2pai: interrupted while starting: nothing was done\n")
        raise SystemExit(130) from None
    run()


__all__ = ["main"]
