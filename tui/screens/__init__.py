"""Modal screens: help, model picker, node error."""

from __future__ import annotations

from .error import NodeErrorScreen
from .help import HelpScreen
from .job_form import JobFormScreen
from .model_picker import ModelPickerScreen

__all__ = ["HelpScreen", "JobFormScreen", "ModelPickerScreen", "NodeErrorScreen"]
