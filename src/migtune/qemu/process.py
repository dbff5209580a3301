"""Start and stop QEMU processes that migtune owns, and nothing else.

Every :class:`QemuProcess` lives in a private temporary directory with its QMP
socket and serial log.  It is stopped by PID (QMP ``quit``, then SIGTERM, then
SIGKILL), and three independent guards make sure it cannot outlive its owner:
the context manager / :meth:`QemuProcess.stop`, an ``atexit`` hook, and
``PR_SET_PDEATHSIG`` so the kernel stops QEMU even if Python is killed outright.
QEMU runs in its own session, so a Ctrl-C at the terminal reaches migtune (which
then cancels cleanly) instead of killing the guest under it.  Each work directory
names its owner's PID (``owner.pid``), so the directories of a migtune that was
killed outright are removed by the next one (:func:`clean_stale_workdirs`).
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from migtune.errors import UnavailableError
from migtune.qemu.qmp import QMP, QMPCommandError, QMPConnectionLost

QEMU_BINARY = "qemu-system-x86_64"
_PR_SET_PDEATHSIG = 1

# PID -> process, for the atexit guard.
_LIVE: dict[int, QemuProcess] = {}
_LIVE_LOCK = threading.Lock()


WORKDIR_PREFIX = "migtune-"
OWNER_FILE = "owner.pid"
_cleaned = False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


def clean_stale_workdirs(
    base: str | os.PathLike[str] | None = None, *, force: bool = False
) -> list[Path]:
    """Remove QEMU work directories left by migtune processes that died (SIGKILL, a crash).

    A directory counts as stale only if it names its owner (``owner.pid``) and that
    process no longer exists; the directories of migtunes still running are kept.
    Runs once per process unless ``force``.  Returns what was removed.
    """
    global _cleaned
    if _cleaned and not force:
        return []
    _cleaned = True
    removed = []
    root = Path(base or tempfile.gettempdir())
    with contextlib.suppress(OSError):
        for entry in root.glob(f"{WORKDIR_PREFIX}*"):
            owner = entry / OWNER_FILE
            try:
                pid = int(owner.read_text().strip())
            except (OSError, ValueError):
                continue
            if pid != os.getpid() and not _pid_alive(pid):
                shutil.rmtree(entry, ignore_errors=True)
                removed.append(entry)
    return removed


def find_qemu(binary: str = QEMU_BINARY) -> str:
    """Absolute path of the QEMU binary, or a clear UnavailableError."""
    path = shutil.which(binary)
    if path is None:
        raise UnavailableError(
            f"{binary} not found: install QEMU (Debian/Ubuntu: apt-get install qemu-system-x86)"
        )
    return path


def qemu_version(binary: str = QEMU_BINARY) -> str:
    """Version of the QEMU binary (``10.0.2``), from ``--version``."""
    out = subprocess.run(
        [find_qemu(binary), "--version"], capture_output=True, text=True, timeout=30
    ).stdout
    m = re.search(r"version\s+(\d+\.\d+(?:\.\d+)?)", out)
    if not m:
        raise UnavailableError(f"cannot tell the version of {binary} from {out.strip()!r}")
    return m.group(1)


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that is free on ``host`` right now (loopback only by default)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _die_with_parent() -> None:  # runs in the child between fork and exec
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):
        pass


class QemuProcess:
    """One QEMU process started by migtune.

    ``args`` are extra command-line arguments (machine, memory, kernel,
    ``-incoming`` ...); this class adds ``-nodefaults -display none -monitor none``,
    the QMP socket, the serial log and ``-accel`` when given.
    """

    def __init__(
        self,
        args: Sequence[str] = (),
        *,
        accel: str | None = None,
        binary: str = QEMU_BINARY,
        name: str = "qemu",
        workdir: str | os.PathLike[str] | None = None,
        stop_timeout: float = 5.0,
    ):
        self.args = list(args)
        self.accel = accel
        self.binary = binary
        self.name = name
        self.stop_timeout = stop_timeout
        self._own_dir = workdir is None
        if self._own_dir:
            clean_stale_workdirs()
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix=f"{WORKDIR_PREFIX}{name}-"))
        if self._own_dir:  # lets a later run tell this directory's owner is dead
            (self.workdir / OWNER_FILE).write_text(f"{os.getpid()}\n")
        # QEMU serves one client per QMP socket: ``qmp_path`` is left free for
        # ``migrate``/users, ``control_path`` is this object's own.
        self.qmp_path = str(self.workdir / f"{name}.qmp")
        self.control_path = str(self.workdir / f"{name}-control.qmp")
        self.serial_path = str(self.workdir / f"{name}.serial")
        self.stderr_path = str(self.workdir / f"{name}.stderr")
        self.proc: subprocess.Popen[bytes] | None = None
        self._qmp: QMP | None = None

    # -- life cycle -------------------------------------------------------------------
    def command_line(self) -> list[str]:
        cmd = [find_qemu(self.binary), "-nodefaults", "-display", "none", "-monitor", "none"]
        cmd += ["-name", self.name, "-qmp", f"unix:{self.qmp_path},server=on,wait=off"]
        cmd += ["-qmp", f"unix:{self.control_path},server=on,wait=off"]
        cmd += ["-serial", f"file:{self.serial_path}"]
        if self.accel:
            cmd += ["-accel", self.accel]
        return cmd + self.args

    def start(self, timeout: float = 15.0) -> QemuProcess:
        """Start QEMU and wait until its QMP socket answers."""
        if self.proc is not None:
            return self
        cmd = self.command_line()
        with open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        with _LIVE_LOCK:
            _LIVE[self.proc.pid] = self
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                with _LIVE_LOCK:
                    _LIVE.pop(self.proc.pid, None)
                tail = self.stderr_tail()
                self._cleanup_dir()
                raise UnavailableError(
                    f"QEMU exited at start (status {self.proc.returncode})"
                    + (f": {tail}" if tail else "")
                )
            if os.path.exists(self.control_path):
                try:
                    self.qmp()
                    return self
                except UnavailableError:
                    pass
            time.sleep(0.05)
        self.stop()
        raise UnavailableError(f"QEMU did not open its QMP socket within {timeout:g} s")

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def qmp(self) -> QMP:
        """This object's own (cached) QMP connection, on the control socket."""
        if self._qmp is None or not self._qmp.connected:
            self._qmp = QMP(self.control_path, name=self.name).connect(retry_for=2.0)
        return self._qmp

    def stop(self, timeout: float | None = None) -> int | None:
        """Stop this QEMU: QMP ``quit``, then SIGTERM, then SIGKILL.  Returns its exit status."""
        proc = self.proc
        if proc is None:
            self._cleanup_dir()
            return None
        timeout = self.stop_timeout if timeout is None else timeout
        if proc.poll() is None and self._qmp is not None:
            with contextlib.suppress(QMPConnectionLost, QMPCommandError):
                self._qmp.cmd("quit", timeout=2.0)
        if self._qmp is not None:
            self._qmp.close()
            self._qmp = None
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                proc.wait(timeout=timeout)
                break
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(sig)
        else:
            proc.wait(timeout=timeout)
        with _LIVE_LOCK:
            _LIVE.pop(proc.pid, None)
        self._cleanup_dir()
        return proc.returncode

    def kill(self) -> None:
        """SIGKILL this QEMU at once (tests use it to make a destination vanish)."""
        if self.alive and self.proc is not None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def _cleanup_dir(self) -> None:
        if not self._own_dir:
            return
        if os.environ.get("MIGTUNE_KEEP_QEMU_DIR") is None:
            shutil.rmtree(self.workdir, ignore_errors=True)
        else:  # kept on purpose (debugging): not a stale directory for the next run
            with contextlib.suppress(OSError):
                (self.workdir / OWNER_FILE).unlink()

    def __enter__(self) -> QemuProcess:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __del__(self) -> None:  # last resort; stop() is the normal path
        proc = getattr(self, "proc", None)
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(OSError):
                proc.kill()

    # -- guest output -----------------------------------------------------------------
    def serial_text(self) -> str:
        try:
            return Path(self.serial_path).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def wait_serial(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str] | None:
        """Wait until the serial log matches ``pattern``; None on timeout or if QEMU exits."""
        rx = re.compile(pattern) if isinstance(pattern, str) else pattern
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.serial_text())
            if m or time.monotonic() >= deadline or not self.alive:
                return m
            time.sleep(0.1)

    def stderr_tail(self, lines: int = 3) -> str:
        try:
            text = Path(self.stderr_path).read_text(errors="replace").strip().splitlines()
        except FileNotFoundError:
            return ""
        return " | ".join(text[-lines:])


