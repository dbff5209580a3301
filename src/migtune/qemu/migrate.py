"""Drive one live migration of a running QEMU over QMP, safely, and record it.

:func:`migrate` checks the request against the QEMU version, configures both
sides, issues ``migrate``, polls ``query-migrate``, follows a policy
(:mod:`migtune.qemu.policies`) and writes every sample, QMP event and policy
action to a recording (:mod:`migtune.sources.recording`).

The source VM is never given up: on Ctrl-C/SIGTERM, the time limit, a policy
abort, an error or a vanished destination the migration is cancelled and the
driver waits until the source reports ``cancelled``/``failed`` with its guest
running again.  The only exception is post-copy once started (the user must have
allowed it): from then on neither side holds the whole VM, so nothing is cancelled.
"""

from __future__ import annotations

import contextlib
import io
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from migtune.errors import EXIT_CANCELLED, EXIT_FAILED, EXIT_OK, InputError
from migtune.model import Run, Sample, Settings, to_dict
from migtune.outcome import Outcome, outcome_from_run
from migtune.outputs.recording import RecordingWriter
from migtune.qemu import compat
from migtune.qemu.params import qmp_parameters, settings_from_qemu
from migtune.qemu.policies import (
    ABORT,
    PAUSE,
    POSTCOPY_STATES,
    SET_PARAMETERS,
    START_POSTCOPY,
    Action,
    Policy,
    parse_policy,
)
from migtune.qemu.qmp import QMP, QMPCommandError, QMPConnectionLost
from migtune.settings import check_for_guest
from migtune.sources.querymigrate import sample_from_query_migrate
from migtune.sources.recording import parse_recording

TERMINAL = ("completed", "failed", "cancelled")
EVENTS = ("MIGRATION", "MIGRATION_PASS", "STOP", "RESUME")
CANCEL_WAIT = 30.0  # s to wait for QEMU to confirm a cancel

ProgressFn = Callable[[Sample, dict[str, Any]], None]


@dataclass
class MigrationResult:
    status: str  # completed | cancelled | failed
    outcome: Outcome
    run: Run
    recording: str | None
    actions: list[Action] = field(default_factory=list)
    reason: str | None = None  # why it was cancelled or failed
    source_status: str | None = None  # query-status of the source at the end
    postcopy: bool = False
    qemu_version: str | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def exit_code(self) -> int:
        return {"completed": EXIT_OK, "cancelled": EXIT_CANCELLED}.get(self.status, EXIT_FAILED)

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.outcome.to_dict(),
            "status": self.status,
            "reason": self.reason,
            "source_status": self.source_status,
            "postcopy": self.postcopy,
            "qemu_version": self.qemu_version,
            "actions": [a.to_dict() for a in self.actions],
            "warnings": self.warnings,
        }


