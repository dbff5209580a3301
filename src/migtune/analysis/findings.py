"""Types shared by explain and diagnose (and rendered by outputs and the report)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("info", "warning", "error")
PLATFORMS = ("proxmox", "libvirt", "qmp")


@dataclass(slots=True)
class Recommendation:
    setting: str  # e.g. "downtime-limit", "max-bandwidth", "migration-network"
    action: str  # one line in an operator's words
    commands: dict[str, list[str]] = field(default_factory=dict)  # platform -> exact commands
    notes: dict[str, str] = field(default_factory=dict)  # platform -> why it cannot / caveat
    # the simulated effect (``diagnose --predict``): effect text, ranges; None = not simulated
    predicted: dict[str, Any] | None = None


@dataclass(slots=True)
class Finding:
    id: str  # stable id, e.g. "not-converging" (a JSON contract)
    severity: str  # info | warning | error
    summary: str  # one line
    evidence: dict[str, Any] = field(default_factory=dict)  # numbers, in base units
    recommendations: list[Recommendation] = field(default_factory=list)
    detail: str = ""  # a short paragraph for text output


@dataclass(slots=True)
class ExplainedLine:
    line: int  # 1-based
    text: str
    notes: list[str] = field(default_factory=list)  # explanations, operator's words


@dataclass(slots=True)
class Phase:
    name: str  # setup | target-start | storage-copy | first-pass | dirty-passes | switchover | downtime | cleanup
    start: float | None  # seconds on the run's clock
    end: float | None
    note: str = ""

    @property
    def duration(self) -> float | None:
        if self.start is None or self.end is None:
            return None
        return self.end - self.start
