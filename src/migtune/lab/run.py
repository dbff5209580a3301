"""One lab run: two QEMUs on loopback, a dirtying guest, one recorded migration.

The source boots the lab guest with the workload on its kernel command line; the
destination starts with ``-incoming defer`` so :func:`migtune.qemu.migrate.migrate`
(the code behind ``migtune migrate``) can enable capabilities there before it
listens.  While QEMU migrates, a reader thread follows both serial logs; the
guest's own write-rate reports go into the recording as ``guest-rate`` events on
the recording's clock.  Only the two QEMUs started here are ever stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migtune.errors import InputError, UnavailableError
from migtune.lab.guest import GuestImage, GuestLine, SerialTail, build_guest, cache_dir
from migtune.lab.interrupt import signals_stop_lab
from migtune.lab.scenario import check_fits, kernel_cmdline
from migtune.model import Settings
from migtune.outcome import Outcome
from migtune.outputs.recording import RecordingTee
from migtune.qemu import compat
from migtune.qemu.migrate import MigrationResult, migrate, postcopy_refusal
from migtune.qemu.policies import Policy, parse_policy
from migtune.qemu.process import (
    QemuProcess,
    clean_stale_workdirs,
    free_port,
    kvm_usable,
    qemu_version,
)
from migtune.qemu.qmp import QMPCommandError, QMPConnectionLost
from migtune.settings import check_for_guest
from migtune.units import MiB, format_rate
from migtune.workload import Workload

if TYPE_CHECKING:
    from migtune.outputs.metrics import MigrationMetrics

BOOT_TIMEOUT = 60.0  # s for the guest's first line (TCG boots in 3-4 s, slower when loaded)
WARMUP_TIMEOUT = 60.0  # s from the first line until the writer runs at its rate
RATE_REACHED = 0.9  # fraction of the asked rate that counts as "at its rate"
ALIVE_TIMEOUT = 10.0  # s to see the destination's heartbeat advance
Status = Callable[[str | None], None]  # None: hide the status line


@dataclass
class LabResult:
    outcome: Outcome
    migration: MigrationResult
    workload: Workload
    ram: int
    accel: str
    qemu_version: str
    recording: str | None
    guest_rates: list[dict[str, Any]] = field(default_factory=list)  # the guest-rate events
    guest_rate_before: float | None = None  # bytes/s the guest wrote just before migrating
    destination_alive: bool | None = None  # heartbeat advanced on the destination
    source_alive: bool | None = None  # heartbeat advanced on the source (not completed)
    differing_pages: int | None = None  # --verify: pages whose content differs after migration
    warnings: list[str] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    before: Any = None  # what lab_run's before_migrate returned (a preflight, say)

    def guest_rate_during(self, side: str = "source") -> float | None:
        rates = [g["rate_Bps"] for g in self.guest_rates if g["side"] == side and g["t"] >= 0]
        return statistics.fmean(rates) if rates else None

    def to_dict(self) -> dict[str, Any]:
        m = self.migration
        return {
            **self.outcome.to_dict(),
            "workload": self.workload.spec(),
            "ram_bytes": self.ram,
            "accel": self.accel,
            "qemu_version": self.qemu_version,
            "guest_write_rate_bytes_per_s": self.guest_rate_before,
            "guest_write_rate_during_bytes_per_s": self.guest_rate_during(),
            "destination_alive": self.destination_alive,
            "source_alive": self.source_alive,
            "differing_pages": self.differing_pages,
            "reason": m.reason,
            "postcopy": m.postcopy,
            "actions": [a.to_dict() for a in m.actions],
            "warnings": [*m.warnings, *self.warnings],
        }


def machine_meta() -> dict[str, Any]:
    """What the host looked like: results on a loaded 2-core box are not a quiet server's."""
    model = None
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    load = None
    with contextlib.suppress(OSError):
        load = [round(x, 2) for x in os.getloadavg()]
    return {
        "cpu_model": model,
        "cpu_cores": os.cpu_count(),
        "loadavg": load,
        "host_kernel": platform.release(),
    }


# -- accelerator -----------------------------------------------------------------------


def _guest_args(image: GuestImage, ram: int, cmdline: str, machine: str) -> list[str]:
    return [
        "-machine", machine, "-m", f"{ram // MiB}M", "-smp", "1", "-no-reboot",
        "-kernel", str(image.kernel), "-initrd", str(image.initrd), "-append", cmdline,
    ]  # fmt: skip


def _first_line(proc: QemuProcess, timeout: float) -> bool:
    """Wait for the guest's own first line; False at once if the vCPU died (KVM failure)."""
    tail = SerialTail(proc.serial_path)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.alive:
        if any(line.kind == "init" for line in tail.read()):
            return True
        with contextlib.suppress(QMPConnectionLost, QMPCommandError):
            if proc.qmp().status() in ("internal-error", "guest-panicked", "shutdown"):
                return False
        time.sleep(0.2)
    return False


