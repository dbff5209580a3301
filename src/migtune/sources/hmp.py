"""QEMU human monitor (HMP) output: ``info migrate``, ``info migrate_parameters``,
``info migrate_capabilities``.

Layouts understood (docs/qemu-migration.md §10):

* 7.2 and 8.x-10.0: one ``label: value`` line per counter (``Migration status:``,
  ``transferred ram: N kbytes``, ...).  HMP "kbytes" are KiB; ``throughput`` is
  decimal megabits/s.  Very old QEMUs (2015) print ``milliseconds`` and a one-line
  ``capabilities: xbzrle: off ...`` header; both are read.
* 10.1+ compact layout (``Status:``, ``Time (ms): total=..., setup=..., exp_down=...``,
  ``Sizes:``/``Transfers:`` with ``size_to_str`` values such as ``1.5 GiB``, and the
  ``-a`` blocks ``XBZRLE: ...`` and ``CPU Throttle (%): ...``).  ``size_to_str``
  keeps three significant digits, so those byte counts are approximate.

A file may hold several snapshots.  A new one starts at an ``info migrate`` command
line (with or without the ``(qemu)`` prompt) or at a second status line.  Each
snapshot is one :class:`~migtune.model.Sample` whose ``t`` is QEMU's ``total time``.

Parameters and capabilities (``info migrate_parameters``/``_capabilities`` blocks, the
old one-line ``capabilities:`` header, and ``migrate_set_parameter``/``_capability``/
``migrate_set_downtime``/``_speed``/``_cache_size`` commands typed before ``migrate``)
go to ``run.settings``.  A value changed once the migration runs becomes a
``downtime-change``, ``bandwidth-change`` or ``settings`` event instead.  Capability
names are stored under their QMP names (``x-postcopy-ram`` of old QEMUs becomes
``postcopy-ram``).  ``globals:`` lines go to ``run.meta["globals"]``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from migtune.errors import InputError
from migtune.model import Event, Run, Sample, SourceRef, Xbzrle
from migtune.settings import QMP_PARAMETERS, from_qmp_value
from migtune.sources._common import (
    add_sample_events,
    finish_from_samples,
    first_number,
    has_data,
    warn,
)
from migtune.sources._hmp_tables import (
    _CAP_ALIASES,
    _CLASSIC,
    _GLOBALS,
    _IGNORED,
    _OTHER_PARAMS,
    CAPABILITY_NAMES,
)
from migtune.units import KiB, mbps_to_bytes_per_s, parse_size

FORMAT = "hmp"

_PROMPT_RE = re.compile(r"^\s*(?:\(qemu\)\s*)?")
# The label before the first colon, matched on its own: one regex spanning label, colon
# and value backtracked quadratically on lines padded with blanks.
_LABEL_RE = re.compile(r"[A-Za-z][A-Za-z0-9 _()%/-]*")
_PAIR_RE = re.compile(r"(?<![a-z_])([a-z_]+)=([^,]+)")  # look-behind: linear search
_COMMAND_RE = re.compile(r"^\s*(?:\(qemu\)\s*)?info\s+(migrate(?:_parameters|_capabilities)?)\b")
_MIGRATE_RE = re.compile(
    r"^\s*(?:\(qemu\)\s*)?(migrate|migrate_cancel|migrate_start_postcopy)(?:\s+-\w+)*(?:\s+(\S+))?\s*$"
)
_SET_RE = re.compile(
    r"^\s*(?:\(qemu\)\s*)?(migrate_set_parameter|migrate_set_capability|migrate_set_downtime|"
    r"migrate_set_speed|migrate_set_cache_size)\s+(\S+)(?:\s+(\S+))?"
)


def sniff(lines: Sequence[str]) -> float:
    score = 0.0
    for line in lines:
        s = line.strip()
        if (
            s.startswith("Migration status:")
            or re.match(r"Status:\s+\w", s)
            or _COMMAND_RE.match(s)
        ):
            score += 0.4
        elif re.match(
            r"(transferred ram|remaining ram|total ram|dirty sync count|normal bytes):\s+\d+ kbytes",
            s,
        ):
            score += 0.2
        elif re.match(r"Time \(ms\):\s+total=|RAM info:|Throughput \(Mbps\):|Page Types:", s):
            score += 0.3
        elif re.match(r"(downtime-limit|max-bandwidth|xbzrle-cache-size):\s+\d+", s):
            score += 0.2
        if score >= 1.0:
            return 1.0
    return min(score, 1.0)


def _label_value(stripped: str) -> tuple[str, str] | None:
    """``label: value`` of an HMP line (already stripped), or None."""
    label, colon, value = stripped.partition(":")
    label = label.rstrip()
    if not colon or not _LABEL_RE.fullmatch(label):
        return None
    return label, value.strip()


_MAX_PAGE_SIZE = 1 << 30  # 1 GiB huge pages; a larger "page size" is garbage


class _Parser:
    def __init__(self) -> None:
        self.run = Run(format=FORMAT)
        self.mode = "migrate"  # migrate | parameters | capabilities
        self.sample: Sample | None = None
        self.rates: dict[str, float] = {}
        self.recognised = 0
        self.blocked = False  # inside the 10.1+ "Outgoing migration blocked:" list

    # --- snapshots -------------------------------------------------------------
    def start(self, ref: SourceRef) -> Sample:
        self.close()
        self.sample = Sample(source=ref)
        self.rates = {}
        return self.sample

    def current(self, ref: SourceRef) -> Sample:
        return self.sample if self.sample is not None else self.start(ref)

    def close(self) -> None:
        s = self.sample
        self.sample = None
        if s is None or not has_data(s):
            return
        if s.page_size is None and s.normal and s.normal_bytes:
            # Old QEMUs print no page size; normal bytes = normal pages x page size.
            guess = s.normal_bytes / s.normal
            if 1 <= guess <= _MAX_PAGE_SIZE:
                size = 1 << max(0, round(guess).bit_length() - 1)
                if abs(guess - size) < 0.01 * size:
                    s.page_size = size
        if s.page_size and 0 < s.page_size <= _MAX_PAGE_SIZE:
            if "_pps" in self.rates:
                s.page_rate = self.rates["_pps"] * s.page_size
            if "_dirty_pps" in self.rates:
                s.dirty_rate = self.rates["_dirty_pps"] * s.page_size
        s.t = s.total_time
        self.run.samples.append(s)

    # --- settings --------------------------------------------------------------
    def set_param(self, name: str, value: str, ref: SourceRef, command: bool = False) -> bool:
        st = self.run.settings
        if name in QMP_PARAMETERS:
            field = QMP_PARAMETERS[name][0]
            num = first_number(value)
            if num is None:
                return False
            parsed = from_qmp_value(name, num)
            if command and self.run.samples:
                # Changed by the operator while migrating: not the initial setting.
                self._event_setting(name, parsed, ref)
            else:
                self._assign(field, parsed, name, ref)
            return True
        if name in _OTHER_PARAMS:
            old = st.extra.get(name)
            if old is not None and old != value:
                self._event_setting(name, value, ref)
            st.extra.setdefault(name, value)
            return True
        return False

    def _assign(self, field: str, value: float | int, name: str, ref: SourceRef) -> None:
        st = self.run.settings
        old = getattr(st, field)
        if old is None:
            setattr(st, field, value)
        elif old != value:
            self._event_setting(name, value, ref)

    def _event_setting(self, name: str, value: object, ref: SourceRef) -> None:
        kind = {"downtime-limit": "downtime-change", "max-bandwidth": "bandwidth-change"}.get(
            name, "settings"
        )
        t = self.run.samples[-1].t if self.run.samples else None
        data = {name.replace("-", "_"): value, "name": name, "value": value}
        self.run.events.append(Event(t, kind, f"{name} = {value}", data, ref))

    def set_cap(self, name: str, state: str, ref: SourceRef, command: bool = False) -> None:
        name = _CAP_ALIASES.get(name, name)
        caps = self.run.settings.capabilities
        on = state == "on"
        if (name in caps and caps[name] != on) or (command and self.run.samples):
            self._event_setting(name, on, ref)
        if not (command and self.run.samples):
            caps.setdefault(name, on)

    def set_command(self, m: re.Match[str], ref: SourceRef) -> None:
        cmd, arg, value = m.group(1), m.group(2), m.group(3)
        try:
            if cmd == "migrate_set_capability" and value in ("on", "off"):
                self.set_cap(arg, value, ref, command=True)
            elif cmd == "migrate_set_parameter" and value:
                if arg in ("max-bandwidth", "xbzrle-cache-size", "max-postcopy-bandwidth"):
                    # HMP reads these as sizes with MiB as the default unit.
                    num = value + ("M" if value.isdigit() else "")
                    self.set_param(arg, str(parse_size(num)), ref, True)
                else:
                    self.set_param(arg, value, ref, True)
            elif cmd == "migrate_set_downtime":
                secs = first_number(arg)
                if secs is not None:
                    self.set_param("downtime-limit", str(secs * 1000), ref, True)
            elif cmd == "migrate_set_speed":
                num = arg + ("M" if arg.isdigit() else "")
                self.set_param("max-bandwidth", str(parse_size(num)), ref, True)
            elif cmd == "migrate_set_cache_size":
                num = arg + ("M" if arg.isdigit() else "")
                self.set_param("xbzrle-cache-size", str(parse_size(num)), ref, True)
        except (InputError, OverflowError):
            warn(self.run, f"line {ref.line}: cannot read {cmd} value")

    def migrate_command(self, cmd: str, uri: str | None, ref: SourceRef) -> None:
        self.close()
        self.mode = "migrate"
        t = self.run.samples[-1].t if self.run.samples else None
        if cmd == "migrate":
            if uri and self.run.settings.migration_uri is None:
                self.run.settings.migration_uri = uri
            self.run.events.append(Event(t, "ram-start", f"migrate {uri or ''}".strip(), {}, ref))
        elif cmd == "migrate_cancel":
            self.run.events.append(Event(t, "cancelled", "migrate_cancel issued", {}, ref))
        else:
            self.run.events.append(Event(t, "postcopy-start", "post-copy requested", {}, ref))

    def blocked_reason(self, reason: str, ref: SourceRef) -> None:
        reasons = self.run.meta.setdefault("blocked_reasons", [])
        if reason not in reasons:
            reasons.append(reason)
            msg = f"migration blocked: {reason}"
            self.run.events.append(Event(None, "error", msg, {"reason": reason}, ref))

    # --- counters ------------------------------------------------------------
    def status(self, value: str, ref: SourceRef) -> None:
        s = self.sample
        if s is None or s.status is not None:
            s = self.start(ref)
        word, _, rest = value.partition(" ")
        s.status = word.strip()
        err = rest.strip()
        if err.startswith("(") and err.endswith(")"):
            s.error = err[1:-1]
        elif err:
            s.error = err

    def classic(self, label: str, value: str, ref: SourceRef) -> bool:
        spec = _CLASSIC.get(label)
        if spec is None:
            return False
        field, kind = spec
        num = first_number(value)
        s = self.current(ref)
        if num is None:
            warn(self.run, f"line {ref.line}: cannot read {label} value {value!r}")
            return True
        if kind == "kib":
            parsed: float | int = int(num) * KiB
        elif kind == "ms":
            parsed = num / 1000.0
        elif kind == "int":
            parsed = int(num)
        elif kind == "mbps":
            parsed = mbps_to_bytes_per_s(num)
        else:
            parsed = num
        if field.startswith("_"):
            self.rates[field] = float(parsed)
        elif field.startswith("x:"):
            if s.xbzrle is None:
                s.xbzrle = Xbzrle()
            setattr(s.xbzrle, field[2:], parsed)
        else:
            setattr(s, field, parsed)
        return True

    def compact(self, label: str, value: str, ref: SourceRef) -> bool:
        """10.1+ layout; returns False for labels it does not know."""
        pairs = {k: v.strip() for k, v in _PAIR_RE.findall(value)}
        if label == "time (ms)":
            s = self.current(ref)
            for key, field in (
                ("total", "total_time"),
                ("setup", "setup_time"),
                ("exp_down", "expected_downtime"),
                ("down", "downtime"),
            ):
                if key in pairs and (num := first_number(pairs[key])) is not None:
                    setattr(s, field, num / 1000.0)
            return True
        if label == "ram info":
            self.current(ref)
            return True
        if label == "throughput (mbps)":
            num = first_number(value)
            if num is not None:
                self.current(ref).throughput = mbps_to_bytes_per_s(num)
            return True
        sizes = {
            "sizes": {"pagesize": "page_size", "total": "total"},
            "transfers": {"transferred": "transferred", "remain": "remaining"},
            "channels": {
                "precopy": "precopy_bytes",
                "multifd": "multifd_bytes",
                "postcopy": "postcopy_bytes",
                "vfio": "vfio_bytes",
            },
        }
        if label in sizes:
            s = self.current(ref)
            for key, field in sizes[label].items():
                if key in pairs:
                    try:
                        setattr(s, field, parse_size(pairs[key]))
                    except (InputError, OverflowError):
                        warn(self.run, f"line {ref.line}: cannot read size {pairs[key]!r}")
            return True
        counts = {
            "page types": {"normal": ("normal", int), "zero": ("duplicate", int)},
            "page rates (pps)": {"transfer": ("_pps", float), "dirty": ("_dirty_pps", float)},
            "others": {
                "dirty_syncs": ("passes", int),
                "postcopy_req": ("postcopy_requests", int),
                "downtime_bytes": ("downtime_bytes", int),
            },
        }
        if label in counts:
            s = self.current(ref)
            for key, (field, conv) in counts[label].items():
                if key in pairs and (num := first_number(pairs[key])) is not None:
                    if field.startswith("_"):
                        self.rates[field] = conv(num)
                    else:
                        setattr(s, field, conv(num))
            return True
        if label == "xbzrle" or (label == "" and "miss_rate" in pairs):
            s = self.current(ref)
            x = s.xbzrle if s.xbzrle is not None else Xbzrle()
            s.xbzrle = x
            for key, field, conv in (
                ("size", "cache_size", int),
                ("transferred", "bytes", int),
                ("pages", "pages", int),
                ("miss", "cache_miss", int),
                ("miss_rate", "cache_miss_rate", float),
                ("encode_rate", "encoding_rate", float),
                ("overflow", "overflow", int),
            ):
                if key in pairs and (num := first_number(pairs[key])) is not None:
                    setattr(x, field, conv(num))
            return True
        if label == "cpu throttle (%)":
            num = first_number(value)
            if num is not None:
                self.current(ref).throttle_pct = num
            return True
        return False

    # --- driver ----------------------------------------------------------------
    def line(self, no: int, raw: str) -> None:
        text = raw.rstrip()
        if not text.strip():
            return
        ref = SourceRef(no, raw)
        if m := _COMMAND_RE.match(text):
            self.recognised += 1
            which = m.group(1)
            if which == "migrate":
                self.mode = "migrate"
                self.start(ref)
            else:
                self.close()
                self.mode = which.removeprefix("migrate_")
            return
        if m := _MIGRATE_RE.match(text):
            self.recognised += 1
            self.migrate_command(m.group(1), m.group(2), ref)
            return
        if m := _SET_RE.match(text):
            self.recognised += 1
            self.close()  # the snapshot before the command is complete
            self.mode = "migrate"
            self.set_command(m, ref)
            return
        body = _PROMPT_RE.sub("", text, count=1)
        if body.startswith("capabilities:"):
            pairs = re.findall(
                r"(?<![a-z0-9-])([a-z0-9-]+):\s*(on|off)\b", body[len("capabilities:") :]
            )
            for name, state in pairs:
                self.set_cap(name, state, ref)  # one-line list of very old QEMUs
            self.recognised += bool(pairs)
            return
        stripped = body.strip()
        if self.blocked and text[:1].isspace():
            self.blocked_reason(stripped, ref)
            return
        self.blocked = False
        if stripped == "Outgoing migration blocked:":
            self.blocked = True
            self.recognised += 1
            return
        if stripped.startswith("miss_rate="):  # second line of the 10.1+ XBZRLE block
            self.recognised += self.compact("", stripped, ref)
            return
        if stripped in ("]", "[") or stripped.startswith(
            ("tcp:", "unix:", "rdma:", "fd:", "vsock:")
        ):
            return  # socket address list printed inside a snapshot
        pair = _label_value(stripped)
        if pair is None:
            warn(self.run, f"line {no}: not understood: {stripped[:80]}")
            return
        key, value = pair
        label = key.lower()
        if label in ("migration status", "status"):
            self.mode = "migrate"
            self.status(value, ref)
            self.recognised += 1
            return
        if label in ("globals", "globals:"):
            self.recognised += 1
            return
        if key in _GLOBALS:
            self.run.meta.setdefault("globals", {})[key] = value
            self.recognised += 1
            return
        if value in ("on", "off") and (self.mode == "capabilities" or key in CAPABILITY_NAMES):
            self.set_cap(key, value, ref)
            self.recognised += 1
            return
        if key in QMP_PARAMETERS or key in _OTHER_PARAMS or self.mode == "parameters":
            if self.set_param(key, value, ref):
                self.recognised += 1
                return
            if self.mode == "parameters":
                self.run.settings.extra.setdefault(key, value)
                return
        if self.classic(label, value, ref) or self.compact(label, value, ref):
            self.recognised += 1
            return
        if label in _IGNORED or label.startswith(("dirty-limit", "postcopy")):
            return
        warn(self.run, f"line {no}: unknown field {key!r}")


def parse(lines: Sequence[str]) -> Run:
    p = _Parser()
    for no, line in enumerate(lines, 1):
        p.line(no, line)
    p.close()
    run = p.run
    if not run.samples and p.recognised == 0:
        raise InputError("no HMP 'info migrate' output found")
    if not run.samples:
        warn(run, "no 'info migrate' snapshot, only parameters/capabilities")
    for s in run.samples:
        if s.status is None:
            warn(run, f"line {s.source.line if s.source else '?'}: snapshot without a status line")
    add_sample_events(run)
    finish_from_samples(run)
    return run
