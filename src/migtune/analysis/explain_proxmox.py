"""Line notes for Proxmox VE migration task logs (docs/platforms.md §1.1-§1.6).

Numbers come from the parsed samples and events where the parser has them (so rounding
and units are handled once) and from the line text for the purely descriptive lines.
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable

from migtune.analysis.explain_ctx import Ctx, Memo, fmt_bytes, fmt_rate
from migtune.model import Sample
from migtune.units import MiB, format_bytes, format_duration, format_rate

_PREFIX_RE = re.compile(
    r"^(?:\d{4}-\d\d-\d\d \d\d:\d\d:\d\d |[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d |\[date removed\] )?"
    r"(?:ERROR: )?"
)


def message(text: str) -> str:
    return _PREFIX_RE.sub("", text, count=1).strip()


_UNSET: tuple = ()  # "work the real rate out here" (see progress_notes)


def progress_notes(s: Sample, c: Ctx, real: tuple[float, float] | None) -> list[str]:
    """The notes of a progress line whose real rate (:func:`_delta`) was worked out
    already, while the context was advanced over the whole log (report excerpts)."""
    return _progress(s, c, real)


def _progress(s: Sample, c: Ctx, real: tuple[float, float] | None = _UNSET) -> list[str]:
    # Runs for every progress line of a log that may have millions: the values go
    # through the memoised formatters, and a once-only remark is built only the once.
    notes: list[str] = []
    if s.transferred is not None:
        notes.append(f"{fmt_bytes[s.transferred]} sent so far, " + c.pass_phrase(s.transferred))
    if s.total is not None and not c.said_once("total"):
        label = "VM-state" if s.remaining is None else "total"
        notes.append(f"{label} {fmt_bytes[s.total]} is the RAM size (plus ROM/VGA), not disk")
    if s.status == "device":
        notes.append(
            "status 'device': QEMU 10 switch-over, the guest is paused while device state goes"
        )
    if real is _UNSET:
        real = _delta(s, c)
    if s.page_rate is not None:
        if not c.said_once("page_rate"):
            notes.append(
                f"{fmt_rate[s.page_rate]} is QEMU's pages-per-second x page size over ~100 ms: "
                "zero pages count but cost nothing on the wire, so it is not the network rate"
            )
        if real is not None:
            notes.append(
                f"real rate over the last {real[1]:.0f} s: {fmt_rate[real[0]]} "
                f"(the per-line figure says {fmt_rate[s.page_rate]})"
            )
    elif real is not None:
        notes.append(f"real rate over the last {real[1]:.0f} s: {fmt_rate[real[0]]}")
    if s.remaining is not None:
        notes.append(_remaining_note(s, c))
    if s.dirty_rate is not None:
        send = real[0] if real is not None else c.m.throughput
        rel = f", {s.dirty_rate / send:.2f}x the real rate of {fmt_rate[send]}" if send else ""
        short = f"the guest dirties {fmt_rate[s.dirty_rate]}{rel}"
        if c.said_once("dirty"):
            notes.append(short)
        else:
            notes.append(
                short + ": Proxmox adds this only when the dirty rate beats the per-line rate, "
                "so the guest writes memory faster than the migration sends it"
            )
    if s.vfio_bytes is not None:
        notes.append(f"plus {fmt_bytes[s.vfio_bytes]} of passed-through device (VFIO) state")
    c.prev = s
    if s.t is not None and s.transferred is not None:
        c.history.append(s)
    return notes


def _xbzrle_line(match: re.Match, c: Ctx) -> list[str]:
    # The parser folds this line into the progress sample of the line before.
    p = c.prev
    return _xbzrle(p, c) if p is not None and p.xbzrle is not None else []


def _rounding(value: int) -> float:
    """Half the last printed digit of a render_bytes value (``1.1 GiB`` is +-0.05 GiB)."""
    unit = 1024 ** min(5, int(math.log(value, 1024))) if value > 1023 else 1
    return 0.05 * unit


_roundings = Memo(_rounding)


def _delta(s: Sample, c: Ctx) -> tuple[float, float] | None:
    """Real rate and the seconds it was measured over.

    New-format values are rounded to one decimal (+-51 MiB at GiB scale), so the window
    reaches back until the bytes sent dwarf that rounding; old raw-byte logs use 1 line.
    """
    if s.t is None or s.transferred is None:
        return None
    exact = s.remaining is not None  # the old format prints raw bytes
    need = 0 if exact else 20 * _roundings[s.transferred]
    hist = c.history
    if not hist:
        return None
    # Two pointers: the window start only moves forward, so a long log stays linear.
    j = c.window_start
    while j + 1 < len(hist) and s.transferred - hist[j + 1].transferred >= need:
        j += 1
    p = hist[j]
    if j > 4096:  # samples before the window are never looked at again: free them
        del hist[:j]
        j = 0
    c.window_start = j
    if p.t >= s.t or p.transferred > s.transferred:
        return None
    return (s.transferred - p.transferred) / (s.t - p.t), s.t - p.t


def _remaining_note(s: Sample, c: Ctx) -> str:
    p = c.prev
    if p is not None and p.remaining is not None and s.remaining > p.remaining + 4 * MiB:
        c.pass_no += 1
        return (
            f"remaining rose from {format_bytes(p.remaining)} to {format_bytes(s.remaining)}: QEMU "
            f"synced the dirty bitmap, pass {c.pass_no} starts with what the guest wrote meanwhile"
        )
    return f"{format_bytes(s.remaining)} still to send in pass {c.pass_no} (raw bytes in this old format)"


def _xbzrle(s: Sample, c: Ctx) -> list[str]:
    """XBZRLE counters: the meaning once, then only what changed."""
    x = s.xbzrle
    notes = []
    if x.pages:
        avg = f" (~{x.bytes / x.pages:.0f} bytes per page instead of 4096)" if x.bytes else ""
        notes.append(
            f"XBZRLE has sent {x.pages} re-dirtied pages as deltas against the cached copy{avg}"
        )
    if x.cache_miss_rate is not None:
        pct = x.cache_miss_rate * 100
        verdict = "; the cache is too small for what the guest rewrites" if pct >= 90 else ""
        if c.said_once("xbzrle-miss"):
            notes.append(f"cache-miss {pct:.2f}%{verdict}")
        else:
            size = x.cache_size or c.run.settings.xbzrle_cache_size
            cache = f" {fmt_bytes[size]}" if size else ""
            notes.append(
                f"cache-miss {pct:.2f}%: in QEMU's last period {pct:.2f}% of re-sent pages had "
                f"no old copy in the{cache} cache and went in full{verdict}"
            )
    if x.cache_miss is not None:
        notes.append(f"{x.cache_miss} cache misses so far (a cumulative count)")
    if x.overflow:
        if c.said_once("xbzrle-overflow"):
            before = c.last_overflow
            grew = f" (+{x.overflow - before} since the last report)" if before is not None else ""
            notes.append(f"overflow {x.overflow}{grew}")
        else:
            notes.append(
                f"overflow {x.overflow}: pages (cumulative) whose delta did not fit, encoded "
                "for nothing and sent raw"
            )
        c.last_overflow = x.overflow
    return notes


def _auto_increased(match: re.Match, c: Ctx) -> list[str]:
    new = float(match.group(1)) / 1000
    old = c.limit_now if c.limit_now is not None else new / 2
    c.limit_now = new
    return [
        f"downtime limit doubled from {format_duration(old)} to {format_duration(new)}: Proxmox "
        "counts polls in which the remaining data went up and doubles the limit at the 6th, "
        "because the guest re-dirties memory about as fast as it is sent",
        f"the final pause can now be up to ~{format_duration(new)}",
    ]


def _limit(match: re.Match, c: Ctx) -> list[str]:
    c.limit_now = float(match.group(1)) / 1000
    return [
        f"QEMU may pause the guest {format_duration(c.limit_now)} for the final copy (VM option "
        "migrate_downtime, default 0.1 s); Proxmox raises it by itself if the migration does not converge"
    ]


def _old_limit(match: re.Match, c: Ctx) -> list[str]:
    c.limit_now = float(match.group(1))
    return [
        f"old Proxmox: downtime limit {format_duration(c.limit_now)} (migrate_downtime, seconds)"
    ]


def _old_speed(match: re.Match, c: Ctx) -> list[str]:
    n = float(match.group(1))
    if n >= 8 * 1024**3:
        return [f"old Proxmox: bandwidth limit {format_rate(n)}, i.e. effectively unlimited"]
    return [f"old Proxmox: bandwidth limit {format_rate(n)} (migrate_speed)"]


def _avg_old(match: re.Match, c: Ctx) -> list[str]:
    mb, dt_ms = float(match.group(1)), float(match.group(2))
    notes = []
    if mb > 0 and c.m.ram_bytes:
        secs = c.m.ram_bytes / MiB / mb
        notes.append(
            f"{mb:.2f} MB/s is the configured RAM ({c.m.ram_bytes / MiB:.0f} MB) divided by the whole "
            f"seconds of the RAM phase ({secs:.0f} s), not a measured rate"
        )
    else:
        notes.append(
            "this speed is the configured RAM in MB divided by whole seconds of the RAM phase, not a measured rate"
        )
    if c.m.throughput and c.m.throughput_source == "transferred-deltas":
        notes.append(f"measured from the transferred counters: {format_rate(c.m.throughput)}")
    notes.append(_downtime_note(dt_ms))
    return notes


def _avg_new(match: re.Match, c: Ctx) -> list[str]:
    dt_ms = float(match.group(2))
    notes = [
        f"{match.group(1)}/s is the VM-state size divided by whole seconds of the RAM phase: it "
        "ignores zero pages and re-sent pages, so it is neither bytes sent nor link speed"
    ]
    if c.m.throughput and c.m.throughput_source == "transferred-deltas":
        notes.append(f"measured from the transferred counters: {format_rate(c.m.throughput)}")
    notes.append(_downtime_note(dt_ms))
    return notes


def _downtime_note(ms: float) -> str:
    return (
        f"downtime {ms:.0f} ms is QEMU's pause on the source; the guest really runs again only "
        "after Proxmox moves the config and resumes it on the target, a little later"
    )


def _finished(match: re.Match, c: Ctx) -> list[str]:
    m = c.m
    if m.duration_s is None:
        return ["the task ended successfully"]
    parts = [f"whole task {format_duration(m.duration_s)}"]
    if m.ram_duration_s is not None:
        parts.append(f"RAM phase {format_duration(m.ram_duration_s)}")
        parts.append(
            f"orchestration (checks, target start, clean-up) {format_duration(m.duration_s - m.ram_duration_s)}"
        )
    return [", ".join(parts)]


def _start_uri(match: re.Match, c: Ctx) -> list[str]:
    uri = match.group(1)
    if uri.startswith("unix:"):
        how = "a UNIX socket forwarded through SSH: secure mode, every byte goes through one ssh process"
    elif uri.startswith("localhost:"):
        how = "localhost, an ssh -L forward to the target: secure mode, all RAM goes through SSH"
    elif uri.startswith("tcp:") or re.match(r"\d", uri):
        how = "a plain TCP connection to the target: insecure mode, no SSH in the data path"
    else:
        how = "the target"
    return [f"QEMU streams RAM to {how}"]


def _target_start(match: re.Match, c: Ctx) -> list[str]:
    t = c.m.target_start_s
    took = f"; it took {format_duration(t)} until the next step" if t is not None else ""
    return [f"the target QEMU is started paused, waiting for the incoming migration{took}"]


def _failure(match: re.Match, c: Ctx) -> list[str]:
    reason = match.group(1)
    if "interrupted by signal" in reason:
        return [
            "the task was stopped (Stop button, killed, or HA); QEMU's migration is cancelled and the VM stays on the source"
        ]
    if "exit code 255" in reason:
        return [
            "a command on the target (starting the VM) failed; the lines from [node] above say why"
        ]
    return [f"the migration failed: {reason}; the VM stays on the source"]


def _node(match: re.Match, c: Ctx) -> list[str]:
    notes = [f"printed by the target node {match.group(1)} (stderr of its qm start)"]
    if "too old to run" in match.group(2):
        notes.append(
            "version skew: the target's QEMU does not know the VM's machine version; upgrade that node"
        )
    return notes


def _storage(match: re.Match, c: Ctx) -> list[str]:
    return [
        "storage mirror (NBD drive-mirror) progress of a local disk; RAM migration starts after all disks are in sync"
    ]


_FIXED = {
    "copying disk images": "old Proxmox printed this always; only offline (unused) local disks are copied here",
    "start remote tunnel": "SSH connection to the target running 'qm mtunnel': control channel (and the data path in secure mode)",
    "starting ssh migration tunnel": "ssh -L port forward to the target: in this old secure mode all RAM passes through it",
    "set migration capabilities": "Proxmox turns on auto-converge and XBZRLE and everything else (post-copy, multifd) off",
    "set migration parameters": "the limits above are sent to QEMU in one migrate-set-parameters",
    "migration status: completed": "QEMU finished the RAM copy; Proxmox now moves the config and resumes the VM on the target",
    "TASK OK": "the task ended without errors",
    "aborting phase 2 - cleanup resources": "rolling back: the target VM is stopped and the tunnel closed",
    "migrate_cancel": "QMP migrate_cancel sent to the source QEMU",
    "task started by HA resource agent": "the HA stack started this migration (hamigrate)",
    "all 'mirror' jobs are ready": "all local disks are in sync on the target",
    "...": "lines left out by whoever published this log",
}

_RULES: list[tuple[re.Pattern, Callable[[re.Match, Ctx], list[str]]]] = [
    (re.compile(r"auto-increased downtime to continue migration: (\d+) ms"), _auto_increased),
    (re.compile(r"migration downtime limit: (\d+) ms"), _limit),
    (re.compile(r"migrate_set_downtime: ([0-9.]+)"), _old_limit),
    (re.compile(r"migrate_set_speed: (\d+)"), _old_speed),
    (re.compile(r"migration speed limit: (.+)/s"), lambda m, c: [f"bandwidth cap {m.group(1)}/s from migrate_speed or datacenter bwlimit (the lower wins)"]),
    (re.compile(r"migration cachesize: (.+)"), lambda m, c: [f"XBZRLE cache {m.group(1)}: Proxmox sizes it at RAM/10 rounded up to a power of two"]),
    (re.compile(r"migration speed: ([0-9.]+) MB/s - downtime (\d+) ms"), _avg_old),
    (re.compile(r"average migration speed: (.+)/s - downtime (\d+) ms"), _avg_new),
    (re.compile(r"migration completed, transferred (.+) VM-state"), lambda m, c: [f"{m.group(1)} went over the wire in total" + (f", {c.m.sent_ratio:.2f}x the RAM" if c.m.sent_ratio else "")]),
    (re.compile(r"migration finished successf?ull?y"), _finished),
    (re.compile(r"(?:starting online/live migration on|start migrate command to) (\S+)"), _start_uri),
    (re.compile(r"starting VM \d+ on remote node"), _target_start),
    (re.compile(r"starting migration of VM (\d+) to node '([^']+)' \(([^)]+)\)"), lambda m, c: [f"task start: VM {m.group(1)} goes to node {m.group(2)} at {m.group(3)}"]),
    (re.compile(r"use dedicated network address for sending migration traffic \(([^)]+)\)"), lambda m, c: [f"migration traffic uses the migration network (target address {m.group(1)})"]),
    (re.compile(r"ssh tunnel ver (\d+)"), lambda m, c: ["the tunnel on the target answered: it is ready"]),
    (re.compile(r"online migrate failure - (.*)"), _failure),
    (re.compile(r"^\[([\w.-]+)\] (.*)", re.S), _node),
    (re.compile(r"migration status error: (.*)"), lambda m, c: [f"QEMU reported the migration as {m.group(1)}"]),
    (re.compile(r"TASK ERROR: (.*)"), lambda m, c: [f"the task failed: {m.group(1)}"]),
    (re.compile(r"drive-[\w-]+: transferred"), _storage),
    (re.compile(r"^(?:xbzrle: send updates|migration xbzrle cachesize)"), _xbzrle_line),
    (re.compile(r"migration in status '(\w+)' - waiting"), lambda m, c: [f"QEMU is in '{m.group(1)}'; Proxmox waits for it to move on"]),
]  # fmt: skip


_XBZRLE_LINE_RE = re.compile(r"^(?:xbzrle: send updates|migration xbzrle cachesize)")
_STATEFUL_RULES = _RULES[:3]  # the rules whose function changes the context (limit_now)
# The same test on a line with an ISO stamp, without cutting the stamp off first: where
# this matches, message(text) starts with one of the two (a shortcut, not a new rule).
_STAMPED_XBZRLE_RE = re.compile(
    r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d (?:ERROR: )?\s*"
    r"(?:xbzrle: send updates|migration xbzrle cachesize)"
)
# A plain xbzrle line, nothing else in it: no rule before the xbzrle one can match it, so
# the rules need not be tried in turn (one such line a second in a long log).
_PLAIN_XBZRLE_RE = re.compile(
    r"xbzrle: send updates to \d+ pages in [\d.]+ \w+ encoded memory, "
    r"cache-miss [\d.]+%, overflow \d+"
)


def advance(text: str, sample: Sample | None, c: Ctx) -> tuple[float, float] | None:
    """Do to ``c`` what :func:`notes_for` does, without writing notes (a line not shown).

    The report shows an excerpt of a huge log; the notes of the lines it shows depend on
    every progress line before them (rates over a window, pass numbers, once-only
    remarks), so the lines left out still go through here.  Mirrors _progress/_xbzrle:
    tests compare the shown notes with a full explanation.  Returns the real rate a
    progress line's notes give (:func:`_delta`), None for other lines.
    """
    if sample is not None and sample.transferred is not None:
        return _advance_progress(sample, c)
    if sample is not None and sample.xbzrle is not None:
        _advance_xbzrle(sample, c)
        return None
    if _STAMPED_XBZRLE_RE.match(text):
        msg = None
    else:
        msg = message(text)
        if not _XBZRLE_LINE_RE.search(msg):
            _advance_rules(msg, c)  # any other line: only the rules that change ``c``
            return None
    if c.prev is not None and c.prev.xbzrle is not None:
        _advance_xbzrle(c.prev, c)
    return None


def _advance_rules(msg: str, c: Ctx) -> None:
    """What notes_for does to ``c`` for a line that is neither progress nor xbzrle.

    Of the rules only the downtime-limit ones (the first three, so they are also the
    first to match) change the context; a fixed line or a line another rule matches
    first changes nothing.
    """
    if _FIXED.get(msg):
        return
    for rx, fn in _STATEFUL_RULES:
        m = rx.search(msg)
        if m:
            with contextlib.suppress(ValueError, ArithmeticError):  # as in notes_for
                fn(m, c)
            return


def _advance_progress(s: Sample, c: Ctx) -> tuple[float, float] | None:
    said = c.said
    if c.m.ram_bytes:
        said.add("pass1" if s.transferred / c.m.ram_bytes < 1 else "resend")
    if s.total is not None:
        said.add("total")
    real = _delta(s, c)
    if s.page_rate is not None:
        said.add("page_rate")
    if s.remaining is not None:
        p = c.prev
        if p is not None and p.remaining is not None and s.remaining > p.remaining + 4 * MiB:
            c.pass_no += 1
    if s.dirty_rate is not None:
        said.add("dirty")
    c.prev = s
    if s.t is not None:
        c.history.append(s)
    return real


def _advance_xbzrle(s: Sample, c: Ctx) -> None:
    x = s.xbzrle
    if x.cache_miss_rate is not None:
        c.said.add("xbzrle-miss")
    if x.overflow:
        c.said.add("xbzrle-overflow")
        c.last_overflow = x.overflow


def notes_for(text: str, sample: Sample | None, c: Ctx) -> list[str]:
    if sample is not None and (sample.transferred is not None or sample.xbzrle is not None):
        return _progress(sample, c) if sample.transferred is not None else _xbzrle(sample, c)
    msg = message(text)
    fixed = _FIXED.get(msg)
    if fixed:
        return [fixed]
    if msg.startswith("xbzrle: send updates") and _PLAIN_XBZRLE_RE.fullmatch(msg):
        try:
            return _xbzrle_line(None, c)  # type: ignore[arg-type]
        except (ValueError, ArithmeticError):
            return []
    for rx, fn in _RULES:
        m = rx.search(msg)
        if m:
            try:
                return fn(m, c)
            except (ValueError, ArithmeticError):
                return []  # "1.2.3 ms" or 1e999: a note is optional, never an error
    return []