def choose_accel(image: GuestImage, machine: str = "pc", timeout: float = 15.0) -> str:
    """``kvm`` if the lab guest really runs under KVM here, else ``tcg``.

    Boots the guest under KVM and waits for its first serial line: QEMU starting is
    no proof (a KVM emulation failure stops the vCPU later).  The answer is cached
    per QEMU version, guest image and host kernel, since a failed probe costs seconds.
    """
    if not kvm_usable():
        return "tcg"
    key = f"{qemu_version()}-{image.key}-{platform.release()}-{machine}"
    cache = cache_dir() / "accel.json"
    with contextlib.suppress(OSError, ValueError):
        known = json.loads(cache.read_text())
        if known.get(key) in ("kvm", "tcg"):
            return str(known[key])
    accel = "tcg"
    probe = QemuProcess(
        _guest_args(image, 128 * MiB, kernel_cmdline(Workload(ws=0, rate=0.0)), machine),
        accel="kvm",
        name="lab-kvm-probe",
    )
    try:
        probe.start()
        if _first_line(probe, timeout):
            accel = "kvm"
    except UnavailableError:
        accel = "tcg"
    finally:
        probe.stop()
    with contextlib.suppress(OSError, ValueError):
        cache.parent.mkdir(parents=True, exist_ok=True)
        known = json.loads(cache.read_text()) if cache.exists() else {}
        known[key] = accel
        cache.write_text(json.dumps(known, indent=1))
    return accel


# -- serial logs -------------------------------------------------------------------------


class _GuestWatcher(threading.Thread):
    """Follows both serial logs; stamps each guest line with host wall-clock time."""

    def __init__(self, src: QemuProcess, dst: QemuProcess, interval: float = 0.2):
        super().__init__(name="lab-serial", daemon=True)
        self.tails = {
            "source": SerialTail(src.serial_path),
            "destination": SerialTail(dst.serial_path),
        }
        self.lines: list[tuple[float, str, GuestLine]] = []
        self.interval = interval
        self._halt = threading.Event()
        self._lock = threading.Lock()

    def poll(self) -> None:
        now = time.time()
        with self._lock:
            for side, tail in self.tails.items():
                self.lines += [(now, side, line) for line in tail.read()]

    def run(self) -> None:
        while not self._halt.wait(self.interval):
            self.poll()

    def stop(self) -> None:
        self._halt.set()
        if self.is_alive():
            self.join(timeout=5)
        self.poll()

    def of(self, side: str, kind: str) -> list[tuple[float, GuestLine]]:
        with self._lock:
            return [(t, g) for t, s, g in self.lines if s == side and g.kind == kind]


def _warm_up(proc: QemuProcess, w: Workload, watcher: _GuestWatcher, say: Status) -> list[str]:
    """Wait until the guest is up and (unless idle) writes at its asked rate."""
    warnings: list[str] = []
    deadline = time.monotonic() + BOOT_TIMEOUT

    def check_alive() -> None:
        if not proc.alive:
            raise UnavailableError(f"source QEMU exited while booting: {proc.stderr_tail()}")
        for _, err in watcher.of("source", "error"):
            raise UnavailableError(f"lab guest: dirtier {err.text}")

    say("booting the source guest")
    while not watcher.of("source", "init"):
        check_alive()
        if time.monotonic() > deadline:
            raise UnavailableError(f"the lab guest printed nothing within {BOOT_TIMEOUT:g} s")
        time.sleep(0.2)
        watcher.poll()
    if w.idle:
        while len(watcher.of("source", "heartbeat")) < 2:
            check_alive()
            time.sleep(0.2)
            watcher.poll()
        return warnings
    say("guest is touching its working set")
    deadline = time.monotonic() + WARMUP_TIMEOUT
    while True:
        check_alive()
        watcher.poll()
        rates = [g.get("rate_Bps") or 0.0 for _, g in watcher.of("source", "rate")]
        if rates:
            say(f"guest writes {format_rate(rates[-1])}")
        if w.rate is None and len(rates) >= 2:
            return warnings  # CPU-bound: at its rate once a full second was measured
        if w.rate and rates and rates[-1] >= RATE_REACHED * w.rate:
            return warnings
        if len(rates) >= 5 or time.monotonic() > deadline:
            got = format_rate(rates[-1]) if rates else "nothing"
            warnings.append(
                f"the guest reached only {got} of the {format_rate(w.rate)} asked: machine too slow"
            )
            return warnings
        time.sleep(0.2)


