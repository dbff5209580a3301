"""``virsh domjobinfo`` output (libvirt 9-11), plain or ``--rawstats``.

One ``Job type:`` block is one snapshot (:class:`~migtune.model.Sample`).  A file may
hold many, with ``$ virsh domjobinfo vm`` command lines or time stamps between them;
``t`` is the job's ``Time elapsed`` (ms -> s).  A time stamp line (ISO date-time, or
``date``'s default output) before the first snapshot sets ``run.t0``.

Sizes are ``%.3f <binary unit>`` (three decimals, so rounded), ``Memory bandwidth``
is bytes/s (libvirt converts QEMU's mbps), ``Dirty rate`` is pages/s (times ``Page
size``).  ``Compression cache misses`` is a cumulative count: no rate is derived.

KubeVirt's virt-launcher prints the same libvirt statistics as ``Migration info for
<uid>: TimeElapsed:...`` (plain or inside its JSON log records); those lines are read
too (see :mod:`migtune.sources._kubevirt`), with the launcher's outcome messages.
``Expected downtime`` (running) and ``Total downtime`` (completed) are the same
libvirt field; the ``w/o network`` variants go to ``run.meta``.
"""

from __future__ import annotations

import datetime as _dt
import math
import re
from collections.abc import Sequence

from migtune.errors import InputError
from migtune.model import Event, Run, Sample, SourceRef, Xbzrle
from migtune.sources import _kubevirt as kubevirt
from migtune.sources._common import (
    add_sample_events,
    bounded_int,
    finish_from_samples,
    first_number,
    has_data,
    iso_epoch,
    warn,
)
from migtune.units import parse_rate, parse_size

FORMAT = "libvirt"

