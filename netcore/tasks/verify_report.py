"""Building a verifier for ``submit`` and the console, and the line ``submit`` prints about it
(:mod:`netcore.tasks.verify`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from netcore.tasks.spot_checks import SpotChecker


def build_verifier(
    node: Any,
    model: str,
    redundancy: int = 1,
    vote: str = "digest",
    spot_rate: float = 0.0,
    samples: np.ndarray | None = None,
    labels: np.ndarray | None = None,
    wait_s: float | None = None,
) -> Any:
    """``node`` itself when there is nothing to verify, else a :class:`Verifier` over it: blind
    checks at ``spot_rate`` (and probation), known-answer checks from ``samples`` with
    ``labels`` when there are labels; a vote waits up to ``wait_s`` for voters."""
    from netcore.tasks.verify import WAIT_S, Verifier

    if redundancy <= 1 and spot_rate <= 0:
        return node
    spot = None
    if spot_rate > 0 and samples is not None and labels is not None:
        spot = SpotChecker.from_reference(
            model, samples, labels, spot_rate, registry=getattr(node, "registry", None)
        )
    return Verifier(
        node,
        redundancy=redundancy,
        vote=vote,
        spot=spot,
        check_rate=spot_rate,
        wait_s=WAIT_S if wait_s is None else wait_s,
    )


def verify_summary(stats: Mapping[str, int], redundancy: int, vote: str) -> str:
    """One line for ``p2pai submit``'s summary (and the console's log)."""
    parts = []
    if redundancy > 1:
        parts.append(
            f"verified x{redundancy} by {vote} (quorum {redundancy // 2 + 1}): "
            f"{stats['accepted']} accepted, {stats['no_majority']} without majority, "
            f"{stats['too_few_workers']} too few voters, "
            f"votes lost {stats['votes_lost']}/{stats['votes_won'] + stats['votes_lost']}, "
            f"hosts voted {stats.get('hosts_voted', 0)}"
        )
    if stats.get("checked") or stats.get("mismatches") or stats.get("trials"):
        parts.append(
            f"blind checks: {stats.get('checked', 0)} checked, "
            f"{stats.get('mismatches', 0)} mismatches, "
            f"{stats.get('quarantined', 0)} workers quarantined, "
            f"{stats.get('reissued', 0)} re-issued"
        )
    if stats.get("waited"):
        parts.append(
            f"waited for voters: {stats['waited']} tasks ({stats.get('waiting', 0)} waiting)"
        )
    if stats.get("spot_checks"):
        parts.append(
            f"known-answer checks: {stats['spot_checks']} sent, {stats['spot_failed']} failed"
        )
    return "; ".join(parts)
