"""What ``p2pai doctor`` reports: findings with their fixes, the report, its exit status."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

OK, INFO, WARN, PROBLEM = "ok", "info", "warn", "problem"
RANK = {OK: 0, INFO: 1, WARN: 2, PROBLEM: 3}


@dataclass(slots=True)
class Finding:
    check: str
    status: str
    summary: str
    fix: str = ""
    details: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(slots=True)
class Report:
    network: str
    interfaces: list[str]
    findings: list[Finding] = field(default_factory=list)

    def add(self, finding: Finding) -> None:
        self.findings.append(finding)

    @property
    def problems(self) -> int:
        return sum(1 for f in self.findings if f.status == PROBLEM)

    @property
    def warnings(self) -> int:
        return sum(1 for f in self.findings if f.status == WARN)

    def to_json(self) -> dict[str, Any]:
        return {
            "network": self.network,
            "interfaces": self.interfaces,
            "problems": self.problems,
            "warnings": self.warnings,
            "findings": [f.to_json() for f in self.findings],
        }

    def text(self) -> str:
        lines = [
            f"p2pai doctor: network {self.network!r}, interfaces "
            f"{', '.join(self.interfaces) or '(none)'}",
            "",
        ]
        for f in self.findings:
            lines.append(f"{f.status.upper():<8} {f.check:<10} {f.summary}")
            if f.fix:
                lines.append(f"{'':<8} {'':<10} fix: {f.fix}")
        lines.append("")
        if self.problems or self.warnings:
            lines.append(f"{self.problems} problem(s), {self.warnings} warning(s)")
        else:
            lines.append("no problem found")
        return "\n".join(lines)


def exit_code(report: Report) -> int:
    return 2 if report.problems else 0
