"""``python -m netcore`` runs the CLI."""

from netcore.cli import main

main()