@contextlib.contextmanager
def _signals_request_stop(flag: dict[str, Any]) -> Iterator[None]:
    """While driving, SIGINT/SIGTERM only ask for a clean cancel (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        if flag.get("stop"):  # asked twice: stop waiting (a cancel has been sent already)
            raise KeyboardInterrupt
        flag["stop"] = "interrupted" if signum == signal.SIGINT else "terminated"

    old = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def _progress_sink(progress: bool | ProgressFn) -> ProgressFn | None:
    if progress is True:
        from migtune.qemu.progress import ProgressDisplay

        return ProgressDisplay()
    return progress if callable(progress) else None


class _Tee(io.StringIO):
    """Keeps the recording in memory (for the Run) and mirrors it to a file if asked.

    The file is opened (and an existing one replaced) only when the first record is
    written, so a migration refused before it starts leaves an old recording intact.
    """

    def __init__(self, path: str | Path | None):
        super().__init__()
        self.path = Path(path) if path is not None else None
        self.file = None
        if self.path is not None:
            target = self.path if self.path.exists() else self.path.parent
            if not target.exists():
                raise InputError(f"cannot write recording {path}: no such directory")
            if self.path.is_dir() or not os.access(target, os.W_OK):
                raise InputError(f"cannot write recording {path}: permission denied or not a file")

    def _open(self) -> None:
        try:
            self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - closed in close_file()
        except OSError as exc:
            raise InputError(f"cannot write recording {self.path}: {exc.strerror or exc}") from None

    def write(self, s: str) -> int:
        if self.file is None and self.path is not None:
            self._open()
        if self.file is not None:
            self.file.write(s)
        return super().write(s)

    def flush(self) -> None:
        if self.file is not None:
            self.file.flush()

    def close_file(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None


def migrate(
    source_qmp: str,
    to_uri: str,
    settings: Settings,
    *,
    policy: str | Policy = "fixed",
    record: str | Path | None = None,
    time_limit: float | None = None,
    dest_qmp: str | None = None,
    allow_postcopy: bool = False,
    postcopy_after_passes: int | None = None,
    postcopy_after: float | None = None,
    progress: bool | ProgressFn = True,
    poll_interval: float | None = None,
    meta: dict[str, Any] | None = None,
    workload: str | None = None,
) -> MigrationResult:
    """Migrate the QEMU behind ``source_qmp`` to ``to_uri`` and return what happened.

    ``settings`` holds what to set (``None`` fields are left as QEMU has them).
    With ``allow_postcopy`` the ``postcopy-ram`` capability is enabled on both
    sides (``dest_qmp`` is then required) and the switch happens after
    ``postcopy_after_passes`` (QEMU's dirty-sync-count), after ``postcopy_after``
    seconds or when the policy asks; with the ``fixed`` or ``proxmox`` policy and
    no trigger given it switches once the first full pass is done (count 2).
    Raises ``UnavailableError`` when a QMP socket is missing, ``InputError`` for a
    combination QEMU rejects; otherwise returns a :class:`MigrationResult`.
    """
    pol = parse_policy(policy)
    # What needs no guest (a downtime limit of 0, no time at all) is refused before any socket.
    check_for_guest(settings, None, time_limit=time_limit)
    no_trigger = postcopy_after_passes is None and postcopy_after is None
    if allow_postcopy and no_trigger and pol.name in ("fixed", "proxmox"):
        postcopy_after_passes = 2
    driver = _Driver(
        source_qmp, to_uri, settings, pol, time_limit, dest_qmp, allow_postcopy,
        postcopy_after_passes, postcopy_after, poll_interval,
    )  # fmt: skip
    return driver.run(record, progress, meta or {}, workload)


class _Driver:
    def __init__(
        self, source_qmp: str, to_uri: str, settings: Settings, policy: Policy,
        time_limit: float | None, dest_qmp: str | None, allow_postcopy: bool,
        after_passes: int | None, after: float | None, poll_interval: float | None,
    ):  # fmt: skip
        self.source_qmp, self.to_uri, self.settings = source_qmp, to_uri, settings
        self.policy, self.time_limit, self.dest_qmp = policy, time_limit, dest_qmp
        self.allow_postcopy, self.after_passes, self.after = allow_postcopy, after_passes, after
        # None: the policy's own cadence (Proxmox 1 s / 100 ms, Nova 0.5 s, KubeVirt 0.4 s)
        self.fixed_interval = None if poll_interval is None else max(0.05, poll_interval)
        self.poll_interval = self.fixed_interval or policy.poll_interval(None)
        self.flag: dict[str, Any] = {}
        self.actions: list[Action] = []
        self.warnings: list[str] = []
        self.postcopy = False
        self.postcopy_requested = False
        self.paused_by_us = False
        self.t0 = time.time()
        self.rec: RecordingWriter | None = None
        self.show: ProgressFn | None = None

    # -- set-up ------------------------------------------------------------------------
    def _configure(self, src: QMP, dst: QMP | None) -> tuple[str, Settings, str]:
        version = src.version()
        offered = compat.available_capabilities(src.cmd("query-migrate-capabilities"))
        self.warnings += compat.check(
            self.settings, version, offered,
            allow_postcopy=self.allow_postcopy, dest_qmp=dst is not None,
        )  # fmt: skip
        # Settings that make no sense for this guest (a cache as large as its RAM): refuse
        # before anything is set on either side.
        guest_ram = src.cmd("query-memory-size-summary").get("base-memory")
        self.warnings += check_for_guest(
            self.settings, guest_ram if isinstance(guest_ram, int) else None,
            time_limit=self.time_limit,
        )  # fmt: skip
        state = src.cmd("query-migrate").get("status")
        if state not in (None, "none", *TERMINAL):
            raise InputError(f"a migration is already in progress on this QEMU (status {state})")
        run_state = src.status()
        if run_state in ("inmigrate", "postmigrate", "shutdown", "internal-error"):
            raise InputError(f"the source VM cannot be migrated now (run state {run_state})")
        caps = dict(self.settings.capabilities)
        if self.allow_postcopy:
            caps["postcopy-ram"] = True
        caps_arg = [{"capability": k, "state": bool(v)} for k, v in caps.items()]
        if dst is not None:
            if caps_arg:
                try:
                    dst.cmd("migrate-set-capabilities", capabilities=caps_arg)
                except QMPCommandError as exc:
                    hint = " (start the destination with -incoming defer)"
                    raise InputError(f"destination: {exc}" + hint) from None
            if self.settings.multifd_channels is not None:
                dst.cmd(
                    "migrate-set-parameters", **{"multifd-channels": self.settings.multifd_channels}
                )
            if dst.cmd("query-migrate").get("status") in (None, "none"):
                dst.cmd("migrate-incoming", uri=self.to_uri)  # started with -incoming defer
        src.cmd(
            "migrate-set-capabilities",
            capabilities=[*caps_arg, {"capability": "events", "state": True}],
        )
        params = qmp_parameters(self.settings)
        if params:
            src.cmd("migrate-set-parameters", **params)
        ram = src.cmd("query-memory-size-summary").get("base-memory")
        effective = self._effective(src, version)
        self.policy.configure(
            effective, ram_bytes=ram, allow_postcopy=self.allow_postcopy, requested=self.settings
        )
        initial = self.policy.initial_actions()
        for action in initial:  # recorded once the header is written
            action.t = 0.0
            if action.kind == SET_PARAMETERS:
                src.cmd("migrate-set-parameters", **action.params)
            self.actions.append(action)
        if initial:
            effective = self._effective(src, version)
        return version, effective, run_state

    def _effective(self, src: QMP, version: str) -> Settings:
        effective = settings_from_qemu(
            src.cmd("query-migrate-parameters"), src.cmd("query-migrate-capabilities"), self.to_uri
        )
        effective.qemu_version = version
        return effective

    # -- main ------------------------------------------------------------------------
    def run(
        self,
        record: str | Path | None,
        progress: bool | ProgressFn,
        meta: dict,
        workload: str | None,
    ) -> MigrationResult:
        tee = _Tee(record)  # an unwritable recording fails before QEMU is touched
        self.rec = RecordingWriter(None, stream=tee)
        status, reason, source_status, version = "failed", None, None, None
        run_state, started = "running", False
        src = dst = None
        with _signals_request_stop(self.flag):
            try:
                src = QMP(self.source_qmp, name="source").connect()
                dst = QMP(self.dest_qmp, name="destination").connect() if self.dest_qmp else None
                version, effective, run_state = self._configure(src, dst)
                self.show = _progress_sink(progress)
                src.events()  # drop whatever was queued before this migration
                self.t0 = time.time()
                self.rec.header(
                    "migrate", to_dict(effective), self.t0, qemu_version=version,
                    workload=workload,
                    meta={**meta, "policy": self.policy.describe(), "uri": self.to_uri,
                          "time_limit": self.time_limit, "allow_postcopy": self.allow_postcopy,
                          "source_run_state": run_state, "warnings": self.warnings},
                )  # fmt: skip
                for action in self.actions:
                    self.rec.event(0.0, "settings", action.reason, action.to_dict())
                self.rec.event(0.0, "ram-start", f"migrate uri={self.to_uri}")
                src.cmd("migrate", uri=self.to_uri)
                started = True
                status, reason = self._loop(src, dst)
            except QMPCommandError as exc:
                if not started:
                    raise InputError(str(exc)) from None
                status, reason = "failed", str(exc)
            except QMPConnectionLost as exc:
                if not started:
                    raise
                status, reason = "failed", str(exc)
            finally:
                if started and src is not None:
                    status, reason = self._ensure_safe(src, dst, status, reason)
                    source_status = self._source_state(src, run_state)
                if self.show is not None and hasattr(self.show, "close"):
                    self.show.close()  # type: ignore[attr-defined]
                for conn in (src, dst):
                    if conn is not None:
                        conn.close()
                if not started:
                    tee.close_file()
        run = parse_recording(tee.getvalue().splitlines())
        run.meta["path"] = str(record) if record else None
        outcome = outcome_from_run(run, str(record) if record else None)
        outcome.status, outcome.converged = status, status == "completed"
        if outcome.total_time_s is None:  # QEMU drops total-time once cancelled or failed
            outcome.total_time_s = next(
                (x.total_time for x in reversed(run.samples) if x.total_time is not None), None
            )
        result = MigrationResult(
            status, outcome, run, str(record) if record else None, self.actions, reason,
            source_status, self.postcopy, version, self.warnings,
        )  # fmt: skip
        self.rec.result({**outcome.to_dict(), "reason": reason, "source_status": source_status})
        tee.close_file()
        return result

    def _loop(self, src: QMP, dst: QMP | None) -> tuple[str, str | None]:
        next_poll = time.monotonic()
        sample: Sample | None = None
        while True:
            if self.fixed_interval is None:
                self.poll_interval = self.policy.poll_interval(sample)
            next_poll += self.poll_interval
            while time.monotonic() < next_poll and not self.flag.get("stop"):
                time.sleep(min(0.05, max(0.0, next_poll - time.monotonic())))
            sample = self._poll(src)
            status = sample.status or "unknown"
            if status in POSTCOPY_STATES and not self.postcopy:
                self.postcopy = True
            if status in TERMINAL:
                return status, sample.error or (None if status == "completed" else status)
            if dst is not None and not self._dest_alive(dst):
                return "failed", "the destination QEMU vanished"
            stop = self.flag.get("stop")
            if stop is None and self.time_limit is not None and sample.t > self.time_limit:
                stop = f"time limit of {self.time_limit:g} s reached"
            if stop is not None:
                if not self.postcopy:
                    return "cancelled", stop
                self._note_once("post-copy is running: it cannot be cancelled, waiting for it")
            now = sample.t or 0.0
            for action in self.policy.decide(sample, now) + self._postcopy_trigger(sample, now):
                if self._apply(src, action, now):
                    return "cancelled", action.reason

    def _poll(self, src: QMP) -> Sample:
        """One ``query-migrate``: recorded (with the QMP events before it) and shown."""
        info = src.cmd("query-migrate")
        t = time.time() - self.t0
        assert self.rec is not None
        for ev in src.events(EVENTS):
            self.rec.qmp_event(ev["timestamp"] - self.t0, ev["event"], ev["data"])
            # A short post-copy phase can start and finish between two polls: the
            # MIGRATION event still says it happened.
            if ev["event"] == "MIGRATION" and ev["data"].get("status") in POSTCOPY_STATES:
                self.postcopy = True
        self.rec.sample(t, info)
        sample = sample_from_query_migrate(info, round(t, 3))
        if sample.postcopy_bytes:
            self.postcopy = True
        if self.show is not None:
            self.show(sample, {"postcopy": self.postcopy})
        return sample

    def _dest_alive(self, dst: QMP) -> bool:
        try:
            dst.cmd("query-status", timeout=5.0)
            for ev in dst.events(("RESUME", "STOP", "MIGRATION")):
                self.rec.event(
                    ev["timestamp"] - self.t0, "info", f"destination {ev['event']}", ev["data"]
                )  # type: ignore[union-attr]
            return True
        except QMPConnectionLost:
            return False

    def _postcopy_trigger(self, sample: Sample, now: float) -> list[Action]:
        if not self.allow_postcopy or self.postcopy_requested or self.postcopy:
            return []
        if self.after_passes is not None and (sample.passes or 0) >= self.after_passes:
            return [Action(START_POSTCOPY, f"dirty-sync-count reached {self.after_passes}")]
        if self.after is not None and now >= self.after:
            return [Action(START_POSTCOPY, f"{self.after:g} s elapsed")]
        return []

    def _apply(self, src: QMP, action: Action, now: float) -> bool:
        """Carry out one action; True when it means: cancel the migration."""
        assert self.rec is not None
        action.t = round(now, 3)
        self.actions.append(action)
        data = action.to_dict()
        if action.kind == ABORT:
            self.rec.event(now, "cancelled", f"policy {self.policy.name}: {action.reason}", data)
            return True
        try:
            if action.kind == SET_PARAMETERS:
                src.cmd("migrate-set-parameters", **action.params)
                kind = "downtime-change" if "downtime-limit" in action.params else "settings"
                if "max-bandwidth" in action.params:
                    kind = "bandwidth-change"
                self.rec.event(now, kind, action.reason, data)
            elif action.kind == START_POSTCOPY:
                if not self.allow_postcopy:
                    self._note_once("the policy asked for post-copy, which was not allowed")
                    return False
                self.postcopy_requested = True
                src.cmd("migrate-start-postcopy")
                self.rec.event(now, "postcopy-start", action.reason, data)
            elif action.kind == PAUSE:
                src.cmd("stop")
                self.paused_by_us = True
                self.rec.event(now, "info", f"guest paused: {action.reason}", data)
        except QMPCommandError as exc:
            self.warnings.append(f"{action.kind} failed: {exc}")
            self.rec.event(now, "warning", f"{action.kind} failed: {exc}", data)
        return False

    def _note_once(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)
            if self.rec is not None:
                self.rec.event(time.time() - self.t0, "warning", text)

    # -- safety ----------------------------------------------------------------------
    def _ensure_safe(
        self, src: QMP, dst: QMP | None, status: str, reason: str | None
    ) -> tuple[str, str | None]:
        """Make sure the migration is over and, unless it completed, the source runs."""
        final = status
        try:
            state = self._poll(src).status  # also records the final state
            if state not in TERMINAL and not self.postcopy:
                with contextlib.suppress(QMPCommandError):
                    src.cmd("migrate_cancel")
                deadline = time.monotonic() + CANCEL_WAIT
                while state not in TERMINAL and time.monotonic() < deadline:
                    time.sleep(0.1)
                    state = self._poll(src).status
            elif state not in TERMINAL:  # post-copy cannot be cancelled: wait for it to end
                while state not in (*TERMINAL, "postcopy-paused"):
                    time.sleep(self.poll_interval)
                    state = self._poll(src).status
                if state == "postcopy-paused":
                    final = "failed"
                    reason = (
                        "post-copy paused (stream broken): neither side holds the whole VM; "
                        "only migrate-recover on the destination can save it"
                    )
            if state == "completed":
                final, reason = "completed", None
            elif status == "completed" and state in ("failed", "cancelled"):
                final = state
            assert self.rec is not None
            if final != "completed" and self.paused_by_us:
                src.cmd("cont")
                self.rec.event(time.time() - self.t0, "info", "source guest resumed")
            elif final == "completed" and self.paused_by_us:
                self._resume_destination(dst)
        except QMPConnectionLost as exc:
            final, reason = "failed", f"lost the source QMP connection: {exc}"
        return final, reason

    def _resume_destination(self, dst: QMP | None) -> None:
        """The guest was paused to finish; like Nova and KubeVirt, run it again on arrival."""
        assert self.rec is not None
        t = time.time() - self.t0
        if dst is None:
            self._note_once("the guest was paused to complete: run 'cont' on the destination")
            return
        try:
            deadline = time.monotonic() + 10
            while dst.status() == "inmigrate" and time.monotonic() < deadline:
                time.sleep(0.1)
            dst.cmd("cont")
            self.rec.event(t, "info", "guest resumed on the destination")
        except (QMPCommandError, QMPConnectionLost) as exc:
            self._note_once(f"could not resume the guest on the destination: {exc}")

    def _source_state(self, src: QMP, before: str) -> str | None:
        try:
            state = src.status()
            if state == "paused" and before == "running" and not self.paused_by_us:
                # QEMU resumes the guest itself after a failed migration; make sure of it.
                with contextlib.suppress(QMPCommandError):
                    q = src.cmd("query-migrate").get("status")
                    if q in ("failed", "cancelled"):
                        src.cmd("cont")
                        state = src.status()
            return state
        except QMPConnectionLost:
            return None
