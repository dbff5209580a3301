"""Line notes for QEMU-shaped logs: HMP ``info migrate``, QMP ``query-migrate`` dumps,
``virsh domjobinfo`` (plain and ``--rawstats``) and nova-compute messages.

All three QEMU-level formats print the same counters under different labels, so each
label is mapped to one canonical field and each field has one explainer that works the
numbers out (docs/qemu-migration.md §2, §10; docs/platforms.md §2.2, §3.4).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from migtune.analysis.explain_ctx import Ctx
from migtune.units import KiB, format_bits, format_bytes, format_duration, format_rate, parse_size

# label (lower-case, HMP / virsh / QMP / virsh --rawstats) -> canonical field
FIELDS = {
    "migration status": "status", "status": "status",
    "total time": "total_time", "total-time": "total_time", "time elapsed": "total_time",
    "time_elapsed": "total_time",
    "expected downtime": "expected_downtime", "expected-downtime": "expected_downtime",
    "downtime": "downtime", "total downtime": "downtime",
    "downtime w/o network": "downtime_net", "downtime_net": "downtime_net",
    "time elapsed w/o network": "elapsed_net", "time_elapsed_net": "elapsed_net",
    "setup": "setup", "setup-time": "setup", "setup time": "setup", "setup_time": "setup",
    "transferred ram": "transferred", "transferred": "transferred",
    "memory processed": "transferred", "memory_processed": "transferred",
    "throughput": "mbps", "mbps": "mbps", "throughput (mbps)": "mbps",
    "memory bandwidth": "bps", "memory_bps": "bps",
    "remaining ram": "remaining", "remaining": "remaining", "memory remaining": "remaining",
    "memory_remaining": "remaining",
    "total ram": "total", "total": "total", "memory total": "total", "memory_total": "total",
    "duplicate": "zero", "constant pages": "zero", "memory_constant": "zero",
    "normal": "normal", "normal pages": "normal", "memory_normal": "normal",
    "normal bytes": "normal_bytes", "normal-bytes": "normal_bytes", "normal data": "normal_bytes",
    "memory_normal_bytes": "normal_bytes",
    "skipped": "skipped",
    "dirty sync count": "passes", "dirty-sync-count": "passes", "iteration": "passes",
    "memory_iteration": "passes",
    "page size": "page_size", "page-size": "page_size", "memory_page_size": "page_size",
    "dirty pages rate": "dirty", "dirty-pages-rate": "dirty", "dirty rate": "dirty",
    "memory_dirty_rate": "dirty",
    "pages-per-second": "pps",
    "cache size": "xb_size", "cache-size": "xb_size", "compression cache": "xb_size",
    "compression_cache": "xb_size",
    "xbzrle transferred": "xb_bytes", "compressed data": "xb_bytes", "compression_bytes": "xb_bytes",
    "xbzrle pages": "xb_pages", "compressed pages": "xb_pages", "compression_pages": "xb_pages",
    "xbzrle cache miss": "xb_miss", "cache-miss": "xb_miss",
    "compression cache misses": "xb_miss", "compression_cache_misses": "xb_miss",
    "xbzrle cache miss rate": "xb_miss_rate", "cache-miss-rate": "xb_miss_rate",
    "xbzrle encoding rate": "xb_enc", "encoding-rate": "xb_enc",
    "xbzrle overflow": "xb_overflow", "overflow": "xb_overflow",
    "compression overflows": "xb_overflow", "compression_overflow": "xb_overflow",
    "cpu throttle percentage": "throttle", "cpu-throttle-percentage": "throttle",
    "auto converge throttle": "throttle", "auto_converge_throttle": "throttle",
    "cpu throttle (%)": "throttle",
    "max-bandwidth": "max_bw", "downtime-limit": "dt_limit",
    "xbzrle-cache-size": "xb_size",
    "cpu-throttle-initial": "thr_init", "cpu-throttle-increment": "thr_inc",
    "data processed": "data", "data remaining": "data", "data total": "data",
    "data_processed": "data", "data_remaining": "data", "data_total": "data",
    "error message": "error", "error-desc": "error", "errmsg": "error",
    "job type": "job_type", "operation": "operation",
    "precopy ram": "precopy", "precopy-bytes": "precopy",
    "downtime ram": "downtime_bytes", "downtime-bytes": "downtime_bytes",
    "postcopy ram": "postcopy", "postcopy-bytes": "postcopy",
    "postcopy requests": "pc_requests", "postcopy-requests": "pc_requests",
    "postcopy request count": "pc_requests",
    "multifd bytes": "multifd", "multifd-bytes": "multifd",
    "capabilities": "caps",
    "compress-level": "old_compress", "compress-threads": "old_compress",
    "decompress-threads": "old_compress",
}  # fmt: skip

# A label as printed before the colon; checked with fullmatch on the text before the
# first colon (a regex spanning label, colon and value backtracks quadratically on
# long lines full of blanks).
_LABEL_RE = re.compile(r"[A-Za-z][\w /()%-]*")
_NUM_RE = re.compile(r"[-+]?\d[\d,']*(?:\.\d+)?")
_MAX_NUMBER_CHARS = 40  # longer digit strings are no counter QEMU prints


def split_field(text: str) -> tuple[str, str] | None:
    """``label: value`` of an HMP / virsh / pretty-printed QMP line, label canonicalised."""
    body = text.split(">", 1)[1] if "| " in text and ">" in text else text  # fc.qemu prefix
    body = body.strip()
    colon = body.find(":")
    if colon < 0:
        return None
    label = body[:colon].lstrip(" \t\r\f\v'\"{").rstrip()
    if label.endswith(("'", '"')):
        label = label[:-1]
    if not _LABEL_RE.fullmatch(label):
        return None
    field = FIELDS.get(label.strip().lower())
    if not field:
        return None
    value = body[colon + 1 :].rstrip(",} \t\r\f\v").strip()
    return field, value.strip("'\"")


def number(value: str) -> float | None:
    """The first number in ``value``, or None; absurdly long or overflowing ones are None."""
    m = _NUM_RE.search(value)
    if not m or len(m.group(0)) > _MAX_NUMBER_CHARS:
        return None
    n = float(m.group(0).replace(",", "").replace("'", ""))
    return n if math.isfinite(n) else None


# The look-behind makes a match start only at the first digit of a run: linear search.
_SIZE_RE = re.compile(r"(?<![0-9.])([0-9.]+)\s*([KMGTPE]i?B)\b")


def size_of(value: str, fmt: str) -> float | None:
    """Bytes of a counter as the format prints it: HMP kbytes (KiB), virsh 1.5 GiB, QMP bytes."""
    n = number(value)
    if n is None:
        return None
    low = value.lower()
    if "kbytes" in low:
        return n * KiB
    m = _SIZE_RE.search(value)
    if m:
        try:
            return float(parse_size(f"{m.group(1)}{m.group(2)}"))
        except Exception:  # noqa: BLE001 - a note is optional, never an error
            return None
    return n


def ms_of(value: str) -> float | None:
    n = number(value)
    return None if n is None else n / 1000.0


def _pct(x: float, of: float | None) -> str:
    return f"{100 * x / of:.1f}%" if of else "?"


def _status(v: str, c: Ctx | None = None) -> list[str]:
    word = v.split()[0].lower() if v else ""
    meaning = {
        "active": "pre-copy is running: RAM is being copied while the guest keeps running",
        "completed": "finished: the guest now runs on the destination",
        "failed": "the migration failed; the guest keeps running on the source",
        "cancelled": "cancelled; the guest keeps running on the source",
        "setup": "setting up (connecting, allocating the dirty bitmap); nothing sent yet",
        "device": "switch-over: the guest is stopped and device state is being sent",
        "postcopy-active": "post-copy: the guest runs on the destination and pulls missing pages",
        "unbounded": "a job is running with no known end (a live migration)",
        "bounded": "a job is running with a known end",
    }.get(word)
    return [meaning] if meaning else []


def status_meaning(status: str) -> list[str]:
    return _status(status)


def _total_time(v: str, c: Ctx) -> list[str]:
    s = ms_of(v)
    return [f"{format_duration(s)} since the migrate command"] if s is not None else []


def _expected(v: str, c: Ctx) -> list[str]:
    s = ms_of(v)
    if s is None:
        return []
    lim, stated = c.limit()
    if abs(s - lim) < 0.0005:  # QEMU only reports it while the migration runs
        return [
            f"{format_duration(s)} = the downtime limit itself: QEMU reports the limit until it "
            "has measured a dirty rate (first pass), so this says nothing yet"
        ]
    verdict = (
        f"above the {format_duration(lim)} limit{'' if stated else ' (QEMU default)'}: QEMU will not stop the guest yet"
        if s > lim
        else f"within the {format_duration(lim)} limit: switch-over is close"
    )
    return [
        f"QEMU's estimate of the final pause = dirty bytes at the last sync / its bandwidth "
        f"estimate = {format_duration(s)}; {verdict}"
    ]


def _downtime(v: str, c: Ctx) -> list[str]:
    s = ms_of(v)
    if s is None:
        return []
    return [
        f"the guest was paused {format_duration(s)} (stop on the source to completion); the "
        "destination's resume comes on top"
    ]


def _transferred(v: str, c: Ctx) -> list[str]:
    b = size_of(v, c.fmt)
    if b is None:
        return []
    return [f"{format_bytes(b)} put on the wire so far, " + c.pass_phrase(b)]


def _mbps(v: str, c: Ctx) -> list[str]:
    n = number(v)
    if n is None:
        return []
    rate = n * 1e6 / 8
    when = (
        "average over the whole migration"
        if c.run.status == "completed"
        else "rate over QEMU's last ~100 ms window"
    )
    return [
        f"{n:g} Mbit/s (decimal) = {format_rate(rate)}: real bytes on the wire, {when}"
    ] + c.cap_phrase(rate)


def _bps(v: str, c: Ctx) -> list[str]:
    rate = size_of(v, c.fmt)
    if rate is None:
        return []
    return [
        f"QEMU's mbps converted to bytes: {format_rate(rate)} ({format_bits(rate)})"
    ] + c.cap_phrase(rate)


def _remaining(v: str, c: Ctx) -> list[str]:
    b = size_of(v, c.fmt)
    if b is None or (b == 0 and c.run.status == "completed"):
        return []
    notes = [
        f"{format_bytes(b)} of dirty RAM still to send in this pass (it jumps up at each bitmap sync)"
    ]
    if b and c.m.throughput:
        notes.append(
            f"at the current {format_rate(c.m.throughput)} that is {format_duration(b / c.m.throughput)} "
            "of sending: the pause a stop-and-copy of it right now would take"
        )
    return notes


def _total(v: str, c: Ctx) -> list[str]:
    b = size_of(v, c.fmt)
    return [f"{format_bytes(b)}: all migratable RAM incl. small ROM/VGA blocks"] if b else []


def _pages_bytes(v: str, c: Ctx) -> float | None:
    n = number(v)
    return None if n is None else n * (c.page_size or 4096)


def _zero(v: str, c: Ctx) -> list[str]:
    b = _pages_bytes(v, c)
    if b is None:
        return []
    share = f" ({_pct(b, c.m.ram_bytes)} of RAM)" if c.m.ram_bytes else ""
    return [f"zero pages: {format_bytes(b)}{share} that cost ~9 bytes each on the wire"]


def _normal(v: str, c: Ctx) -> list[str]:
    b = _pages_bytes(v, c)
    return [f"pages sent in full: {format_bytes(b)}, re-sends included"] if b is not None else []


def _passes(v: str, c: Ctx) -> list[str]:
    n = number(v)
    if n is None:
        return []
    return [
        f"dirty-bitmap syncs so far: this is pass {n:.0f} (the sync at setup counts as the first); "
        "each new pass re-sends what the guest wrote during the previous one"
    ]


def _dirty(v: str, c: Ctx) -> list[str]:
    n = number(v)
    if n is None:
        return []
    if n == 0:
        return ["0: QEMU has not measured a dirty rate yet (first pass) or the migration is over"]
    rate = n * (c.page_size or 4096)
    out = f"the guest dirtied {n:.0f} pages/s = {format_rate(rate)} (measured at the last sync)"
    if rate and c.m.throughput:
        ratio = rate / c.m.throughput
        out += f"; {ratio:.2f}x the {format_rate(c.m.throughput)} being sent" + (
            ": faster than the link, pre-copy cannot catch up" if ratio >= 1 else ""
        )
    return [out]


def _pps(v: str, c: Ctx) -> list[str]:
    rate = _pages_bytes(v, c)
    if rate is None:
        return []
    real = f"; the real rate is {format_rate(c.m.throughput)}" if c.m.throughput else ""
    return [
        f"all pages handled per second, zero pages included: {format_rate(rate)} of pages, "
        f"not network throughput{real}"
    ]


def _xb_miss_rate(v: str, c: Ctx) -> list[str]:
    n = number(v)
    if n is None:
        return []
    pct = n * 100 if n <= 1 else n
    return [
        f"{pct:.2f}% of the pages XBZRLE looked at in the last period had no previous copy in "
        "the cache and went in full" + (": the cache is not helping" if pct >= 90 else "")
    ]


def _xb_miss(v: str, c: Ctx) -> list[str]:
    return ["cumulative count of pages not found in the XBZRLE cache (a count, not a rate)"]


def _xb_overflow(v: str, c: Ctx) -> list[str]:
    n = number(v)
    return (
        [
            f"{n:.0f} pages changed too much to delta-encode: encoded, then sent raw anyway (wasted CPU)"
        ]
        if n
        else ["no page overflowed the delta encoder"]
    )


def _xb_size(v: str, c: Ctx) -> list[str]:
    b = size_of(v, c.fmt)
    if not b:
        return []
    share = f" ({_pct(b, c.m.ram_bytes)} of RAM)" if c.m.ram_bytes else ""
    return [f"XBZRLE cache {format_bytes(b)}{share}: old copies of re-sent pages to diff against"]


def _throttle(v: str, c: Ctx) -> list[str]:
    n = number(v)
    if n is None:
        return []
    return [
        f"auto-converge throttles the vCPUs by {n:.0f}%: the guest keeps {100 - n:.0f}% of its CPU time"
    ]


def _max_bw(v: str, c: Ctx) -> list[str]:
    n = number(v)
    if n is None:
        return []
    if n == 0 or n >= 2**50:
        return ["no practical bandwidth cap"]
    return [f"bandwidth cap {format_rate(n)} ({format_bits(n)})"]


def _dt_limit(v: str, c: Ctx) -> list[str]:
    s = ms_of(v)
    return (
        [f"QEMU stops the guest once the pending data can be sent in {format_duration(s)}"]
        if s is not None
        else []
    )


def _caps(v: str, c: Ctx) -> list[str]:
    on = re.findall(r"(?<![\w-])([\w-]+): on", v)
    notes = [f"capabilities on: {', '.join(on) or 'none'}"]
    if any("postcopy" in x for x in on):
        notes.append(
            "post-copy is only allowed here; it starts only if migrate_start_postcopy is issued"
        )
    return notes


def _setup(v: str, c: Ctx) -> list[str]:
    s = ms_of(v)
    return (
        [f"{format_duration(s)} of set-up before the first page was sent"] if s is not None else []
    )


def _data(v: str, c: Ctx) -> list[str]:
    return ["RAM plus disk (storage migration) together; the Memory lines are RAM only"]


def _skipped(v: str, c: Ctx) -> list[str]:
    return ["always 0 (the counter was removed in QEMU 9.1)"]


def _old_compress(v: str, c: Ctx) -> list[str]:
    return ["old multi-thread compression parameter; only used if the 'compress' capability is on"]


def _error(v: str, c: Ctx) -> list[str]:
    return [f"QEMU's reason for the failure: {v}"] if v else []


EXPLAIN: dict[str, Callable[[str, Ctx], list[str]]] = {
    "status": _status, "job_type": _status, "total_time": _total_time, "expected_downtime": _expected,
    "downtime": _downtime, "transferred": _transferred, "mbps": _mbps, "bps": _bps,
    "remaining": _remaining, "total": _total, "zero": _zero, "normal": _normal,
    "passes": _passes, "dirty": _dirty, "pps": _pps, "xb_miss_rate": _xb_miss_rate,
    "xb_miss": _xb_miss, "xb_overflow": _xb_overflow, "xb_size": _xb_size,
    "throttle": _throttle, "max_bw": _max_bw, "dt_limit": _dt_limit, "caps": _caps,
    "setup": _setup, "data": _data, "skipped": _skipped, "old_compress": _old_compress,
    "error": _error,
}  # fmt: skip

_HMP101 = [
    (re.compile(r"Time \(ms\):\s*(.*)"), "times"),
    (re.compile(r"Transfers:\s*(.*)"), "transfers"),
    (re.compile(r"Page Types:\s*(.*)"), "page_types"),
    (re.compile(r"Page Rates \(pps\):\s*(.*)"), "page_rates"),
    (re.compile(r"Others:\s*(.*)"), "others"),
    (re.compile(r"XBZRLE:\s*(.*)"), "xbzrle"),
    (re.compile(r"miss_rate=([0-9.]+)"), "miss"),
]


def _kv(text: str) -> dict[str, str]:
    return dict(re.findall(r"(?<!\w)(\w+)=([^,]+)", text))


# One search to tell whether a line can be a compact one at all (most lines are not).
_HMP101_GATE = re.compile(
    r"Time \(ms\):|Transfers:|Page Types:|Page Rates \(pps\):|Others:|XBZRLE:|miss_rate="
)


def _hmp101(text: str, c: Ctx) -> list[str]:
    """The compact 10.1+ layout packs several counters into one line."""
    if not _HMP101_GATE.search(text):
        return []
    for rx, kind in _HMP101:
        m = rx.search(text)
        if not m:
            continue
        kv = _kv(m.group(1))
        notes: list[str] = []
        if kind == "times":
            for key, fn in (("total", _total_time), ("exp_down", _expected), ("down", _downtime)):
                if key in kv:
                    notes += fn(kv[key], c)
        elif kind == "transfers":
            if "transferred" in kv:
                notes += _transferred(kv["transferred"], c)
            if "remain" in kv:
                notes += _remaining(kv["remain"], c)
        elif kind == "page_types" and "zero" in kv:
            notes += _zero(kv["zero"], c)
        elif kind == "page_rates":
            notes += _pps(kv.get("transfer", ""), c)
            if "dirty" in kv:
                notes += _dirty(kv["dirty"], c)
        elif kind == "others" and "dirty_syncs" in kv:
            notes += _passes(kv["dirty_syncs"], c)
        elif kind == "xbzrle" and "size" in kv:
            notes += _xb_size(kv["size"], c)
        elif kind == "miss":
            notes += _xb_miss_rate(m.group(1), c)
            if "overflow" in _kv(text):
                notes += _xb_overflow(_kv(text)["overflow"], c)
        return notes
    return []


_NOVA = [
    (
        re.compile(r"Increasing downtime to (\d+) ms after (\d+) sec"),
        lambda m, c: [
            f"Nova's progressive downtime: limit now {m.group(1)} ms, {m.group(2)} s into the "
            "migration. It grows in equal steps every live_migration_downtime_delay x GiB seconds "
            "up to live_migration_downtime"
            + ("; a step after the first means the guest had not converged yet" if m.group(2) != "0" else "")
        ],
    ),
    (
        re.compile(r"Migration running for (\d+) secs, memory (\d+)% remaining"),
        lambda m, c: [
            f"{m.group(1)} s in; 'remaining' is the dirty RAM still to send "
            f"({m.group(2)}% of RAM), not the share of RAM never sent: it rises again when pages are re-dirtied"
        ],
    ),
    (
        re.compile(r"Live migration not completed after (\d+) sec"),
        lambda m, c: [
            f"the completion timeout ({m.group(1)} s = live_migration_completion_timeout x GiB) "
            "expired: Nova now aborts or forces completion (live_migration_timeout_action)"
        ],
    ),
    (re.compile(r"Switching to post-copy"), lambda m, c: ["Nova forced completion by switching to post-copy"]),
    (re.compile(r"Migration operation has completed"), lambda m, c: ["the migration finished"]),
    (re.compile(r"Migration operation has aborted"), lambda m, c: ["the migration was aborted and rolled back"]),
    (re.compile(r"Migration operation was cancelled"), lambda m, c: ["the migration was cancelled; the instance stays on the source"]),
    (re.compile(r"Live Migration failure: (.*)"), lambda m, c: [f"libvirt's error: {m.group(1)}"]),
]  # fmt: skip


def notes_for(text: str, c: Ctx) -> list[str]:
    """Notes for one line of a QEMU-level log (hmp, qmp, libvirt or nova)."""
    try:
        return _notes_for(text, c)
    except (ValueError, ArithmeticError):
        return []  # "1.2.3" or 1e999 in a hand-edited line: a note is optional, never an error


def _notes_for(text: str, c: Ctx) -> list[str]:
    if c.fmt == "nova":
        for rx, fn in _NOVA:
            m = rx.search(text)
            if m:
                return fn(m, c)
        return []
    notes = _hmp101(text, c) if c.fmt == "hmp" else []
    if notes:
        return notes
    kv = split_field(text)
    if kv is None:
        return []
    field, value = kv
    fn = EXPLAIN.get(field)
    return fn(value, c) if fn else []
