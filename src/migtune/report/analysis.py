"""The one place the report reaches into the analysis layer (explain, diagnose, metrics).

Each analysis module is looked up before it is imported, so the report still renders
(charts, tables, the raw log) in a build where a module is missing; an error *inside*
a module that exists is a bug and is not hidden.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any

from migtune.analysis.metrics import Metrics, compute
from migtune.model import Run


@dataclass(slots=True)
class Analysis:
    metrics: Metrics
    explanation: Any | None  # migtune.analysis.explain.Explanation
    diagnosis: Any | None  # migtune.analysis.diagnose.Diagnosis


def _call(module: str, func: str, run: Run) -> Any | None:
    if importlib.util.find_spec(module) is None:
        return None
    return getattr(importlib.import_module(module), func)(run)


def analyse(run: Run) -> Analysis:
    explanation = _call("migtune.analysis.explain", "explain", run)
    diagnosis = getattr(explanation, "diagnosis", None)
    if diagnosis is None:
        diagnosis = _call("migtune.analysis.diagnose", "diagnose", run)
    # Prefer the figures the diagnosis reasoned with, so header and findings agree.
    metrics = getattr(diagnosis, "metrics", None)
    if not isinstance(metrics, Metrics):
        metrics = compute(run)
    return Analysis(metrics, explanation, diagnosis)
