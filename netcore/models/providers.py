"""onnxruntime execution providers: pick the best one available, name it for ``accel``.

A node runs its models on the best provider its onnxruntime build offers (CUDA, ROCm,
CoreML, DirectML, else CPU), or on the one ``--provider`` forces. CPU always comes last in
the list handed to onnxruntime, and a provider that fails to load a model is dropped for
that model with a logged warning: the model then runs on CPU rather than not at all.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from netcore.config.settings import ConfigError

log = logging.getLogger("p2pai.providers")

CPU = "CPUExecutionProvider"

PROVIDERS: dict[str, str] = {
    "cuda": "CUDAExecutionProvider",
    "rocm": "ROCMExecutionProvider",
    "coreml": "CoreMLExecutionProvider",
    "directml": "DmlExecutionProvider",
    "cpu": CPU,
}
"""Short names (as ``--provider`` takes them and ``accel`` advertises them), best first."""

ALIASES = {"dml": "directml", "gpu": "cuda"}


class ProviderError(ConfigError):
    """A ``--provider`` value that names no provider at all."""


def available() -> list[str]:
    """The onnxruntime provider names this build offers."""
    import onnxruntime as ort

    return list(ort.get_available_providers())


def short_name(provider: str) -> str:
    """``CUDAExecutionProvider`` -> ``cuda``; an unlisted one loses its suffix, lower case."""
    for short, full in PROVIDERS.items():
        if full == provider:
            return short
    return provider.removesuffix("ExecutionProvider").lower()


def select(forced: str = "") -> list[str]:
    """The providers to hand onnxruntime, best first, always ending with CPU.

    ``forced`` is a short name (``cuda``, ``cpu``, ...). A name this build does not offer is
    not an error: the node warns and runs on CPU, so one command line serves mixed machines.
    """
    offered = available()
    if forced:
        key = ALIASES.get(forced.strip().lower(), forced.strip().lower())
        if key not in PROVIDERS:
            raise ProviderError(
                f"--provider {forced!r}: unknown; choose one of {', '.join(PROVIDERS)}"
            )
        wanted = PROVIDERS[key]
        if wanted not in offered:
            log.warning(
                "provider %s is not available in this onnxruntime build (it offers %s); using cpu",
                key,
                ", ".join(short_name(p) for p in offered) or "nothing",
            )
            return [CPU]
        chosen = [wanted]
    else:
        chosen = [full for full in PROVIDERS.values() if full in offered and full != CPU][:1]
    if CPU not in chosen:
        chosen.append(CPU)
    return chosen


def accel_names(providers: Sequence[str]) -> list[str]:
    """What ``hello`` advertises in ``accel``: the short names, best first."""
    return list(dict.fromkeys(short_name(p) for p in providers))


def create_session(
    source: str | bytes, options: Any, providers: Sequence[str], label: str
) -> tuple[Any, list[str]]:
    """An ``InferenceSession`` on ``providers``, falling back to CPU when one fails to load.

    Returns the session and the providers it actually uses. Errors of the CPU attempt itself
    (a bad model) propagate to the caller.
    """
    import onnxruntime as ort

    wanted = list(providers) or [CPU]
    if wanted != [CPU]:
        try:
            session = ort.InferenceSession(source, sess_options=options, providers=wanted)
        except Exception as exc:
            reason = " ".join(str(exc).split())[:200]
            log.warning(
                "model %s: provider %s failed to load (%s); falling back to cpu",
                label,
                short_name(wanted[0]),
                reason,
            )
        else:
            used = list(session.get_providers())
            if wanted[0] not in used:
                log.warning(
                    "model %s: provider %s did not load; running on %s",
                    label,
                    short_name(wanted[0]),
                    ", ".join(short_name(p) for p in used),
                )
            return session, used
    session = ort.InferenceSession(source, sess_options=options, providers=[CPU])
    return session, list(session.get_providers())
