"""Streaming reader of Proxmox VE migration task logs: one line in, records out.

:func:`iter_records` turns the lines of a ``qmigrate``/``hamigrate`` task log into a
stream of :class:`~migtune.model.Sample` (progress counters), :class:`~migtune.model.Event`
(everything else that happened) and :class:`Update` (a run-level fact: a setting, the
VM id, the outcome...).  It keeps only a few values of state, so a log of any length is
read in constant memory; :mod:`migtune.sources.proxmox` folds the stream into a Run.

Templates, their units and their history are in docs/platforms.md §1.2-§1.6; the
rarely seen ones live in :mod:`migtune.sources.proxmox_templates`.

Speed: a long log is almost only progress and xbzrle lines, one pair per second, so
those take a short path (stamp read from the last minute's, one regex call for both,
cached size strings, records built without the generic call machinery); everything
else goes through the template table.  ``benchmarks/bench_parse.py`` measures it.
"""

from __future__ import annotations

import datetime as _dt
import functools
import re
from collections.abc import Iterable, Iterator

from migtune.model import Event, Sample, SourceRef, Xbzrle
from migtune.sources.proxmox_templates import Context, Update, classify

_MONTHS = {
    m: i + 1
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
    )
}
# Pre-2017 stamps have no year; any fixed leap year works since only differences matter.
ASSUMED_YEAR = 2000
_EPOCH = _dt.datetime(1970, 1, 1)
_DATE_REMOVED = "[date removed] "
# "SS " -> (seconds,): the tail of an ISO stamp in the same minute as the last one
# (a 1-tuple so that second 0 is true in the walrus test).
_SECONDS = {f"{s:02d} ": (s,) for s in range(61)}
# Slice objects made once: Python 3.11 builds one per `x[a:b]` otherwise (hot path).
# A stamp key is the first 20 (ISO), 16 (short) or 15 ([date removed]) characters.
_ISO_KEY, _SHORT_KEY, _REMOVED_KEY = slice(20), slice(16), slice(15)
_MINUTE, _SECOND = slice(17), slice(17, None)  # of an ISO key: "YYYY-MM-DD HH:MM:", "SS "

# The two hot templates (one line per second of migration each), matched first.
# Sizes are matched loosely ("<number> <unit>") and checked when converted: faster.
# Optional parts are written "(?:...|)", not "(?:...)?": the same match (the part first,
# then nothing), but a branch is cheaper for the regex engine than a repeat.  Repeats
# are possessive ("++"): each is followed by a character it cannot match, so giving
# characters back could never help; saying so spares the engine its bookkeeping.
_PROGRESS_RE = re.compile(
    r"migration ([a-z-]++), transferred ([^ ]++ [^ ]++) of ([^ ]++ [^ ]++) VM-state,"
    r" ([^ /]++ [^ /]++)/s"
    r"(?: \(\+ ([^ ]++ [^ ]++) VFIO-state\)|)(?:, VM dirties lots of memory: ([^ /]++ [^ /]++)/s|)"
)
_XBZRLE_RE = re.compile(
    r"xbzrle: send updates to (\d++) pages in ([^ ]++ [^ ]++) encoded memory"
    r"(?:, cache-miss ([0-9.]++)%|)(?:, overflow (\d++)|)"
)
# Both in one pattern, so one match call per line: they start with different words.
_HOT_RE = re.compile(f"(?:{_PROGRESS_RE.pattern})|(?:{_XBZRLE_RE.pattern})")
_OLD_PROGRESS_RE = re.compile(
    r"migration status: ([\w-]+) \(transferred (\d{1,24}), remaining (\d{1,24})\), total (\d{1,24})\)?"
)
_OLD_XBZRLE_RE = re.compile(
    r"migration xbzrle cachesize: (\d{1,24}) transferred (\d{1,24}) pages (\d{1,24}) cachemiss (\d{1,24})"
    r" overflow (\d{1,24})"
)
_FACTORS = {"B": 1, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3, "TiB": 1024**4, "PiB": 1024**5}
# Control characters (other than tab) or U+FFFD from undecodable bytes: not a log line.
_GARBAGE_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\ufffd]")
# A message continued on the next physical line (as in the real log
# tests/fixtures/real/proxmox-blog-machine-type-too-new-failure.txt) is glued back, within reason.
_MAX_CONTINUATION = 2000


