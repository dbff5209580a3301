"""Line notes for QMP sessions: commands sent to QEMU and whole replies on one line
(JSON-lines logs and migtune recordings).  Field meanings are shared with
:mod:`explain_qemu` so a counter reads the same in every format.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from migtune.analysis.explain_ctx import Ctx
from migtune.analysis.explain_qemu import EXPLAIN, status_meaning
from migtune.model import Sample
from migtune.units import format_bytes, format_rate

_PARAM_NOTES: dict[str, Callable[[str, Ctx], list[str]]] = {
    "downtime-limit": EXPLAIN["dt_limit"],
    "max-bandwidth": EXPLAIN["max_bw"],
    "xbzrle-cache-size": EXPLAIN["xb_size"],
}


def command_notes(text: str, c: Ctx) -> list[str]:
    """A QMP command line: what the management layer asked QEMU for."""
    try:
        obj = json.loads(text.strip())
    except ValueError:
        return []
    if not isinstance(obj, dict) or not isinstance(obj.get("execute"), str):
        return []
    name, args = obj["execute"], obj.get("arguments") or {}
    if not isinstance(args, dict):
        return []
    if name == "migrate-set-parameters":
        notes = []
        for key, value in args.items():
            fn = _PARAM_NOTES.get(key)
            if fn is not None and key == "downtime-limit":
                notes += fn(f"{value} ms", c)
            elif fn is not None:
                notes += fn(str(value), c)
            else:
                notes.append(f"{key} = {value}")
        return notes
    if name == "migrate-set-capabilities":
        caps = args.get("capabilities")
        caps = caps if isinstance(caps, list) else []  # hand-edited logs: any JSON type
        states = [
            f"{x.get('capability')} {'on' if x.get('state') else 'off'}"
            for x in caps
            if isinstance(x, dict)
        ]
        return [f"capabilities: {', '.join(states)}"] if states else []
    fixed = {
        "migrate": f"migration started to {args.get('uri', 'the destination')}",
        "migrate_cancel": "cancel requested: the guest stays on the source",
        "migrate-start-postcopy": "switch to post-copy requested",
        "query-migrate": "",
    }
    note = fixed.get(name)
    return [note] if note else []


def sample_notes(s: Sample, c: Ctx) -> list[str]:
    """Notes for a whole query-migrate reply on one line (JSON lines, recordings)."""
    if s.status is None and s.transferred is None:
        return []
    notes = status_meaning(s.status or "")
    if s.transferred is not None:
        notes.append(
            f"{format_bytes(s.transferred)} sent, " + c.pass_phrase(s.transferred, s.passes)
        )
    p = c.prev
    if p is not None and None not in (p.t, s.t, p.transferred, s.transferred) and s.t > p.t:
        if s.transferred >= p.transferred:
            rate = (s.transferred - p.transferred) / (s.t - p.t)
            notes.append(f"real rate since the previous sample {format_rate(rate)}")
    elif s.throughput is not None:
        notes.append(f"QEMU's mbps: {format_rate(s.throughput)} on the wire")
    if s.passes is not None:
        notes.append(f"pass {s.passes} (dirty-bitmap syncs)")
    if s.remaining is not None and s.status != "completed":
        notes += EXPLAIN["remaining"](str(s.remaining), c)[:1]
    if s.dirty_rate and s.throughput:
        ratio = s.dirty_rate / s.throughput
        notes.append(f"guest dirties {format_rate(s.dirty_rate)}, {ratio:.2f}x QEMU's rate")
    if s.expected_downtime is not None and s.status != "completed":
        notes += EXPLAIN["expected_downtime"](str(s.expected_downtime * 1000), c)
    if s.downtime is not None:
        notes += EXPLAIN["downtime"](str(s.downtime * 1000), c)
    if s.throttle_pct:
        notes += EXPLAIN["throttle"](str(s.throttle_pct), c)
    if s.xbzrle is not None and s.xbzrle.cache_miss_rate is not None:
        notes += EXPLAIN["xb_miss_rate"](str(s.xbzrle.cache_miss_rate), c)
    if s.error:
        notes.append(f"QEMU's error: {s.error}")
    c.prev = s
    return notes