def live_pids() -> list[int]:
    """PIDs of QEMU processes started by this Python process and not stopped yet."""
    with _LIVE_LOCK:
        return [pid for pid, p in _LIVE.items() if p.alive]


@atexit.register
def _stop_all() -> None:
    with _LIVE_LOCK:
        procs = list(_LIVE.values())
    for p in procs:
        with contextlib.suppress(Exception):
            p.stop(timeout=2.0)


def kvm_usable() -> bool:
    """``/dev/kvm`` exists and can be opened read-write (necessary, not sufficient)."""
    return os.path.exists("/dev/kvm") and os.access("/dev/kvm", os.R_OK | os.W_OK)


_ACCEL_CACHE: dict[tuple[tuple[str, ...], object], str] = {}


def firmware_runs(p: QemuProcess) -> bool:
    """A weak ``verify`` for :func:`probe_accel`: the vCPU still runs after a second
    under KVM.  Enough for firmware-only guests; a kernel can still fail later."""
    time.sleep(1.0)
    q = p.qmp()
    return q.status() == "running" and bool(q.cmd("query-kvm").get("enabled"))


def probe_accel(
    args: Sequence[str] = ("-machine", "pc", "-m", "64"),
    *,
    verify: Callable[[QemuProcess], bool] | None = None,
    timeout: float = 20.0,
) -> str:
    """``"kvm"`` if a guest really runs under KVM here, else ``"tcg"``.

    ``/dev/kvm`` can be openable while guests still die on a KVM emulation
    failure (seen while building the lab: a guest kernel stopped at a ``lock cmpxchg16b``),
    so starting QEMU proves nothing.  The probe starts QEMU
    with ``args`` under KVM and asks ``verify(process)`` whether the guest works
    (the lab passes a check that waits for its guest's first serial line;
    :func:`firmware_runs` suits firmware-only guests).  Without ``verify`` the
    answer is unsure, hence ``"tcg"``.  ``MIGTUNE_ACCEL=kvm|tcg`` overrides the
    probe.  Results are cached per ``args`` and ``verify``.
    """
    forced = os.environ.get("MIGTUNE_ACCEL", "").strip().lower()
    if forced in ("kvm", "tcg"):
        return forced
    if verify is None or not kvm_usable():
        return "tcg"
    key = (tuple(args), verify)
    if key in _ACCEL_CACHE:
        return _ACCEL_CACHE[key]
    result = "tcg"
    try:
        with QemuProcess(args, accel="kvm", name="kvm-probe") as p:
            if verify(p) and p.alive and p.qmp().status() == "running":
                result = "kvm"
    except (UnavailableError, QMPCommandError, OSError):
        result = "tcg"
    _ACCEL_CACHE[key] = result
    return result
