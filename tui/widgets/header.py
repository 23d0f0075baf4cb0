"""The top line: who this node is, where it serves, on which network, with how many peers."""

from __future__ import annotations

from dataclasses import replace

from rich.text import Text
from textual.widgets import Static

from ..state import HeaderInfo


class HeaderBar(Static):
    """One line; redrawn only when what it shows changes."""

    DEFAULT_CSS = """
    HeaderBar {
        dock: top;
        height: 1;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    """

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__("", id=id)
        self._shown: HeaderInfo | None = None

    def show(self, info: HeaderInfo) -> None:
        if info == self._shown:
            return
        self._shown = replace(info)
        self.update(render_header(info))


STATUS_STYLE = {
    "running": "bold green",
    "starting": "bold yellow",
    "failed": "bold red",
    "stopping": "bold yellow",
    "stopped": "dim",
}


def render_header(info: HeaderInfo) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    text.append("p2pai ", style="bold")
    text.append("● ", style=STATUS_STYLE.get(info.status, ""))
    text.append(info.name or "-", style="bold")
    text.append(f"  {info.peer_id or '-'}", style="dim")
    text.append(f"  {info.endpoint or info.status}")
    text.append("  net ", style="dim")
    text.append(info.network, style="bold cyan")
    peers = f"{info.peers} peer" + ("" if info.peers == 1 else "s")
    text.append(f"  {peers}", style="bold" if info.peers else "yellow")
    if info.local:
        text.append(f" ({info.local} local)", style="dim")
    text.append("  │ model ", style="dim")
    text.append(info.model or "-", style="bold")
    if info.pinned:
        text.append("  pinned ", style="dim")
        text.append(info.pinned, style="bold magenta")
    if info.streaming:
        text.append("  ▶ streaming", style="bold green")
    if info.served:
        text.append(f"  served {info.served}", style="dim")
    return text
