"""The line ``submit`` prints (and the console logs) about verification
(:mod:`netcore.tasks.verify`)."""

from __future__ import annotations

from collections.abc import Mapping


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
            + (
                f", {stats['votes_restored']} lost votes restored"
                if stats.get("votes_restored")
                else ""
            )
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
