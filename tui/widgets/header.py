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
        self.update(render_header(info, self._room()))

    def on_resize(self) -> None:
        if self._shown is not None:
            self.update(render_header(self._shown, self._room()))

    def _room(self) -> int | None:
        width = self.content_size.width
        return width if width > 0 else None


STATUS_STYLE = {
    "running": "bold green",
    "starting": "bold yellow",
    "failed": "bold red",
    "stopping": "bold yellow",
    "stopped": "dim",
}


def render_header(info: HeaderInfo, width: int | None = None) -> Text:
    """The header line; when ``width`` is too narrow for all of it, the least needed parts
    go first (the peer id, the endpoint, the network name...), so that the node's name, its
    peers and the model stay on screen at 80 columns."""
    parts = _header_parts(info)
    kept = list(parts)
    while width is not None and len(kept) > 1 and _joined(kept).cell_len > width:
        kept.remove(min(kept, key=lambda part: part[0]))
    return _joined(kept)


def _joined(parts: list[tuple[int, Text]]) -> Text:
    text = Text(no_wrap=True, overflow="ellipsis")
    for _, piece in parts:
        text.append_text(piece)
    return text


def _header_parts(info: HeaderInfo) -> list[tuple[int, Text]]:
    """(priority, text) in display order; a higher priority stays longer on a narrow screen."""
    parts: list[tuple[int, Text]] = []

    def part(priority: int, *pieces: tuple[str, str]) -> None:
        parts.append((priority, Text.assemble(*pieces)))

    part(
        100,
        ("p2pai ", "bold"),
        ("● ", STATUS_STYLE.get(info.status, "")),
        (info.name or "-", "bold"),
    )
    part(10, (f"  {info.peer_id or '-'}", "dim"))
    part(20, (f"  {info.endpoint or info.status}", ""))
    part(40, ("  net ", "dim"), (info.network, "bold cyan"))
    peers = f"{info.peers} peer" + ("" if info.peers == 1 else "s")
    part(90, (f"  {peers}", "bold" if info.peers else "yellow"))
    if info.local:
        part(50, (f" ({info.local} local)", "dim"))
    part(80, ("  │ model ", "dim"), (info.model or "-", "bold"))
    if info.pinned:
        part(70, ("  pinned ", "dim"), (info.pinned, "bold magenta"))
    if info.streaming:
        part(75, ("  ▶ streaming", "bold green"))
    if info.served:
        part(30, (f"  served {info.served}", "dim"))
    return parts