_JOB_TYPES = {
    "none": "unknown",
    "bounded": "active",
    "unbounded": "active",
    "completed": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
# virDomainJobType numbers, as --rawstats prints them.
_JOB_NUMBERS = {
    0: "none",
    1: "bounded",
    2: "unbounded",
    3: "completed",
    4: "failed",
    5: "cancelled",
}
_OPERATIONS = {
    0: "Unknown", 1: "Start", 2: "Save", 3: "Restore", 4: "Incoming migration",
    5: "Outgoing migration", 6: "Snapshot", 7: "Snapshot revert", 8: "Dump", 9: "Backup",
    10: "Snapshot delete",
}  # fmt: skip

# label (lower case) or rawstats key -> (target, kind).  kinds: ms, size, rate, int, pages
# targets: Sample field, "x:<Xbzrle field>", "_dirty" (pages/s), "meta:<key>" or "skip"
_FIELDS = {
    "time elapsed": ("total_time", "ms"),
    "time_elapsed": ("total_time", "ms"),
    "time elapsed w/o network": ("meta:time_elapsed_net", "ms"),
    "time_elapsed_net": ("meta:time_elapsed_net", "ms"),
    "time remaining": ("meta:time_remaining", "ms"),
    "time_remaining": ("meta:time_remaining", "ms"),
    "data processed": ("meta:data_processed", "size"),
    "data_processed": ("meta:data_processed", "int"),
    "data remaining": ("meta:data_remaining", "size"),
    "data_remaining": ("meta:data_remaining", "int"),
    "data total": ("meta:data_total", "size"),
    "data_total": ("meta:data_total", "int"),
    "memory processed": ("transferred", "size"),
    "memory_processed": ("transferred", "int"),
    "memory remaining": ("remaining", "size"),
    "memory_remaining": ("remaining", "int"),
    "memory total": ("total", "size"),
    "memory_total": ("total", "int"),
    "memory bandwidth": ("throughput", "rate"),
    "memory_bps": ("throughput", "float"),
    "dirty rate": ("_dirty", "float"),
    "memory_dirty_rate": ("_dirty", "float"),
    "page size": ("page_size", "int"),
    "memory_page_size": ("page_size", "int"),
    "iteration": ("passes", "int"),
    "memory_iteration": ("passes", "int"),
    "postcopy requests": ("postcopy_requests", "int"),
    "memory_postcopy_requests": ("postcopy_requests", "int"),
    "file processed": ("disk_transferred", "size"),
    "disk_processed": ("disk_transferred", "int"),
    "file remaining": ("disk_remaining", "size"),
    "disk_remaining": ("disk_remaining", "int"),
    "file total": ("disk_total", "size"),
    "disk_total": ("disk_total", "int"),
    "file bandwidth": ("meta:disk_bps", "rate"),
    "disk_bps": ("meta:disk_bps", "float"),
    "constant pages": ("duplicate", "int"),
    "memory_constant": ("duplicate", "int"),
    "normal pages": ("normal", "int"),
    "memory_normal": ("normal", "int"),
    "normal data": ("normal_bytes", "size"),
    "memory_normal_bytes": ("normal_bytes", "int"),
    "expected downtime": ("expected_downtime", "ms"),
    "total downtime": ("downtime", "ms"),
    "downtime w/o network": ("meta:downtime_net", "ms"),
    "downtime_net": ("meta:downtime_net", "ms"),
    "setup time": ("setup_time", "ms"),
    "setup_time": ("setup_time", "ms"),
    "compression cache": ("x:cache_size", "size"),
    "compression_cache": ("x:cache_size", "int"),
    "compressed data": ("x:bytes", "size"),
    "compression_bytes": ("x:bytes", "int"),
    "compressed pages": ("x:pages", "int"),
    "compression_pages": ("x:pages", "int"),
    "compression cache misses": ("x:cache_miss", "int"),
    "compression_cache_misses": ("x:cache_miss", "int"),
    "compression overflows": ("x:overflow", "int"),
    "compression_overflow": ("x:overflow", "int"),
    "auto converge throttle": ("throttle_pct", "float"),
    "auto_converge_throttle": ("throttle_pct", "float"),
    "temporary disk space use": ("skip", "size"),
    "temporary disk space total": ("skip", "size"),
    "disk_temp_used": ("skip", "int"),
    "disk_temp_total": ("skip", "int"),
    "memory_dirty_rate_bytes": ("skip", "int"),
    "success": ("skip", "int"),
}

# The label before the first colon, checked on its own: a regex spanning label, colon
# and value backtracked quadratically on values padded with blanks.
_LABEL_RE = re.compile(r"[A-Za-z][A-Za-z _/.-]*")
_COMMAND_RE = re.compile(r"^\s*(?:[$#>]\s*|virsh\s*#\s*)?(?:virsh\b.*?\s)?domjobinfo\b")
_OTHER_VIRSH_RE = re.compile(
    r"^\s*(?:[$#>]\s*|virsh\s*#\s*)?(?:virsh\s+)?(?:-c\s+\S+\s+)?"
    r"(migrate-setmaxdowntime|migrate-setspeed|migrate-compcache|migrate|migrate-postcopy|"
    r"domjobabort)\b(.*)$"
)
_SHELL_RE = re.compile(r"^(?:\$|virsh\s*#)\s*\S")
_DATE_RE = re.compile(
    r"^\s*(?:[A-Z][a-z]{2}\s+)?([A-Z][a-z]{2})\s+(\d{1,2})\s+(\d{2}:\d{2}:\d{2})\s+(?:([A-Z]{2,5})\s+)?(\d{4})\s*$"
)


def sniff(lines: Sequence[str]) -> float:
    score = 0.0
    for line in lines:
        s = line.strip()
        if re.match(r"Job type:\s+(None|Bounded|Unbounded|Completed|Failed|Cancelled|\d)\b", s):
            score += 0.5
        elif re.match(
            r"(Operation|Memory processed|Memory remaining|Memory total|Data total|"
            r"Time elapsed|Memory bandwidth|Iteration|Constant pages):\s",
            s,
        ):
            score += 0.1
        elif re.match(r"(memory_total|memory_processed|time_elapsed|memory_iteration):\s*\d", s):
            score += 0.2
        elif _COMMAND_RE.match(s):
            score += 0.3
        elif "Migration info for" in s and "TimeElapsed:" in s:
            score += 0.5
        elif '"component":"virt-launcher"' in s.replace(" ", ""):
            score += 0.05
        if score >= 1.0:
            return 1.0
    return min(score, 1.0)


def _date_epoch(text: str) -> float | None:
    epoch = iso_epoch(text) if re.match(r"^\s*\[?\d{4}-\d{2}-\d{2}", text) else None
    if epoch is not None:
        return epoch
    m = _DATE_RE.match(text)
    if not m:
        return None
    try:
        value = _dt.datetime.strptime(
            f"{m.group(1)} {m.group(2)} {m.group(5)} {m.group(3)}", "%b %d %Y %H:%M:%S"
        )
    except ValueError:
        return None
    return value.replace(tzinfo=_dt.UTC).timestamp()


class _Parser:
    def __init__(self) -> None:
        self.run = Run(format=FORMAT)
        self.sample: Sample | None = None
        self.dirty_pps: float | None = None
        self.stamp: float | None = None  # wall-clock of the snapshot being read
        self.status_word = "unknown"
        self.recognised = 0
        self.job_none = 0
        self.final_status: str | None = None  # from KubeVirt outcome messages
        self.undated: list[tuple[Event, float]] = []

    def close(self) -> None:
        s, self.sample = self.sample, None
        if s is None or not has_data(s):
            return
        if self.dirty_pps is not None and s.page_size:
            s.dirty_rate = self.dirty_pps * s.page_size
        s.t = s.total_time
        if self.stamp is not None:
            if self.run.t0 is None and s.total_time is not None:
                self.run.t0 = self.stamp - s.total_time  # t = 0 is the job's start
            elif s.t is None and self.run.t0 is not None:
                s.t = self.stamp - self.run.t0
            self.stamp = None
        self.run.samples.append(s)
        self.dirty_pps = None

    def start(self, job: str, ref: SourceRef) -> None:
        self.close()
        self.sample = Sample(source=ref)
        status = _JOB_TYPES.get(job.lower())
        if status is None:
            warn(self.run, f"line {ref.line}: unknown job type {job!r}")
            status = "unknown"
        if job.lower() == "none":
            self.job_none += 1
        self.status_word = status
        self.sample.status = None if status == "unknown" else status

    def field(self, key: str, value: str, ref: SourceRef) -> bool:
        spec = _FIELDS.get(key.lower()) or _FIELDS.get(key)
        if spec is None:
            return False
        target, kind = spec
        if self.sample is None:
            warn(self.run, f"line {ref.line}: {key} outside a 'Job type:' block")
            self.sample = Sample(source=ref)
        try:
            if kind == "size":
                parsed: float | int = parse_size(value)
            elif kind == "rate":
                parsed = parse_rate(value)
            else:
                num = first_number(value)
                if num is None:
                    raise ValueError(value)
                parsed = (
                    num / 1000.0 if kind == "ms" else (float(num) if kind == "float" else int(num))
                )
            if not math.isfinite(parsed):
                raise ValueError(value)
        except (InputError, ValueError, OverflowError):
            warn(self.run, f"line {ref.line}: cannot read {key} value {value!r}")
            return True
        s = self.sample
        if target == "skip":
            pass
        elif target == "_dirty":
            self.dirty_pps = float(parsed)
        elif target.startswith("meta:"):
            self.run.meta.setdefault("libvirt", {})[target[5:]] = parsed
        elif target.startswith("x:"):
            if s.xbzrle is None:
                s.xbzrle = Xbzrle()
            setattr(s.xbzrle, target[2:], int(parsed))
        else:
            setattr(s, target, parsed)
        return True

    def virsh_command(self, cmd: str, args: str, ref: SourceRef) -> None:
        """Operator commands in a transcript: the settings they change."""
        words = args.split()
        nums = [w for w in words if re.fullmatch(r"\d+(?:\.\d+)?", w)]
        t = self.run.samples[-1].t if self.run.samples else None
        started = bool(self.run.samples) or self.sample is not None
        st = self.run.settings
        if cmd == "migrate-setmaxdowntime" and nums:
            limit = float(nums[0]) / 1000.0
            if started:
                data = {"downtime_limit": limit}
                self.run.events.append(
                    Event(t, "downtime-change", f"max downtime {nums[0]} ms", data, ref)
                )
            else:
                st.downtime_limit = limit
        elif cmd == "migrate-setspeed" and nums and "--postcopy" not in words:
            rate = float(nums[0]) * 1024**2  # virsh takes MiB/s
            if started:
                data = {"max_bandwidth": rate}
                self.run.events.append(
                    Event(t, "bandwidth-change", f"speed {nums[0]} MiB/s", data, ref)
                )
            else:
                st.max_bandwidth = rate
        elif cmd == "migrate-compcache" and "--size" in words and nums:
            st.xbzrle_cache_size = int(float(nums[0]))
        elif cmd == "migrate":
            self.run.events.append(Event(t, "migration-start", args.strip(), {}, ref))
            for flag, cap in (("--auto-converge", "auto-converge"), ("--postcopy", "postcopy-ram"),
                              ("--parallel", "multifd")):  # fmt: skip
                if flag in words:
                    st.capabilities[cap] = True
            if "--compressed" in words:
                st.capabilities["xbzrle"] = True
            if "--bandwidth" in words:
                i = words.index("--bandwidth")
                if i + 1 < len(words) and re.fullmatch(r"\d+", words[i + 1]):
                    st.max_bandwidth = float(words[i + 1]) * 1024**2
        elif cmd == "migrate-postcopy":
            self.run.events.append(Event(t, "postcopy-start", "virsh migrate-postcopy", {}, ref))
        elif cmd == "domjobabort":
            self.run.events.append(Event(t, "cancelled", "virsh domjobabort", {}, ref))

    def launcher(self, text: str, ref: SourceRef) -> bool:
        """KubeVirt virt-launcher lines; True if the line was one."""
        msg, epoch, is_launcher = kubevirt.split_record(text)
        if m := kubevirt.INFO_RE.search(msg):
            self.close()
            sample, meta = kubevirt.sample_from_info(m.group("stats"), ref)
            if epoch is not None and self.run.t0 is None and sample.total_time is not None:
                self.run.t0 = epoch - sample.total_time
            self.run.samples.append(sample)
            self.run.meta.setdefault("kubevirt", {}).update(meta)
            self.run.vm = self.run.vm or m.group("uid")
            self.recognised += 1
            return True
        hit = next((k for k in kubevirt.MESSAGES if k in msg), None)
        if hit is not None and (is_launcher or msg.startswith(hit)):
            kind, status = kubevirt.MESSAGES[hit]
            t = None
            if epoch is not None and self.run.t0 is not None:
                t = round(epoch - self.run.t0, 3)
            elif self.run.samples:
                t = self.run.samples[-1].t
            event = Event(t, kind, hit, {}, ref)
            self.run.events.append(event)
            if t is None and epoch is not None:
                self.undated.append((event, epoch))  # dated once t0 is known
            self.final_status = status or self.final_status
            self.recognised += 1
            return True
        return is_launcher  # other virt-launcher chatter: not a problem

    def line(self, no: int, raw: str) -> None:
        text = raw.strip()
        if not text:
            return
        ref = SourceRef(no, raw)
        if ("Migration info for" in text or "live migration" in text.lower()) and self.launcher(
            text, ref
        ):
            return
        if text.startswith("{") and '"virt-launcher"' in text:
            return
        if _COMMAND_RE.match(text):
            self.close()
            self.recognised += 1
            return
        if m := _OTHER_VIRSH_RE.match(text):
            self.close()
            self.virsh_command(m.group(1), m.group(2), ref)
            self.recognised += 1
            return
        if _SHELL_RE.match(text):
            return  # another command of the transcript (date, sleep, ...)
        epoch = _date_epoch(text)
        if epoch is not None:
            self.close()
            self.stamp = epoch
            return
        label, colon, rest = text.partition(":")
        if not colon or not _LABEL_RE.fullmatch(label):
            if text.startswith("error:"):
                warn(self.run, f"line {no}: virsh {text}")
            else:
                warn(self.run, f"line {no}: not understood: {text[:80]}")
            return
        key, value = label, rest.strip()
        low = key.lower()
        if low == "error":
            warn(self.run, f"line {no}: virsh error: {value}")
            return
        if low == "job type":
            job = value.split()[0] if value.split() else ""
            if (number := bounded_int(job)) is not None:
                job = _JOB_NUMBERS.get(number, job)
            self.start(job, ref)
            self.recognised += 1
            return
        if low == "operation":
            op = value
            if (number := bounded_int(op)) is not None:
                op = _OPERATIONS.get(number, op)
            self.run.meta.setdefault("libvirt", {})["operation"] = op
            self.recognised += 1
            return
        if low in ("error message", "errmsg"):
            if self.sample is not None:
                self.sample.error = value
            self.recognised += 1
            return
        if low == "downtime":  # rawstats: expected while running, total once completed
            target = "total downtime" if self.status_word == "completed" else "expected downtime"
            self.recognised += self.field(target, value, ref)
            return
        if self.field(key, value, ref):
            self.recognised += 1
            return
        warn(self.run, f"line {no}: unknown field {key!r}")


def parse(lines: Sequence[str]) -> Run:
    p = _Parser()
    for no, line in enumerate(lines, 1):
        p.line(no, line)
    p.close()
    run = p.run
    if not run.samples and p.recognised == 0:
        raise InputError("no 'virsh domjobinfo' output found")
    if not run.samples:
        if p.job_none:
            warn(run, "'Job type: None': no migration job was running")
        else:
            warn(run, "no 'Job type:' block with statistics")
    # The last block decides the outcome (earlier Unbounded snapshots led up to it).
    run.status = (run.samples[-1].status if run.samples else None) or "unknown"
    if p.final_status:
        run.status = p.final_status
    if run.t0 is not None:
        for event, epoch in p.undated:
            event.t = round(epoch - run.t0, 3)
    for s in run.samples:
        if s.error is None and s.status == "failed":
            warn(run, f"line {s.source.line if s.source else '?'}: failed job without a message")
    add_sample_events(run)
    finish_from_samples(run)
    return run
