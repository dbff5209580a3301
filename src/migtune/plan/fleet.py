"""The fleet to evacuate: one VM per row of a CSV file or one ``[[vm]]`` table of a TOML file.

Columns (CSV header / TOML keys; ``-`` and ``_`` are the same):

=================  ===========================================================
``name``           the VM's name (Proxmox id, libvirt domain, ...): unique
``ram``            its RAM (``32GiB``)
``workload``       how it dirties memory, as ``simulate --workload`` takes it,
                   or ``history:NAME`` for what the history store learnt
``max-downtime``   optional: the pause this VM can accept (default: the
                   command's ``--max-downtime``)
``max-time``       optional: give up on its migration after this long
``max-bandwidth``  optional: a cap its migration stream must keep
``platform``       optional: ``proxmox``, ``libvirt`` or ``qemu`` (default: the
                   command's ``--platform``)
=================  ===========================================================

A row that cannot be read is an :class:`InputError` naming the file, the line and the
field.  Limits that are readable but cannot be met (a downtime below what any switchover
takes, a time too short to send the RAM once) are *not* errors: the planner flags
those VMs in its output.
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from migtune.errors import InputError
from migtune.units import parse_duration, parse_rate, parse_size
from migtune.workload import PAGE_SIZE, Workload, parse_workload

PLATFORMS = ("qemu", "libvirt", "proxmox")
COLUMNS = ("name", "ram", "workload", "max-downtime", "max-time", "max-bandwidth", "platform")
REQUIRED = ("name", "ram", "workload")
HISTORY_PREFIX = "history:"
MAX_RAM = 64 * 1024**4  # the simulator's (and the CLI's) largest guest
MIN_CAP = 1024**2  # B/s: a slower cap is a typo (bytes meant as MiB), and too slow to plan


@dataclass(frozen=True)
class VmSpec:
    """One VM of the fleet, in base units (``None``: not given in the file)."""

    name: str
    ram_bytes: int
    workload: str  # the spec as written, or "history:NAME"
    max_downtime: float | None = None  # s
    max_time: float | None = None  # s
    max_bandwidth: float | None = None  # bytes/s
    platform: str | None = None
    line: int = 0  # where it is in the file (1-based)
    index: int = 0  # its position in the file (the list order)

    @property
    def history(self) -> str | None:
        """The history store's VM name for ``history:NAME``, else None."""
        if self.workload.lower().startswith(HISTORY_PREFIX):
            return self.workload[len(HISTORY_PREFIX) :].strip()
        return None

    def parsed_workload(self) -> Workload | None:
        return None if self.history is not None else parse_workload(self.workload)


def _norm(key: str) -> str:
    return key.strip().lower().replace("_", "-")


def _field(where: str, key: str, text: object) -> object:
    """Parse one field; errors become ``FILE:LINE: FIELD: what``."""
    value = str(text).strip()
    try:
        if key == "name":
            if not value:
                raise InputError("empty")
            return value
        if key == "ram":
            ram = parse_size(value)
            if ram < PAGE_SIZE or ram > MAX_RAM:
                raise InputError(f"{value!r} is outside 4 KiB .. 64 TiB")
            return ram
        if key == "workload":
            if value.lower().startswith(HISTORY_PREFIX):
                if not value[len(HISTORY_PREFIX) :].strip():
                    raise InputError("history: needs a VM name (history:NAME)")
                return value
            parse_workload(value)  # checked now, so the error names the line
            return value
        if key in ("max-downtime", "max-time"):
            seconds = parse_duration(value)
            if seconds < 0:
                raise InputError(f"{value!r} is negative")
            return seconds
        if key == "max-bandwidth":
            rate = parse_rate(value)
            if rate < 0:
                raise InputError(f"{value!r} is negative")
            if 0 < rate < MIN_CAP:
                raise InputError(f"{value!r} is below 1 MiB/s (0 means no cap)")
            return rate or None  # 0: no cap, as QEMU reads it
        if key == "platform":
            low = value.lower()
            if low == "qmp":
                low = "qemu"
            if low not in PLATFORMS:
                raise InputError(f"{value!r} is not one of {', '.join(PLATFORMS)}")
            return low
    except InputError as exc:
        raise InputError(f"{where}: {key}: {exc.message}") from None
    raise InputError(f"{where}: {key}: unknown column (known: {', '.join(COLUMNS)})")