Record = Sample | Event | Update


@functools.lru_cache(maxsize=64)
def _day(date: str, short: bool, year: int) -> float | None:
    """Epoch seconds of midnight of a stamp's date, or None if it is not a date."""
    try:
        if short:
            month = _MONTHS.get(date[:3])
            if month is None or not date[4:6].strip().isdecimal():
                return None
            day = _dt.datetime(year, month, int(date[4:6]))
        else:
            if not (date[0:4] + date[5:7] + date[8:10]).isdecimal() or date[7] != "-":
                return None
            day = _dt.datetime(int(date[0:4]), int(date[5:7]), int(date[8:10]))
    except ValueError:
        return None
    return (day - _EPOCH).total_seconds()


def _clock(key: str, short: bool, year: int) -> float | None:
    """Epoch seconds of a stamp (node-local time read as UTC), or None if it is not one."""
    day = _day(key[:6], True, year) if short else _day(key[:10], False, year)
    if day is None:
        return None
    hms = key[7:15] if short else key[11:19]
    h, m, s = hms[0:2], hms[3:5], hms[6:8]
    if hms[2] != ":" or hms[5] != ":" or not (h + m + s).isdecimal():
        return None
    h, m, s = int(h), int(m), int(s)
    if h > 23 or m > 59 or s > 60:
        return None
    return day + h * 3600 + m * 60 + s


