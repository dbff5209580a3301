"""JSON output of ``diagnose --json`` and ``explain --json`` (a contract: see
the README, "JSON output").  Keys are only ever added, never renamed or dropped.
"""

from __future__ import annotations

import json
import math
import uuid
from typing import IO, Any

from migtune import __version__
from migtune.analysis.diagnose import Diagnosis
from migtune.analysis.explain import Explanation
from migtune.analysis.findings import PLATFORMS, ExplainedLine, Finding, Recommendation
from migtune.analysis.metrics import Metrics


def clean(value: Any) -> Any:
    """JSON-safe: non-finite floats become null (JSON has no Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000.0, 3)


def _round(x: float | None, nd: int = 1) -> float | None:
    return None if x is None else round(x, nd)


def metrics_dict(m: Metrics) -> dict[str, Any]:
    return {
        # contract keys (issue 2)
        "ram_bytes": m.ram_bytes,
        "transferred_bytes": m.transferred_bytes,
        "duration_s": m.duration_s,
        "downtime_ms": _ms(m.downtime_s),
        "throughput_bytes_per_s": _round(m.throughput),
        "dirty_rate_bytes_per_s": _round(m.dirty_rate),
        "xbzrle_cache_miss_rate": m.xbzrle_cache_miss_rate,
        "passes": m.passes,
        # additions
        "ram_duration_s": m.ram_duration_s,
        "orchestration_s": m.orchestration_s,
        "target_start_s": m.target_start_s,
        "storage_s": m.storage_s,
        "throughput_source": m.throughput_source,
        "throughput_min_bytes_per_s": _round(m.throughput_min),
        "throughput_max_bytes_per_s": _round(m.throughput_max),
        "page_rate_max_bytes_per_s": _round(m.page_rate_max),
        "dirty_to_throughput_ratio": _round(m.dirty_ratio, 3),
        "sent_ratio": _round(m.sent_ratio, 3),
        "passes_source": m.passes_source,
        "passes_at_least": m.passes_at_least,
        "remaining_bytes": m.remaining_bytes,
        "expected_downtime_ms": _ms(m.expected_downtime_s),
        "needed_downtime_limit_ms": _ms(m.needed_downtime_s),
        "downtime_limit_ms": _ms(m.downtime_limit_s),
        "downtime_limit_final_ms": _ms(m.downtime_limit_final_s),
        "max_bandwidth_bytes_per_s": m.max_bandwidth,
        "xbzrle_cache_miss_rate_cumulative": m.xbzrle_miss_rate_cumulative,
        "xbzrle_cache_size_bytes": m.xbzrle_cache_size,
        "xbzrle_overflow": m.xbzrle_overflow,
        "xbzrle_pages": m.xbzrle_pages,
        "zero_page_share": _round(m.zero_page_share, 4),
        "max_throttle_pct": m.throttle_max_pct,
        "first_pass_s": _round(m.first_pass_s),
        "time_to_converge_s": _round(m.time_to_converge_s),
    }


def recommendation_dict(r: Recommendation) -> dict[str, Any]:
    # Every platform key is always present; an empty list means "not possible there".
    commands = {p: list(r.commands.get(p, [])) for p in PLATFORMS}
    commands.update({k: list(v) for k, v in r.commands.items() if k not in commands})
    return {"setting": r.setting, "action": r.action, "commands": commands, "notes": dict(r.notes),
            "predicted": r.predicted}  # fmt: skip


def finding_dict(f: Finding) -> dict[str, Any]:
    return {
        "id": f.id,
        "severity": f.severity,
        "summary": f.summary,
        "evidence": dict(f.evidence),
        "recommendations": [recommendation_dict(r) for r in f.recommendations],
        "detail": f.detail,
    }


def diagnosis_dict(d: Diagnosis) -> dict[str, Any]:
    return clean(
        {
            "migtune_version": __version__,
            "format": d.format,
            "status": d.status,
            "partial": d.partial,
            "warnings": list(d.warnings),
            "vm": d.vm,
            "target": d.target,
            "metrics": metrics_dict(d.metrics),
            "findings": [finding_dict(f) for f in d.findings],
        }
    )


def explanation_dict(x: Explanation, lines: Any = None) -> dict[str, Any]:
    """The whole ``explain --json`` object (``lines`` replaces the per-line array if given)."""
    d = diagnosis_dict(x.diagnosis)
    return clean(
        {
            "migtune_version": __version__,
            "format": x.format,
            "status": d["status"],
            "partial": d["partial"],
            "warnings": d["warnings"],
            "summary": list(x.summary),
            "lines": [line_dict(ln) for ln in x.lines] if lines is None else lines,
            "timeline": [
                {
                    "name": p.name,
                    "start_s": p.start,
                    "end_s": p.end,
                    "duration_s": None if p.duration is None else round(p.duration, 3),
                    "note": p.note,
                }
                for p in x.timeline
            ],
            "predictions": list(x.predictions),
            "diagnosis": d,
        }
    )


def line_dict(ln: ExplainedLine) -> dict[str, Any]:
    return {"line": ln.line, "text": ln.text, "notes": list(ln.notes)}


def dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, allow_nan=False)


# The C encoder for one string: what JSONEncoder(ensure_ascii=False).encode does for a
# str, without its Python-level checks (a line object has ~4 strings, a log millions).
_string = getattr(json.encoder, "c_encode_basestring", None) or json.encoder.py_encode_basestring


def _line_json(ln: ExplainedLine) -> str:
    """One ``lines`` item exactly as ``json.dumps(..., indent=2)`` nests it at depth 2.

    ``indent`` makes json fall back to its pure-Python encoder (~20 us per line); the
    item has a fixed shape, so it is assembled from C-encoded strings instead.
    """
    notes = (
        "[\n        " + ",\n        ".join(map(_string, ln.notes)) + "\n      ]"
        if ln.notes
        else "[]"
    )
    return (
        f'{{\n      "line": {int(ln.line)},\n      "text": {_string(ln.text)},'
        f'\n      "notes": {notes}\n    }}'
    )


def write_explanation(x: Explanation, out: IO[str], flush_every: int = 2000) -> None:
    """Write ``explain --json`` to ``out`` as :func:`dumps` would, without holding it.

    The ``lines`` array is as long as the log, so it is written one line object at a
    time while the explanation walks the source; the rest of the object is small.  The
    text is byte for byte what ``dumps(explanation_dict(x))`` gives, plus a newline.
    """
    marker = f"migtune-lines-{uuid.uuid4().hex}"
    head, tail = dumps(explanation_dict(x, lines=marker)).split(json.dumps(marker), 1)
    out.write(head)
    out.write("[")
    chunk: list[str] = []
    first = True
    for ln in x.lines:
        chunk.append(("\n    " if first else ",\n    ") + _line_json(ln))
        first = False
        if len(chunk) >= flush_every:
            out.write("".join(chunk))
            chunk.clear()
    out.write("".join(chunk))
    out.write("]" if first else "\n  ]")
    out.write(tail)
    out.write("\n")
