"""Measure a running guest without migrating it: QEMU's ``calc-dirty-rate``.

``calc-dirty-rate`` counts the *distinct* pages the guest changes over a period of
``calc-time`` and ``query-dirty-rate`` reports them as MiB/s, an integer
(docs/qemu-migration.md §9).  A page written twice in the period counts once, exactly
as in a migration pass, so periods of several lengths give the curve a pass of that
length would leave dirty: short periods bound the write rate, long ones the working
set.  Three modes:

* ``dirty-ring``: per-vCPU counts from KVM's dirty ring (the VM must run under KVM with
  ``dirty-ring-size``); the only mode with per-vCPU rates;
* ``dirty-bitmap``: the VM's dirty bitmap (KVM without a dirty ring).  Under TCG the
  measurement's bitmap sync sees no writes and reports 0, so it is not used there;
* ``page-sampling``: hashes a random sample of pages (``sample-pages`` per GiB, the
  most QEMU allows here) at both ends of the period; works everywhere, with sampling
  noise, which :meth:`DirtyPeriod.bounds` carries.

The zero-page share is not something QEMU reports before a migration, nor how many
bytes a rewrite changes in a page (what XBZRLE's deltas carry).  :func:`sample_pages`
reads a random sample of guest pages twice, a second apart, with the monitor's
read-only ``xp`` command (no page is written, the guest is not paused, no file is
written) and says so; :func:`measure` leaves both unknown when that is not possible.

Nothing here sets a migration parameter or capability.
"""

from __future__ import annotations

import contextlib
import math
import random
import re
import time
from dataclasses import dataclass, field
from typing import Any

from migtune.errors import InputError
from migtune.qemu.qmp import QMP, QMPCommandError
from migtune.units import GiB, MiB

MODES = ("dirty-ring", "dirty-bitmap", "page-sampling")
SAMPLE_PAGES = 16384  # per GiB: QEMU's maximum, for the least sampling noise
MIN_PERIOD = 0.1  # s; QEMU accepts 50 ms (8.2+), shorter ones are mostly noise
MAX_PERIOD = 60.0  # s, QEMU's upper bound for calc-time
ZERO_SAMPLES = 1024  # pages read to estimate the zero-page share
PAGE = 4096


@dataclass
class DirtyPeriod:
    """One ``calc-dirty-rate`` period and QEMU's answer."""

    length: float  # s, the calc-time asked
    mode: str
    rate_mib: int  # MiB/s as QEMU reports it (rounded down)
    sample_pages: int | None = None  # per GiB, page-sampling only
    vcpu_rates: list[float] | None = None  # bytes/s per vCPU (dirty-ring)
    started: float = 0.0  # s since the measurement began

    @property
    def rate(self) -> float:
        return self.rate_mib * MiB

    def bounds(self, ram: int) -> tuple[float, float]:
        """Distinct bytes dirtied over the period, (low, high): QEMU rounds down to whole
        MiB/s, and page sampling adds binomial noise (two standard deviations)."""
        lo, hi = self.rate_mib * MiB * self.length, (self.rate_mib + 1) * MiB * self.length
        if self.mode == "page-sampling" and self.sample_pages:
            n = max(1.0, ram / GiB * self.sample_pages)
            f = min(1.0, (lo + hi) / 2 / ram)
            sigma = math.sqrt(max(f * (1 - f), 1.0 / n) / n) * ram
            lo, hi = lo - 2 * sigma, hi + 2 * sigma
        return max(0.0, lo), min(float(ram), hi)

    def to_dict(self) -> dict[str, Any]:
        return {
            "length_s": self.length,
            "mode": self.mode,
            "dirty_rate_bytes_per_s": self.rate,
            "sample_pages_per_gib": self.sample_pages,
            "vcpu_dirty_rate_bytes_per_s": self.vcpu_rates,
            "started_s": round(self.started, 3),
        }