def iter_records(lines: Iterable[str], start: int = 1) -> Iterator[Record]:
    """Read a Proxmox task log line by line; yields records in line order.

    ``lines`` may be a list or an open file (trailing newlines are stripped).  Sample
    and event ``t`` are seconds since the first timestamped line (``run.t0``, emitted
    once as ``Update("run.t0")``); lines without a stamp take the last stamp seen,
    ``[date removed]`` lines have ``t=None``.  Never raises on odd input.
    """
    ctx = Context()
    held: Record | None = None  # the last record, kept back for xbzrle / continuations
    held_ts_line = -1  # line number of the held record when it came from a stamped line
    last_key = last_minute = ""
    key_len = 0
    key_slice = slice(0)  # slice(key_len), kept in step with it
    minute_epoch = 0.0
    last_epoch: float | None = None
    t0: float | None = None
    t: float | None = None
    year = ASSUMED_YEAR
    hot_re = _HOT_RE.match
    progress_seen = False
    sizes: dict[str, int] = {}  # "40.6 GiB" -> bytes; the same few strings recur
    rates: dict[str, float] = {}  # "46.0 MiB" -> bytes/s, as float
    misses: dict[str, float] = {}  # "99.59" -> 0.9959
    sizes_get, rates_get, misses_get = sizes.get, rates.get, misses.get
    xbzrle_slot = -1  # line number of a held progress sample still waiting for its xbzrle
    # The hot path builds its records in two steps, object.__new__ then the class's own
    # __init__ called as a plain function: the same objects, without type.__call__'s
    # generic argument tuple/dict (a third of the cost of a 30-field Sample).  The frozen
    # SourceRef's __init__ goes through object.__setattr__ per field: its slot
    # descriptors set the same two fields for half the cost.
    new_obj = object.__new__
    init_sample = Sample.__init__
    init_xbzrle = Xbzrle.__init__
    set_ref_line = SourceRef.line.__set__  # type: ignore[attr-defined]
    set_ref_text = SourceRef.text.__set__  # type: ignore[attr-defined]
    for no, line in enumerate(lines, start):
        # --- timestamp prefix: message starts at `off` ----------------------------------
        # Two shortcuts for the lines of a long log come first, on the line as read: one
        # that starts with a stamp is not blank, and its trailing newline changes neither
        # the stamp nor a hot-path match (no capture group there can end the line), so it
        # is stripped only where the text is kept.
        key = line[key_slice]
        if key == last_key and key:
            stamped, off = True, key_len  # the same stamp as the last line: t unchanged
        elif key[_MINUTE] == last_minute and last_minute and (sec := _SECONDS.get(key[_SECOND])):
            # The same minute as the last (ISO) stamp: only the seconds to read.  Anything
            # odd (not "SS ") takes the full path below, which reads it the same way.
            stamped, off = True, 20  # (key_len is already 20)
            last_key, last_epoch = key, minute_epoch + sec[0]
            t = last_epoch - t0
        else:
            line = line.rstrip("\r\n")
            if not line or line.isspace():
                continue
            stamped = True
            if len(line) > 19 and line[4] == "-" and line[10] == " " and line[19] == " ":
                off = 20
                key = line[:20]
                epoch = _clock(key, False, year)
                if epoch is not None:
                    last_minute, minute_epoch = key[:17], epoch - int(key[17:19])
                if epoch is None:
                    stamped, off = False, 0
                else:
                    last_key, last_epoch, key_len = key, epoch, 20
                    key_slice = _ISO_KEY
                    if t0 is None:
                        t0 = epoch
                        ctx.timestamps = "iso"
                        yield Update("run.t0", t0, no)
                        yield Update("version", (">=", (5, 0)), no)
                    t = last_epoch - t0
            elif len(line) > 15 and line[3] == " " and line[9] == ":" and line[15] == " ":
                off = 16
                key = line[:16]
                epoch = _clock(key, True, year)
                # Dec 31 -> Jan 01: the year rolled over while the task ran.
                if epoch is not None and last_epoch is not None and epoch < last_epoch - 86400:
                    year += 1
                    epoch = _clock(key, True, year)
                if epoch is None:
                    stamped, off = False, 0
                else:
                    last_key, last_epoch, key_len = key, epoch, 16
                    key_slice = _SHORT_KEY
                    if t0 is None:
                        t0 = epoch
                        ctx.timestamps = "short"
                        yield Update("run.t0", t0, no)
                        yield Update("meta.year_assumed", ASSUMED_YEAR, no)
                        yield Update("version", ("<=", (4, 4)), no)
                    t = last_epoch - t0
            elif line.startswith(_DATE_REMOVED):
                off = 15
                if ctx.timestamps is None:
                    ctx.timestamps = "removed"
                last_key, last_epoch, key_len = _DATE_REMOVED, None, 15
                key_slice = _REMOVED_KEY
                t = None
            else:
                stamped, off = False, 0
        # --- hot path: progress and xbzrle lines (one of each per logged poll) ---------
        if m := hot_re(line, off):
            status, done, total, rate, vfio, dirty, pages, encoded, miss, overflow = m.groups()
        else:
            status = pages = None
        if status is not None:
            try:
                dirty_rate = None if dirty is None else rates_get(dirty) or _rate(rates, dirty)
                ref = new_obj(SourceRef)
                set_ref_line(ref, no)
                set_ref_text(ref, line.rstrip("\r\n"))
                s = new_obj(Sample)
                init_sample(
                    s,
                    t,
                    status,
                    sizes_get(done) or _size(sizes, done),
                    None,
                    sizes_get(total) or _size(sizes, total),
                    None,
                    rates_get(rate) or _rate(rates, rate),
                    dirty_rate,
                    source=ref,
                )
                if vfio is not None:
                    s.vfio_bytes = _size(sizes, vfio)
            except (KeyError, ValueError, OverflowError):
                pass  # not really a progress line: the general path reports it
            else:
                if not progress_seen:
                    progress_seen = ctx.progress_seen = True
                    yield Update("meta.pve_format", "new", no)
                    yield Update("version", (">=", (6, 4)), no)
                if status == "device" and not ctx.device_seen:
                    ctx.device_seen = True
                    yield Update("version", (">=", (9, 0)), no)
                if held is not None:
                    yield held
                # A fresh progress sample (no xbzrle yet, transferred known) on line `no`:
                # the xbzrle line right after it belongs to it.
                held = s
                held_ts_line = xbzrle_slot = no
                continue
        elif pages is not None:
            try:
                # Proxmox leaves out a zero miss rate / overflow count: still known values.
                xb = new_obj(Xbzrle)
                init_xbzrle(
                    xb,
                    ctx.cache_size,
                    sizes_get(encoded) or _size(sizes, encoded),
                    int(pages),
                    None,
                    0.0 if miss is None else misses_get(miss) or _miss(misses, miss),
                    None,
                    0 if overflow is None else int(overflow),
                )
            except (KeyError, ValueError, OverflowError):
                pass
            else:
                if xbzrle_slot == no - 1:
                    held.xbzrle = xb
                    xbzrle_slot = -1
                    continue
                if held is not None:
                    yield held
                line = line.rstrip("\r\n")
                held, held_ts_line = Sample(t, xbzrle=xb, source=SourceRef(no, line)), no
                continue
        line = line.rstrip("\r\n")  # (a no-op unless a shortcut above kept the newline)
        if line.startswith("migration status: ", off) and (m := _OLD_PROGRESS_RE.match(line, off)):
            status, done, remaining, total = m.groups()
            s = Sample(t, status, int(done), int(remaining), int(total), source=SourceRef(no, line))
            if not progress_seen:
                progress_seen = ctx.progress_seen = True
                yield Update("meta.pve_format", "old", no)
                yield Update("version", ("<=", (6, 3)), no)
            if held is not None:
                yield held
            held = s
            held_ts_line = xbzrle_slot = no  # (a new-style xbzrle line may follow: mixed log)
            continue
        if line.startswith("migration xbzrle ", off) and (m := _OLD_XBZRLE_RE.match(line, off)):
            size, encoded, pages, miss, overflow = (int(v) for v in m.groups())
            xb = Xbzrle(size, encoded, pages, miss, None, None, overflow)
            ctx.cache_size = size
            if type(held) is Sample and held.xbzrle is None and held_ts_line == no - 1:
                held.xbzrle = xb
            else:
                if held is not None:
                    yield held
                held, held_ts_line = Sample(t, xbzrle=xb, source=SourceRef(no, line)), no
            continue
        err = line.startswith("ERROR: ", off)
        if err:
            off += 7
        msg = line[off:] if off else line
        if not stamped and held is None and t0 is None and msg.startswith("#"):
            continue  # a leading "# ..." comment block (tests/fixtures/real); never Proxmox's
        # --- a message broken over two physical lines (no stamp on the second) ---------
        if (
            not stamped
            and type(held) is Event
            and held_ts_line == no - 1
            and (held.source.text.endswith(" ") or msg[:1].islower())
            and len(held.message) < _MAX_CONTINUATION
            and not _GARBAGE_RE.search(msg)
            and not classify(ctx, msg, t, no, line, False, False, probe=True)
        ):
            held.message = f"{held.message.rstrip()} {msg.strip()}"
            held.source = SourceRef(held.source.line, f"{held.source.text}\n{line}")
            held.data["continued"] = True
            held_ts_line = no
            continue
        # --- everything else ------------------------------------------------------------
        if _GARBAGE_RE.search(line):
            if held is not None:
                yield held
                held = None
            yield Update("warning", f"line {no}: unreadable characters, line skipped", no)
            continue
        records = classify(ctx, msg, t, no, line, stamped, err)
        for rec in records:
            if held is not None:
                yield held
            held = rec
        if records:
            held_ts_line = no if stamped else -1
    if held is not None:
        yield held
    yield Update("meta.timestamps", ctx.timestamps or "none", None)


def _rate(cache: dict[str, float], text: str) -> float:
    """``46.0 MiB`` (of ``46.0 MiB/s``) to bytes/s as a float, in a bounded cache."""
    number, unit = text.split(" ")
    value = float(round(float(number) * _FACTORS[unit]))  # whole bytes, as _size
    if len(cache) > 4096:
        cache.clear()
    cache[text] = value
    return value


def _miss(cache: dict[str, float], text: str) -> float:
    """An xbzrle cache-miss percentage (``99.59``) as a 0..1 rate, in a bounded cache."""
    value = float(text) / 100.0
    if len(cache) > 4096:
        cache.clear()
    cache[text] = value
    return value


def _size(cache: dict[str, int], text: str) -> int:
    """``render_bytes`` text (``40.6 GiB``) to bytes, remembered in a bounded cache."""
    value = cache.get(text)
    if value is None:
        number, unit = text.split(" ")
        value = round(float(number) * _FACTORS[unit])
        if len(cache) > 4096:
            cache.clear()
        cache[text] = value
    return value
