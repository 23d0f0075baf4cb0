"""The model picker (``m``): models this node holds and those peers advertise; one the console
cannot feed (see :mod:`tui.samples`) is listed, greyed out, with the reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import OptionList, Static
from textual.widgets.option_list import Option


class ModelPickerScreen(ModalScreen[str | None]):
    """Dismisses with the chosen model name, or None on escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(
        self,
        local: list[str],
        remote: Mapping[str, int],
        current: str,
        unfed: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__()
        self.local = local
        self.remote = dict(remote)
        self.current = current
        self.unfed = dict(unfed or {})
        """Models the console cannot send tasks to, and why."""

    def compose(self) -> ComposeResult:
        names = sorted(set(self.local) | set(self.remote))
        options = []
        for name in names:
            label = Text(name, style="bold" if name == self.current else "")
            where = []
            if name in self.local:
                where.append("held here")
            if self.remote.get(name):
                count = self.remote[name]
                where.append(f"{count} peer" + ("" if count == 1 else "s"))
            label.append(f"  ({', '.join(where)})", style="dim")
            if name == self.current:
                label.append("  ◆ current", style="magenta")
            reason = self.unfed.get(name)
            if reason is not None:
                label.append(f"\n  cannot send: {reason}", style="dim italic")
            options.append(Option(label, id=name, disabled=reason is not None))
        with Vertical(id="picker-body"):
            yield Static(Text("Pick the model to dispatch", style="bold"), id="picker-title")
            if options:
                yield OptionList(*options, id="picker-list")
            else:
                yield Static("No models known yet: none here and no peer advertises one.")
            yield Static(Text("enter picks · esc cancels", style="dim"))

    def on_mount(self) -> None:
        lists = self.query(OptionList)
        if lists:
            option_list = lists.first()
            names = [o.id for o in option_list.options]
            if self.current in names:
                option_list.highlighted = names.index(self.current)
            option_list.focus()

    def on_option_list_option_selected(self, event: OptionList.OptionSelected) -> None:
        event.stop()
        self.dismiss(event.option.id)

    def action_cancel(self) -> None:
        self.dismiss(None)
