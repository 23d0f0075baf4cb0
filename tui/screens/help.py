"""The help screen (``?``): every key, and what the panes show."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

PANES = (
    (
        "Peers",
        "every node on this network: state (alive, evasive = silent for a while, "
        "quarantined = never used: its reputation fell), round trip, load (in flight / "
        "capacity), tasks done for us, success rate, reputation score (0-1), uptime",
    ),
    (
        "Tasks",
        "what this console dispatched, newest first: where it ran, how long it took, "
        "the predicted digit and its confidence (✓ when it matches the sample's label)",
    ),
    ("Latency", "recent round trips, their p50 and p99, and finished tasks per second"),
    ("Logs", "the node's log"),
)


def help_text(keys: Sequence[tuple[str, str]]) -> Table:
    table = Table.grid(padding=(0, 2))
    table.add_column(style="bold cyan", justify="right", no_wrap=True)
    table.add_column()
    for key, description in keys:
        table.add_row(key, description)
    table.add_row("", "")
    table.add_row("ctrl+p", "command palette: the same actions by name")
    table.add_row("", "")
    for name, description in PANES:
        table.add_row(Text(name, style="bold"), description)
    return table


class HelpScreen(ModalScreen[None]):
    """Lists the keys given to it (the app passes its BINDINGS, so the two never disagree)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape,question_mark,q", "dismiss", "Close", key_display="esc"),
    ]

    def __init__(self, keys: Sequence[tuple[str, str]]) -> None:
        super().__init__()
        self.keys = list(keys)

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-body"):
            yield Static(Text("p2pai console: keys", style="bold"), id="help-title")
            yield Static(help_text(self.keys), id="help-keys")
            yield Static(Text("esc, ? or q closes this screen", style="dim"), id="help-close")