@dataclass
class DirtyMeasurement:
    """Every period measured, the mode used and why the others were not."""

    mode: str
    periods: list[DirtyPeriod]
    ram_bytes: int
    modes_not_used: dict[str, str] = field(default_factory=dict)
    kvm: bool | None = None
    zero_share: float | None = None  # share of guest RAM that reads as zero pages
    zero_samples: int = 0
    zero_how: str = "not measured"
    duration: float = 0.0  # s the whole measurement took
    # bytes that changed in each sampled page the guest rewrote between two reads
    bytes_changed: list[int] = field(default_factory=list)

    def bytes_per_write(self) -> tuple[int, int, int] | None:
        """Quartiles of the bytes changed per rewritten page (None: fewer than 8 seen)."""
        v = sorted(self.bytes_changed)
        if len(v) < 8:
            return None
        return v[len(v) // 4], v[len(v) // 2], v[(3 * len(v)) // 4]

    def by_length(self) -> dict[float, list[DirtyPeriod]]:
        out: dict[float, list[DirtyPeriod]] = {}
        for p in self.periods:
            out.setdefault(p.length, []).append(p)
        return dict(sorted(out.items()))

    def steadiness(self) -> float | None:
        """Largest relative spread (max-min over mean) of repeated periods of one length,
        beyond what QEMU's rounding and sampling explain; None with no repeats."""
        worst = None
        for length, ps in self.by_length().items():
            if len(ps) < 2:
                continue
            rates = [p.rate for p in ps]
            mean = sum(rates) / len(rates)
            if mean <= 0:
                continue
            lo, hi = ps[0].bounds(self.ram_bytes)
            noise = (hi - lo) / length
            spread = max(0.0, max(rates) - min(rates) - noise) / mean
            worst = spread if worst is None else max(worst, spread)
        return worst

    def vcpu_rates(self) -> list[float] | None:
        rates = [p.vcpu_rates for p in self.periods if p.vcpu_rates]
        if not rates:
            return None
        n = len(rates[0])
        return [sum(r[i] for r in rates if len(r) == n) / len(rates) for i in range(n)]

    def to_dict(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "modes_not_used": self.modes_not_used,
            "kvm": self.kvm,
            "ram_bytes": self.ram_bytes,
            "periods": [p.to_dict() for p in self.periods],
            "steadiness_spread": self.steadiness(),
            "vcpu_dirty_rate_bytes_per_s": self.vcpu_rates(),
            "zero_page_share": self.zero_share,
            "zero_page_samples": self.zero_samples,
            "zero_page_how": self.zero_how,
            "rewritten_pages": len(self.bytes_changed),
            "bytes_changed_per_page": list(self.bytes_per_write() or []) or None,
            "duration_s": round(self.duration, 3),
        }


def period_lengths(budget: float, ms_units: bool = True) -> list[float]:
    """The periods to measure within ``budget`` seconds: a ladder of lengths (0.1, 0.3,
    1, 2, 5, 10, 30 s, the longest at most half the budget: long periods bound the
    working set), then 1 s periods again while they fit (repeats of one length show how
    steady the guest is), then shorter ones.  Without millisecond units (QEMU before
    8.2) the ladder is 1, 2, 4 ... s."""
    if budget <= 0:
        raise InputError("--measure must be positive")
    longest = max(MIN_PERIOD, min(MAX_PERIOD, budget / 2))
    if ms_units:
        ladder = [x for x in (0.1, 0.3, 1.0, 2.0, 5.0, 10.0, 30.0) if x <= longest + 1e-9]
        repeats = (1.0, 0.3, 0.1)
    else:
        ladder = [x for x in (1.0, 2.0, 4.0, 8.0, 16.0, 32.0) if x <= max(1.0, longest)]
        repeats = (1.0,)
    fill = budget * 0.95  # each period costs a few QMP round trips besides its length
    out: list[float] = []
    for length in ladder:
        if sum(out) + length <= fill + 1e-9:
            out.append(length)
    for length in repeats:
        n = 0
        while sum(out) + length <= fill + 1e-9 and n < 10:  # then the next length
            out.append(length)
            n += 1
    return out or [ladder[0]]


def _version(q: QMP) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", q.version())
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def _kvm(q: QMP) -> bool | None:
    with contextlib.suppress(QMPCommandError):
        reply = q.cmd("query-kvm")
        return bool(reply.get("enabled")) if isinstance(reply, dict) else None
    return None


def _one(q: QMP, length: float, mode: str, ms_units: bool, timeout: float) -> dict[str, Any]:
    args: dict[str, Any] = {"calc-time": max(1, round(length))}
    if ms_units:
        args = {"calc-time": max(50, round(length * 1000)), "calc-time-unit": "millisecond"}
    if mode == "page-sampling":
        args["sample-pages"] = SAMPLE_PAGES
    else:
        args["mode"] = mode
    q.cmd("calc-dirty-rate", **args)
    deadline = time.monotonic() + length + timeout
    time.sleep(length)
    while True:
        reply = q.cmd("query-dirty-rate")
        if reply.get("status") == "measured":
            return reply
        if time.monotonic() > deadline:
            raise InputError(f"calc-dirty-rate did not finish within {length + timeout:g} s")
        time.sleep(0.05)


def _period(reply: dict[str, Any], length: float, mode: str, started: float) -> DirtyPeriod:
    vcpus = reply.get("vcpu-dirty-rate")
    return DirtyPeriod(
        length=length,
        mode=mode,
        rate_mib=int(reply.get("dirty-rate") or 0),
        sample_pages=reply.get("sample-pages") or None if mode == "page-sampling" else None,
        vcpu_rates=[float(v.get("dirty-rate", 0)) * MiB for v in vcpus] if vcpus else None,
        started=started,
    )


def choose_mode(q: QMP, kvm: bool | None, ms_units: bool, not_used: dict[str, str]) -> str:
    """The most exact mode this QEMU accepts; why each better one was not used."""
    if not kvm:
        why = "needs KVM (under TCG the measurement's bitmap sync sees no writes)"
        not_used["dirty-ring"] = why
        not_used["dirty-bitmap"] = why
        return "page-sampling"
    for mode in ("dirty-ring", "dirty-bitmap"):
        try:
            _one(q, MIN_PERIOD, mode, ms_units, 5.0)
            return mode
        except QMPCommandError as exc:
            not_used[mode] = f"QEMU refused it: {exc.desc}"
    return "page-sampling"


def _read_page(q: QMP, page: int) -> bytes | None:
    """One guest page through the monitor's read-only ``xp`` (None: not readable)."""
    text = q.cmd("human-monitor-command", **{"command-line": f"xp /512xg {page * PAGE:#x}"})
    # one line per 16 bytes: "0000000000001000: 0x0000000000000000 0x..."
    words = [
        int(w, 16)
        for line in str(text).splitlines()
        for w in re.findall(r"0x([0-9a-fA-F]+)", line.partition(":")[2])
    ]
    if len(words) != 512:
        return None
    return b"".join(w.to_bytes(8, "little") for w in words)


@dataclass
class PageSample:
    """What reading a random sample of guest pages twice, ``gap`` seconds apart, shows."""

    zero_share: float | None = None  # share of pages that read as zero
    pages: int = 0
    changed_pages: int = 0  # pages whose content differed between the two reads
    bytes_changed: list[int] = field(default_factory=list)  # per changed page
    how: str = "not measured"


def sample_pages(
    q: QMP, ram: int, samples: int = ZERO_SAMPLES, gap: float = 1.0, seed: int = 0
) -> PageSample:
    """Read ``samples`` random guest pages with the monitor's ``xp`` (read-only), twice:
    the share of zero pages, and for the pages the guest changed in between, how many
    bytes changed (what an XBZRLE delta has to carry).  Guest-physical RAM is assumed
    to start at 0 (x86 ``pc``/``q35``); above 2 GiB only the low 2 GiB are sampled (the
    rest of RAM sits above the 4 GiB hole, where this sample does not look)."""
    low = min(ram, 2 * GiB)
    rng = random.Random(seed)
    # skip the first MiB: BIOS, option ROMs and the VGA window are not guest RAM
    pages = sorted(rng.randrange(256, low // PAGE) for _ in range(samples))
    try:
        first = {p: _read_page(q, p) for p in pages}
    except QMPCommandError:
        return PageSample(how="the monitor's xp command is not available")
    read = {p: b for p, b in first.items() if b is not None}
    if not read:
        return PageSample(how="no guest page could be read with xp")
    out = PageSample(pages=len(read))
    out.zero_share = sum(1 for b in read.values() if not any(b)) / len(read)
    out.how = f"{len(read)} random guest pages read with the monitor's xp (read-only)"
    if ram > low:
        out.how += "; only the low 2 GiB sampled"
    if gap > 0:
        time.sleep(gap)
        for p, before in read.items():
            after = _read_page(q, p)
            if after is not None and after != before:
                out.bytes_changed.append(sum(x != y for x, y in zip(before, after, strict=True)))
        out.changed_pages = len(out.bytes_changed)
    return out


def measure(
    q: QMP,
    budget: float = 10.0,
    *,
    ram: int | None = None,
    zero_samples: int = ZERO_SAMPLES,
    say: Any = None,
) -> DirtyMeasurement:
    """Measure the guest behind ``q`` for about ``budget`` seconds (see module docstring).

    Raises ``InputError`` when a dirty-rate measurement is already running (someone
    else's; QEMU allows one at a time)."""
    t0 = time.monotonic()
    if ram is None:
        summary = q.cmd("query-memory-size-summary")
        ram = int(summary.get("base-memory") or 0) + int(summary.get("plugged-memory") or 0)
    if not ram:
        raise InputError("QEMU reports no guest RAM (query-memory-size-summary)")
    with contextlib.suppress(QMPCommandError):
        if q.cmd("query-dirty-rate").get("status") == "measuring":
            raise InputError("a dirty-rate measurement is already running on this QEMU")
    ms_units = _version(q) >= (8, 2)
    kvm = _kvm(q)
    not_used: dict[str, str] = {}
    mode = choose_mode(q, kvm, ms_units, not_used)
    if mode != "page-sampling":
        not_used["page-sampling"] = f"{mode} counts every page, sampling only some"
    periods: list[DirtyPeriod] = []
    for length in period_lengths(budget, ms_units):
        if say:
            say(f"measuring the dirty rate over {length:g} s ({mode})")
        started = time.monotonic() - t0
        periods.append(_period(_one(q, length, mode, ms_units, 10.0), length, mode, started))
    if mode != "page-sampling" and all(p.rate_mib == 0 for p in periods):
        # a mode that sees nothing while a guest OS always writes something: cross-check
        check = _period(_one(q, 1.0, "page-sampling", ms_units, 10.0), 1.0, "page-sampling", 0)
        if check.rate_mib > 0:
            not_used[mode] = f"reported 0 while page sampling saw {check.rate_mib} MiB/s"
            not_used.pop("page-sampling", None)
            mode = "page-sampling"
            periods = [check]
            for length in period_lengths(max(1.0, budget - 1.0), ms_units):
                started = time.monotonic() - t0
                periods.append(
                    _period(_one(q, length, mode, ms_units, 10.0), length, mode, started)
                )
    out = DirtyMeasurement(mode, periods, ram, not_used, kvm)
    if zero_samples > 0:
        if say:
            say("reading a sample of guest pages (zero pages, bytes changed per write)")
        ps = sample_pages(q, ram, zero_samples)
        out.zero_share, out.zero_samples, out.zero_how = ps.zero_share, ps.pages, ps.how
        out.bytes_changed = ps.bytes_changed
    out.duration = time.monotonic() - t0
    return out
