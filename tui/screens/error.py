"""Shown when the node cannot start: the one-line reason and what to do, never a traceback."""

from __future__ import annotations

from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

HINTS = (
    "Common causes: the port is taken by another program (use --port 0 or another port), "
    "the key file in the data directory is unreadable or corrupt (move it away and a new "
    "identity is created), or --interface names an address this machine does not have."
)


class NodeErrorScreen(ModalScreen[None]):
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("q", "app.quit", "Quit"),
        Binding("escape", "close", "Close"),
    ]

    def __init__(self, title: str, message: str) -> None:
        super().__init__()
        self.title_text = title
        self.message = message

    def compose(self) -> ComposeResult:
        with Vertical(id="error-body"):
            yield Static(Text(self.title_text, style="bold red"), id="error-title")
            yield Static(Text(self.message), id="error-message")
            yield Static(Text(HINTS, style="dim"), id="error-hints")
            yield Static(Text("q quits · esc closes this box", style="dim"))

    def action_close(self) -> None:
        self.dismiss(None)
