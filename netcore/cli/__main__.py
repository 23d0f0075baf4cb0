"""``python -m netcore.cli`` runs the CLI (how the console starts its local peers)."""

from netcore.cli import main

main()
