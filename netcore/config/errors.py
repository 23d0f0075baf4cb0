"""The one error type of the settings layer."""

from __future__ import annotations


class ConfigError(Exception):
    """An option value that cannot work; the message names the option and the fix."""
