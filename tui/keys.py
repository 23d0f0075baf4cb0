"""What the console's keys do, in words: the help screen's lines and the palette's commands.

The keys themselves are the App's ``BINDINGS``; each palette entry names the action its key
runs, so a command and its key always do the same.
"""

from __future__ import annotations

from dataclasses import dataclass


def key_help(burst: int, verify_redundancy: int) -> list[tuple[str, str]]:
    """Each key and what it does, for the help screen (?)."""
    return [
        ("d", "dispatch one task: a random sample of the model (its own, or made to fit it)"),
        ("b", f"dispatch a burst of {burst} tasks"),
        ("r", "start or stop a steady stream of tasks"),
        ("m", "pick the model (held here or advertised by peers)"),
        ("p", "pin dispatch to the peer selected in the Peers table (again to unpin)"),
        ("c", "clear finished tasks from the table (totals stay)"),
        (
            "v",
            f"verified mode: each task on {verify_redundancy} workers, majority label wins "
            "(on both when only 2 are there)",
        ),
        ("j", "run a job: a model over a folder of files into a results file (Jobs pane)"),
        ("l", "focus the logs (scroll them with the arrows)"),
        ("tab", "move focus between the tables and the logs"),
        ("?", "this help"),
        ("q", "quit: leave the network gracefully (peers see a goodbye at once)"),
    ]


@dataclass(frozen=True, slots=True)
class PaletteEntry:
    """One of the console's commands in the palette (ctrl+p)."""

    title: str
    help: str
    action: str
    """The app's action it runs: ``"burst"`` is ``action_burst``, the key b."""


def palette_entries(burst: int, verify_redundancy: int) -> tuple[PaletteEntry, ...]:
    """The console's own commands, in the order the palette lists them."""
    return (
        PaletteEntry(
            "Dispatch one task", "Send a random sample of the model to a worker (d)", "dispatch"
        ),
        PaletteEntry(f"Dispatch a burst of {burst}", f"Send {burst} tasks at once (b)", "burst"),
        PaletteEntry(
            "Toggle the task stream", "Start or stop a steady stream of tasks (r)", "toggle_stream"
        ),
        PaletteEntry("Pick the model", "Choose which model tasks use (m)", "pick_model"),
        PaletteEntry(
            "Pin to the selected peer",
            "Send tasks only to the selected peer, or unpin (p)",
            "toggle_pin",
        ),
        PaletteEntry(
            "Clear finished tasks",
            "Remove done and failed tasks from the table (c)",
            "clear_finished",
        ),
        PaletteEntry(
            "Toggle verified mode",
            f"Run each task on {verify_redundancy} workers (or both of 2) and take the majority "
            "answer (v)",
            "toggle_verify",
        ),
        PaletteEntry(
            "Run a job",
            "A model over a folder of files into a results file, shown in the Jobs pane (j)",
            "new_job",
        ),
        PaletteEntry("Focus the logs", "Move focus to the log pane (l)", "focus_logs"),
        PaletteEntry("Help", "Keys and what the panes show (?)", "help"),
    )


QUIT = PaletteEntry("Quit", "Leave the network gracefully and quit (q)", "quit")
"""Replaces Textual's own Quit, so the palette leaves the network like q does."""