def _vm(path: str, line: int, index: int, row: dict[str, object]) -> VmSpec:
    where = f"{path}:{line}"
    values: dict[str, object] = {}
    for raw_key, text in row.items():
        key = _norm(raw_key)
        if text is None or str(text).strip() == "":
            continue  # an empty optional cell: not given
        values[key] = _field(where, key, text)
    for key in REQUIRED:
        if key not in values:
            raise InputError(f"{where}: {key}: missing (every VM needs {', '.join(REQUIRED)})")
    ram = int(values["ram"])  # type: ignore[arg-type]
    spec = str(values["workload"])
    if not spec.lower().startswith(HISTORY_PREFIX):
        w = parse_workload(spec)
        if w.ws > ram:
            raise InputError(
                f"{where}: workload: the working set ({w.ws} bytes) is larger than the RAM"
            )
    return VmSpec(
        name=str(values["name"]),
        ram_bytes=ram,
        workload=spec,
        max_downtime=values.get("max-downtime"),  # type: ignore[arg-type]
        max_time=values.get("max-time"),  # type: ignore[arg-type]
        max_bandwidth=values.get("max-bandwidth"),  # type: ignore[arg-type]
        platform=values.get("platform"),  # type: ignore[arg-type]
        line=line,
        index=index,
    )


def _from_csv(path: str, text: str) -> list[VmSpec]:
    lines = text.splitlines()
    # lines starting with # are comments (a fleet file is written by hand)
    numbered = [
        (i + 1, ln) for i, ln in enumerate(lines) if ln.strip() and not ln.lstrip().startswith("#")
    ]
    if not numbered:
        raise InputError(f"{path}: no header line (expected {', '.join(COLUMNS)})")
    header_line, header = numbered[0]
    keys = [_norm(k) for k in next(csv.reader([header]))]
    for k in keys:
        if k not in COLUMNS:
            shown = repr(k if len(k) <= 40 else k[:37] + "...") if k else "(empty)"
            raise InputError(
                f"{path}:{header_line}: {shown}: unknown column (known: {', '.join(COLUMNS)})"
            )
    missing = [k for k in REQUIRED if k not in keys]
    if missing:
        raise InputError(f"{path}:{header_line}: {missing[0]}: missing from the header")
    vms = []
    for lineno, ln in numbered[1:]:
        cells = next(csv.reader(io.StringIO(ln)))
        if len(cells) > len(keys):
            raise InputError(
                f"{path}:{lineno}: {len(cells)} fields, the header has {len(keys)} "
                "(quote a workload spec that contains commas)"
            )
        row = dict(zip(keys, cells + [""] * (len(keys) - len(cells)), strict=True))
        vms.append(_vm(path, lineno, len(vms), row))
    return vms


_VM_TABLE = re.compile(r"^\s*\[\[\s*(vm|vms)\s*\]\]\s*(#.*)?$")


def _from_toml(path: str, text: str) -> list[VmSpec]:
    try:
        doc = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: not valid TOML ({exc})") from None
    unknown = [k for k in doc if k not in ("vm", "vms")]
    if unknown:
        raise InputError(f"{path}: {unknown[0]}: unknown table (one [[vm]] table per VM)")
    tables = doc.get("vm", doc.get("vms"))
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise InputError(f"{path}: expected [[vm]] tables, one per VM")
    # tomllib keeps no positions: the n-th [[vm]] header is the n-th table
    starts = [i + 1 for i, ln in enumerate(text.splitlines()) if _VM_TABLE.match(ln)]
    vms = []
    for n, table in enumerate(tables):
        line = starts[n] if n < len(starts) else 0
        vms.append(_vm(path, line, n, table))
    return vms


def load_fleet(path: str | Path) -> list[VmSpec]:
    """Read a fleet file (``.toml`` by its name, otherwise CSV)."""
    p = Path(path)
    name = str(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise InputError(f"{name}: is a directory") from None
    except UnicodeDecodeError:
        raise InputError(f"{name}: not a text file (expected CSV or TOML)") from None
    except OSError as exc:
        raise InputError(f"{name}: cannot read ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise InputError(f"{name}: not a text file (expected CSV or TOML)")
    vms = _from_toml(name, text) if p.suffix.lower() == ".toml" else _from_csv(name, text)
    if not vms:
        raise InputError(f"{name}: no VM in it")
    seen: dict[str, int] = {}
    for vm in vms:
        if vm.name in seen:
            raise InputError(
                f"{name}:{vm.line}: name: {vm.name!r} again (first on line {seen[vm.name]})"
            )
        seen[vm.name] = vm.line
    return vms