def _heartbeat_advances(watcher: _GuestWatcher, side: str, since: float, timeout: float) -> bool:
    """True once two heartbeats with rising counters appear on ``side`` after ``since``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        watcher.poll()
        seen = [g.get("n") or 0 for t, g in watcher.of(side, "heartbeat") if t >= since]
        if len(seen) >= 2 and seen[-1] > seen[0]:
            return True
        time.sleep(0.25)
    return False


# -- the run --------------------------------------------------------------------------


def lab_run(
    ram: int,
    workload: Workload,
    settings: Settings,
    *,
    policy: str | Policy = "fixed",
    time_limit: float | None = 60.0,
    record: str | Path | None = None,
    allow_postcopy: bool = False,
    postcopy_after_passes: int | None = None,
    postcopy_after: float | None = None,
    accel: str = "auto",
    machine: str = "pc",
    progress: bool = True,
    status: Status | None = None,
    meta: dict[str, Any] | None = None,
    image: GuestImage | None = None,
    verify: bool = False,
    metrics: MigrationMetrics | None = None,
    before_migrate: Callable[[str], Any] | None = None,
) -> LabResult:
    """Boot source and destination, warm the workload up, migrate, check, stop both.

    ``before_migrate(source_qmp_path)`` runs once the workload is warm, before the
    migration starts (``migtune preflight`` measures the guest there; its return value
    is in ``LabResult.before``).  ``metrics`` goes to :func:`migrate`.

    With ``verify`` the destination starts paused (``-S``); after a completed
    pre-copy migration both sides' RAM is dumped and compared page by page before
    the destination guest is resumed.
    """
    check_fits(ram, workload)
    postcopy_refusal(settings, allow_postcopy)
    if record is not None:
        RecordingTee(record)  # an unwritable path or a full disk: say so before booting
    if verify and allow_postcopy:
        raise InputError("--verify compares RAM after pre-copy; it cannot be used with post-copy")
    version = qemu_version()
    # Refuse what QEMU would refuse before spending seconds on two boots.
    compat.check(settings, version, allow_postcopy=allow_postcopy, dest_qmp=True)
    # Settings absurd for this guest are refused here, before two boots; the warnings are
    # reported by migrate(), which runs the same check against the RAM QEMU reports.
    check_for_guest(settings, ram, time_limit=time_limit)
    with signals_stop_lab():
        return _lab_run(
            ram, workload, settings, version, policy, time_limit, record, allow_postcopy,
            postcopy_after_passes, postcopy_after, accel, machine, progress, status, meta,
            image, verify, metrics, before_migrate,
        )  # fmt: skip


def _lab_run(
    ram: int, workload: Workload, settings: Settings, version: str, policy: str | Policy,
    time_limit: float | None, record: str | Path | None, allow_postcopy: bool,
    postcopy_after_passes: int | None, postcopy_after: float | None, accel: str,
    machine: str, progress: bool, status: Status | None, meta: dict[str, Any] | None,
    image: GuestImage | None, verify: bool, metrics: MigrationMetrics | None = None,
    before_migrate: Callable[[str], Any] | None = None,
) -> LabResult:  # fmt: skip
    clean_stale_workdirs()  # directories of lab runs that were killed outright
    policy = parse_policy(policy)
    image = image or build_guest()
    say = status or (lambda _msg: None)
    if accel == "auto":
        say("checking whether KVM can run the guest")
        accel = choose_accel(image, machine)
    args = _guest_args(image, ram, kernel_cmdline(workload), machine)
    dst_args = [*args, "-incoming", "defer", *(["-S"] if verify else [])]
    load_before = machine_meta()
    src = dst = watcher = None
    try:  # from the first work directory on, every exit path removes them
        src = QemuProcess(args, accel=accel, name="lab-src")
        dst = QemuProcess(dst_args, accel=accel, name="lab-dst")
        watcher = _GuestWatcher(src, dst)
        src.start()
        dst.start()
        warnings = _warm_up(src, workload, watcher, say)
        before = [g.get("rate_Bps") for _, g in watcher.of("source", "rate")[-3:]]
        rate_before = statistics.median(before) if before else None
        watcher.start()
        ahead = before_migrate(src.qmp_path) if before_migrate is not None else None
        port = free_port()
        run_meta = {
            **(meta or {}),
            "lab": {
                "ram": ram,
                "accel": accel,
                "machine": machine,
                "kernel": str(image.kernel),
                "guest_image": image.key,
                "smp": 1,
                "guest_write_rate_before": rate_before,
            },
            "machine": load_before,
        }
        say(None)  # the migration shows its own progress bar
        result = migrate(
            src.qmp_path,
            f"tcp:127.0.0.1:{port}",
            settings,
            policy=policy,
            record=record,
            time_limit=time_limit,
            dest_qmp=dst.qmp_path,
            allow_postcopy=allow_postcopy,
            postcopy_after_passes=postcopy_after_passes,
            postcopy_after=postcopy_after,
            progress=progress,
            meta=run_meta,
            workload=workload.spec(),
            metrics=metrics,
        )
        end = time.time()
        say("checking the guest")
        dest_alive: bool | None = None
        src_alive: bool | None = None
        differing: int | None = None
        if verify and result.status == "completed" and dst.alive:
            say("comparing source and destination RAM")
            differing = compare_ram(src, dst, ram)
            dst.qmp().cmd("cont")
        if result.status == "completed":
            dest_alive = dst.alive and _heartbeat_advances(watcher, "destination", 0, ALIVE_TIMEOUT)
        else:
            src_alive = src.alive and _heartbeat_advances(watcher, "source", end, ALIVE_TIMEOUT)
        watcher.stop()
    finally:
        for part in (watcher, dst, src):
            if part is not None:
                part.stop()
    t0 = result.run.t0 or end
    rates = _rate_events(watcher, t0)
    lab = LabResult(
        outcome=result.outcome,
        migration=result,
        workload=workload,
        ram=ram,
        accel=accel,
        qemu_version=result.qemu_version or version,
        recording=result.recording,
        guest_rates=rates,
        guest_rate_before=rate_before,
        destination_alive=dest_alive,
        source_alive=src_alive,
        differing_pages=differing,
        warnings=warnings,
        meta={"machine_after": machine_meta()},
        before=ahead,
    )
    if record is not None:
        try:
            _finish_recording(Path(record), lab)
        except OSError as exc:  # a full disk: the recording keeps what it had
            lab.warnings.append(f"could not complete recording {record}: {exc.strerror or exc}")
            with contextlib.suppress(OSError):
                Path(record).with_name(Path(record).name + ".tmp").unlink()
    return lab


def compare_ram(src: QemuProcess, dst: QemuProcess, ram: int) -> int:
    """Dump guest-physical RAM on both (stopped) sides and count the pages that differ.

    Below 3 GiB the ``pc`` machine maps RAM from 0 upwards; the legacy VGA/BIOS hole
    reads the same on both sides.
    """
    import numpy as np

    if ram > 3 * 1024**3:
        raise InputError("--verify supports guests of up to 3 GiB")
    dumps = []
    for proc in (src, dst):
        path = Path(proc.workdir) / "ram.dump"
        proc.qmp().cmd("pmemsave", val=0, size=ram, filename=str(path), timeout=120)
        dumps.append(np.fromfile(path, dtype=np.uint64).reshape(-1, 512))
    differs = (dumps[0] != dumps[1]).any(axis=1)
    for proc in (src, dst):
        with contextlib.suppress(OSError):
            (Path(proc.workdir) / "ram.dump").unlink()
    return int(differs.sum())


def _rate_events(watcher: _GuestWatcher, t0: float) -> list[dict[str, Any]]:
    out = []
    for side in ("source", "destination"):
        for seen, g in watcher.of(side, "rate"):
            out.append(
                {
                    "t": round(seen - t0, 3),
                    "side": side,
                    "guest_t": g.get("t"),
                    "pages": g.get("pages"),
                    "rate_pps": g.get("rate_pps"),
                    "rate_Bps": g.get("rate_Bps"),
                    "behind": g.get("behind"),
                }
            )
    return sorted(out, key=lambda r: r["t"])


def _finish_recording(path: Path, lab: LabResult) -> None:
    """Merge the guest-rate events into the recording, mark it as a lab run, add the result.

    Existing records keep their order; each guest report goes in before the first
    record that is later than it.  Only reports from t >= 0 (the migration) go in.
    """
    try:
        records = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]
    except (OSError, ValueError):
        return  # an unreadable recording is reported by whoever reads it
    pending = [r for r in lab.guest_rates if r["t"] >= 0]
    out: list[dict[str, Any]] = []
    for rec in records:
        if rec.get("kind") == "header":
            rec["origin"] = "lab"
            rec.setdefault("meta", {}).update(lab.meta)
        elif rec.get("kind") == "result":
            continue
        t = rec.get("t")
        while pending and isinstance(t, (int, float)) and pending[0]["t"] <= t:
            out.append(_guest_event(pending.pop(0)))
        out.append(rec)
    out += [_guest_event(r) for r in pending]
    out.append({"kind": "result", **lab.to_dict()})
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, separators=(",", ":")) + "\n" for r in out))
    os.replace(tmp, path)


def _guest_event(r: dict[str, Any]) -> dict[str, Any]:
    data = {k: v for k, v in r.items() if k != "t"}
    msg = f"{r['side']} guest writes {r['rate_pps']:.0f} pages/s ({format_rate(r['rate_Bps'])})"
    return {"kind": "event", "t": r["t"], "event": "guest-rate", "message": msg, "data": data}
