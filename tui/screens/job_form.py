"""The job form (key j): a model, an input folder (typed, or picked in a directory tree) and
an output file; enter or Start runs ``map`` on the console's node (:mod:`tui.jobs`)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, DirectoryTree, Input, Select, Static

from ..jobs import JobRequest

DEFAULT_OUTPUT = "results.jsonl"


class JobFormScreen(ModalScreen[JobRequest | None]):
    """Dismisses with a :class:`JobRequest`, or None on escape."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel")]

    def __init__(self, models: list[str], start: Path, model: str | None = None) -> None:
        super().__init__()
        self.models = models
        self.start = start
        self.model = model if model in models else (models[0] if models else None)

    def compose(self) -> ComposeResult:
        with Vertical(id="job-form"):
            yield Static(Text("Run a job: a folder in, a results file out", style="bold"))
            if not self.models:
                yield Static(
                    "No model here reads files (digits, ocr and minilm do: "
                    "pip install 'p2pai[ocr,embed]' for the last two)."
                )
                yield Static(Text("esc closes", style="dim"))
                return
            yield Select(
                [(m, m) for m in self.models], value=self.model, allow_blank=False,
                id="job-model",
            )  # fmt: skip
            yield Input(str(self.start), placeholder="input folder", id="job-folder")
            yield DirectoryTree(self.start, id="job-tree")
            yield Input(DEFAULT_OUTPUT, placeholder="output: .jsonl, .csv or .parquet",
                        id="job-output")  # fmt: skip
            with Horizontal(id="job-buttons"):
                yield Checkbox("dark ink on white (images)", id="job-invert")
                yield Button("Start", variant="primary", id="job-start")
            yield Static(Text("enter starts · esc cancels", style="dim"))

    def on_mount(self) -> None:
        folders = self.query("#job-folder")
        if folders:
            folders.first().focus()

    def on_directory_tree_directory_selected(self, event: DirectoryTree.DirectorySelected) -> None:
        event.stop()
        self.query_one("#job-folder", Input).value = str(event.path)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self._start()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "job-start":
            self._start()

    def _start(self) -> None:
        model = self.query_one("#job-model", Select).value
        folder = self.query_one("#job-folder", Input).value.strip()
        output = self.query_one("#job-output", Input).value.strip() or DEFAULT_OUTPUT
        if not isinstance(model, str) or not folder:
            return
        invert = self.query_one("#job-invert", Checkbox).value
        self.dismiss(
            JobRequest(model, Path(folder).expanduser(), Path(output).expanduser(), invert)
        )

    def action_cancel(self) -> None:
        self.dismiss(None)
