"""The one place the report reaches into the analysis layer.

``explain`` runs ``diagnose`` itself, so one call gives the annotated lines, the phase
timeline, the findings and the metrics they were reasoned with: header, findings and
log in the page cannot disagree.
"""

from __future__ import annotations

from dataclasses import dataclass

from migtune.analysis.diagnose import Diagnosis
from migtune.analysis.explain import Explanation, explain
from migtune.analysis.metrics import Metrics
from migtune.model import Run


@dataclass(slots=True)
class Analysis:
    metrics: Metrics
    explanation: Explanation | None
    diagnosis: Diagnosis | None


def analyse(run: Run) -> Analysis:
    exp = explain(run)
    return Analysis(exp.diagnosis.metrics, exp, exp.diagnosis)
