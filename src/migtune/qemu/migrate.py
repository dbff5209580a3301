"""Drive one live migration of a running QEMU over QMP, safely, and record it.

:func:`migrate` checks the request against the QEMU version, remembers the
settings in force, configures both sides, issues ``migrate`` and hands over to the
:class:`~migtune.qemu.supervisor.Supervisor`, which polls, follows a policy
(:mod:`migtune.qemu.policies`) and writes a recording
(:mod:`migtune.sources.recording`).  :func:`attach` supervises a migration that is
already running (started by hand, or by a migtune that was killed);
:func:`cancel_migration` ends one.

A migration migtune started is always either supervised or cancelled: whatever
goes wrong inside migtune once ``migrate`` was issued (an I/O error, a malformed
reply, a bug) ends in ``migrate_cancel`` with the source checked to be running,
then the error.  A recording that cannot be written stops with a warning; the
migration goes on.  Afterwards the settings migtune changed are put back
(:mod:`migtune.qemu.restore`) unless ``keep_settings``.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from migtune.errors import (
    EXIT_CANCELLED,
    EXIT_FAILED,
    EXIT_INTERNAL,
    EXIT_OK,
    InputError,
    MigrationCancelled,
    MigtuneError,
)
from migtune.model import Run, Settings, to_dict
from migtune.outcome import Outcome, outcome_from_run
from migtune.outputs.recording import RecordingTee, RecordingWriter
from migtune.qemu import compat, restore
from migtune.qemu.livewatch import LiveWatch
from migtune.qemu.params import qmp_parameters, settings_from_qemu
from migtune.qemu.policies import POSTCOPY_STATES, SET_PARAMETERS, Action, Policy, parse_policy
from migtune.qemu.qmp import QMP, QMPCommandError, QMPConnectionLost, QMPReplyError
from migtune.qemu.supervisor import (
    DEST_GRACE,
    RUNNING,
    TERMINAL,
    CancelResult,
    ProgressFn,
    Supervisor,
    cancel_migration,
    progress_sink,
    refuse_if_supervised,
    signals_request_stop,
)
from migtune.settings import check_for_guest
from migtune.sources.recording import parse_recording

if TYPE_CHECKING:
    from migtune.outputs.metrics import MigrationMetrics

__all__ = ["MigrationResult", "migrate", "attach", "cancel_migration", "CancelResult"]


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
    settings_restored: bool | None = None  # None: nothing to restore (or --keep-settings)

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
            "settings_restored": self.settings_restored,
        }


def postcopy_refusal(settings: Settings, allow_postcopy: bool) -> None:
    """Post-copy only with the explicit opt-in, however it was asked for."""
    if settings.capabilities.get("postcopy-ram") and not allow_postcopy:
        raise InputError(
            "postcopy-ram=on needs --postcopy: after the switch to post-copy neither side "
            "holds the whole VM, so if the network fails the VM is lost"
        )


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
    dest_grace: float = DEST_GRACE,
    keep_settings: bool = False,
    metrics: MigrationMetrics | None = None,
    predict: bool = True,
) -> MigrationResult:
    """Migrate the QEMU behind ``source_qmp`` to ``to_uri`` and return what happened.

    ``settings`` holds what to set (``None`` fields are left as QEMU has them).
    With ``allow_postcopy`` the ``postcopy-ram`` capability is enabled on both
    sides (``dest_qmp`` is then required) and the switch happens after
    ``postcopy_after_passes`` (QEMU's dirty-sync-count), after ``postcopy_after``
    seconds or when the policy asks; with the ``fixed`` or ``proxmox`` policy and
    no trigger given it switches once the first full pass is done (count 2).
    ``postcopy-ram`` in ``settings`` without ``allow_postcopy`` is refused.
    A destination that does not answer QMP for ``dest_grace`` seconds fails the
    migration.  With ``predict`` (always with ``--policy migtune``) the model predicts
    the outcome at every sync from the first pass's end on, off the polling loop
    (:mod:`migtune.qemu.livewatch`): shown on the progress line, recorded as
    ``prediction`` events.  Raises ``UnavailableError`` when a QMP socket is missing,
    ``InputError`` for a combination QEMU rejects; otherwise returns a
    :class:`MigrationResult`.  ``metrics`` (:mod:`migtune.outputs.metrics`) is fed
    every sample, the settings in force and the outcome, for a Prometheus endpoint.
    """
    postcopy_refusal(settings, allow_postcopy)
    pol = parse_policy(policy)
    # What needs no guest (a downtime limit of 0, no time at all) is refused before any socket.
    check_for_guest(settings, None, time_limit=time_limit)
    no_trigger = postcopy_after_passes is None and postcopy_after is None
    if allow_postcopy and no_trigger and pol.name in ("fixed", "proxmox"):
        postcopy_after_passes = 2
    driver = _Driver(
        source_qmp, to_uri, settings, pol, time_limit, dest_qmp, allow_postcopy,
        postcopy_after_passes, postcopy_after, poll_interval, dest_grace, keep_settings,
        predict, metrics,
    )  # fmt: skip
    return driver.run(record, progress, meta or {}, workload)


def attach(
    source_qmp: str,
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
    dest_grace: float = DEST_GRACE,
    keep_settings: bool = False,
    metrics: MigrationMetrics | None = None,
    predict: bool = True,
) -> MigrationResult:
    """Take over supervision of the migration already running on ``source_qmp``.

    Times (``time_limit``, the policy's timeouts) count from the start of the
    migration as QEMU reports it (``total-time``), not from the attach.  Settings
    saved by the migtune that started it are restored at the end unless
    ``keep_settings``.  Raises ``InputError`` when no migration is in progress.
    """
    refuse_if_supervised(source_qmp)
    driver = _Driver(
        source_qmp, None, Settings(), parse_policy(policy), time_limit, dest_qmp,
        allow_postcopy, postcopy_after_passes, postcopy_after, poll_interval, dest_grace,
        keep_settings, predict, metrics,
    )  # fmt: skip
    return driver.run(record, progress, {"attached": True}, None)


def _guest_ram(q: QMP) -> int | None:
    """The guest's RAM in bytes as QEMU reports it (``query-memory-size-summary``)."""
    summary = q.cmd("query-memory-size-summary")
    ram = summary.get("base-memory") if isinstance(summary, dict) else None
    return ram if isinstance(ram, int) else None


class _Driver(Supervisor):
    def __init__(
        self, source_qmp: str, to_uri: str | None, settings: Settings, policy: Policy,
        time_limit: float | None, dest_qmp: str | None, allow_postcopy: bool,
        after_passes: int | None, after: float | None, poll_interval: float | None,
        dest_grace: float, keep_settings: bool, predict: bool = True,
        metrics: MigrationMetrics | None = None,
    ):  # fmt: skip
        super().__init__(
            policy, time_limit, poll_interval, allow_postcopy, after_passes, after, dest_grace
        )
        self.source_qmp, self.to_uri, self.settings = source_qmp, to_uri, settings
        self.dest_qmp, self.keep_settings = dest_qmp, keep_settings
        self.attaching = to_uri is None
        self.predict = predict or policy.name == "migtune"  # it steers by the prediction
        # side -> (connection, settings before migtune touched them)
        self.snapshots: dict[str, tuple[QMP, restore.SettingsSnapshot]] = {}
        self.restored: bool | None = None
        self.metrics = metrics  # a Prometheus endpoint's figures (None: no endpoint)

    # -- set-up ------------------------------------------------------------------------
    def _snapshot(self, side: str, q: QMP, path: str) -> None:
        if self.keep_settings:
            return
        snap = restore.SettingsSnapshot.take(q)
        self.snapshots[side] = (q, snap)
        if side == "source":
            restore.save(path, side, snap)
            self.on_pause = lambda: restore.mark_paused(path)

    def _configure(self, src: QMP, dst: QMP | None) -> tuple[str, Settings, str]:
        assert self.to_uri is not None
        version = src.version()
        offered = compat.available_capabilities(src.cmd("query-migrate-capabilities"))
        self.warnings += compat.check(
            self.settings, version, offered,
            allow_postcopy=self.allow_postcopy, dest_qmp=dst is not None,
        )  # fmt: skip
        # Settings that make no sense for this guest (a cache as large as its RAM): refuse
        # before anything is set on either side.
        guest_ram = _guest_ram(src)
        self.warnings += check_for_guest(self.settings, guest_ram, time_limit=self.time_limit)
        state = src.migration_status()
        if state not in (None, "none", *TERMINAL):
            raise InputError(
                f"a migration is already in progress on this QEMU (status {state}): "
                "take it over with --attach or stop it with --cancel"
            )
        run_state = src.status()
        if run_state in ("inmigrate", "postmigrate", "shutdown", "internal-error"):
            raise InputError(f"the source VM cannot be migrated now (run state {run_state})")
        caps = {**self.policy.capabilities(self.settings), **self.settings.capabilities}
        if self.allow_postcopy:
            caps["postcopy-ram"] = True
        caps_arg = [{"capability": k, "state": bool(v)} for k, v in caps.items()]
        self._snapshot("source", src, self.source_qmp)
        if dst is not None:
            self._snapshot("destination", dst, str(self.dest_qmp))
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
            if dst.migration_status() in (None, "none"):
                dst.cmd("migrate-incoming", uri=self.to_uri)  # started with -incoming defer
        src.cmd(
            "migrate-set-capabilities",
            capabilities=[*caps_arg, {"capability": "events", "state": True}],
        )
        params = qmp_parameters(self.settings)
        if params:
            src.cmd("migrate-set-parameters", **params)
        effective = self._effective(src, version)
        self._configure_policy(effective, guest_ram)
        initial = self.policy.initial_actions()
        for action in initial:  # recorded once the header is written
            action.t = 0.0
            if action.kind == SET_PARAMETERS:
                src.cmd("migrate-set-parameters", **action.params)
            self.actions.append(action)
        if initial:
            effective = self._effective(src, version)
        return version, effective, run_state

    def _adopt(self, src: QMP) -> tuple[str, Settings, str]:
        """--attach: find the running migration and take it over where it is."""
        version = src.version()
        info = src.cmd("query-migrate")
        state = info.get("status")
        if state not in RUNNING:
            raise InputError(
                f"no migration in progress on {self.source_qmp} (status {state or 'none'})"
            )
        saved = None if self.keep_settings else restore.load_saved(self.source_qmp)
        if saved is not None:
            self.snapshots["source"] = (src, saved)
        self.on_pause = lambda: restore.mark_paused(self.source_qmp)
        self.paused_by_us = restore.paused_by_migtune(self.source_qmp)
        self.postcopy = state in POSTCOPY_STATES
        total = info.get("total-time")
        elapsed = total / 1000.0 if isinstance(total, (int, float)) else 0.0
        self.t0 = time.time() - elapsed  # times count from QEMU's own start of the migration
        effective = self._effective(src, version)
        effective.migration_uri = None  # QEMU does not say where it migrates to
        self._configure_policy(effective, _guest_ram(src))
        with contextlib.suppress(QMPCommandError):  # so the recording gets MIGRATION events
            src.cmd(
                "migrate-set-capabilities", capabilities=[{"capability": "events", "state": True}]
            )
        return version, effective, "running"

    def _configure_policy(self, effective: Settings, guest_ram: int | None) -> None:
        self.policy.configure(
            effective,
            ram_bytes=guest_ram,
            allow_postcopy=self.allow_postcopy,
            requested=self.settings,
            time_limit=self.time_limit,
        )

    def _effective(self, src: QMP, version: str) -> Settings:
        effective = settings_from_qemu(
            src.cmd("query-migrate-parameters"),
            src.cmd("query-migrate-capabilities"),
            self.to_uri or "",
        )
        effective.qemu_version = version
        return effective

    def _recording_stopped(self, why: str) -> None:
        text = f"{why}: recording stopped, the migration goes on under supervision"
        self.note_once(text)
        print(f"migtune: warning: {text}", file=sys.stderr, flush=True)

    # -- main ------------------------------------------------------------------------
    def run(
        self, record: str | Path | None, progress: bool | ProgressFn, meta: dict,
        workload: str | None,
    ) -> MigrationResult:  # fmt: skip
        # an unwritable or full recording target fails before QEMU is touched
        tee = RecordingTee(record, on_stop=self._recording_stopped)
        self.rec = RecordingWriter(None, stream=tee)
        status, reason, source_status, version = "failed", None, None, None
        run_state, issued, started = "running", False, False
        src = dst = None
        error: BaseException | None = None
        display: ProgressFn | None = None
        with signals_request_stop(self.flag):
            try:
                src = QMP(self.source_qmp, name="source").connect()
                dst = QMP(self.dest_qmp, name="destination").connect() if self.dest_qmp else None
                if self.attaching:
                    version, effective, run_state = self._adopt(src)
                    issued = True  # from here on, it is ours to supervise or cancel
                else:
                    version, effective, run_state = self._configure(src, dst)
                    self.t0 = time.time()
                self.show = display = progress_sink(progress)
                if self.metrics is not None:  # every sample also goes to the endpoint
                    self.show = self.metrics.progress_sink(display, effective, self.actions)
                src.events()  # drop whatever was queued before this migration
                self.rec.header(
                    "migrate", to_dict(effective), self.t0, qemu_version=version,
                    workload=workload,
                    meta={**meta, "policy": self.policy.describe(), "uri": self.to_uri,
                          "time_limit": self.time_limit, "allow_postcopy": self.allow_postcopy,
                          "source_run_state": run_state, "warnings": self.warnings,
                          "postcopy_after_passes": self.after_passes,
                          "postcopy_after": self.after, "predict": self.predict},
                )  # fmt: skip
                for action in self.actions:
                    self.rec.event(0.0, "settings", action.reason, action.to_dict())
                if not self.attaching:
                    self.rec.event(0.0, "ram-start", f"migrate uri={self.to_uri}")
                if self.predict:
                    self.live = LiveWatch(
                        time_limit=self.policy.prediction_limit(),
                        postcopy_after_passes=self.after_passes,
                        postcopy_after=self.after,
                    )
                    self.snapshot = tee.getvalue
                    self.live.start()
                    self.policy.live_fed = True  # predictions come from the worker
                if self.flag.get("stop") and not self.attaching:  # Ctrl-C while configuring
                    raise MigrationCancelled(f"{self.flag['stop']} before the migration started")
                tee.strict = False  # from now on a write error only stops the recording
                if not self.attaching:
                    issued = True
                    src.cmd("migrate", uri=self.to_uri)
                started = True
                status, reason = self.loop(src, dst)
            except QMPCommandError as exc:
                if not started:
                    raise InputError(str(exc)) from None
                status, reason = "failed", str(exc)
            except QMPConnectionLost as exc:
                if not started:
                    raise
                status, reason = "failed", str(exc)
            except BaseException as exc:
                if not issued:
                    raise
                error = exc
                status, reason = "failed", f"{type(exc).__name__}: {exc}"
            finally:
                if issued and src is not None:
                    try:
                        status, reason = self.ensure_safe(src, dst, status, reason)
                        source_status = self.source_state(src, run_state)
                    except Exception as exc:  # noqa: BLE001 - a bug here must not skip the rest
                        with contextlib.suppress(Exception):
                            src.cmd("migrate_cancel")  # last resort: never leave it unwatched
                        error = error or exc
                        status = "failed"
                try:
                    self._restore_settings(status)
                except Exception as exc:  # noqa: BLE001 - the connections must still be closed
                    self.warnings.append(f"settings not restored: {type(exc).__name__}: {exc}")
                if self.live is not None:
                    with contextlib.suppress(Exception):
                        self.live.close()
                if hasattr(display, "close"):
                    with contextlib.suppress(Exception):
                        display.close()
                for conn in (src, dst):
                    if conn is not None:
                        conn.close()
                if not issued:
                    tee.close_file()
        result = self._result(tee, record, status, reason, source_status, version)
        if self.metrics is not None:
            self.metrics.finish(result.status)
        if error is not None:
            raise _after_cancel(error, source_status)
        return result

    def _restore_settings(self, status: str) -> None:
        """Put back what was changed: on the source always, on the destination unless it
        now runs the VM (the settings it was given are the ones it arrived with)."""
        if not self.snapshots:
            return
        problems: list[str] = []
        for side, (conn, snap) in self.snapshots.items():
            if side == "destination" and (status == "completed" or self.dest_unreachable):
                continue
            if not conn.connected:
                continue  # QEMU exits on the destination after a cancel: nothing to keep
            try:
                problems += [f"{side}: {p}" for p in snap.restore(conn)]
            except (QMPConnectionLost, QMPReplyError, QMPCommandError) as exc:
                if side == "source":
                    problems.append(f"source: settings not restored ({exc})")
        self.restored = not problems
        self.warnings += problems
        # before the migration starts a recording error is fatal; it must not mask this one
        with contextlib.suppress(MigtuneError):
            assert self.rec is not None
            self.rec.event(
                time.time() - self.t0, "info",
                "settings restored" if not problems else "settings partly restored",
                {"problems": problems},
            )  # fmt: skip
        if "source" in self.snapshots and not any(p.startswith("source") for p in problems):
            restore.forget(self.source_qmp)

    def _result(
        self, tee: RecordingTee, record: str | Path | None, status: str, reason: str | None,
        source_status: str | None, version: str | None,
    ) -> MigrationResult:  # fmt: skip
        lines = tee.getvalue().splitlines()
        run = parse_recording(lines)
        run.lines = lines  # the recording's text, for the history when no file was written
        where = str(record) if record else None
        run.meta["path"] = where
        outcome = outcome_from_run(run, where)
        outcome.status, outcome.converged = status, status == "completed"
        if outcome.total_time_s is None:  # QEMU drops total-time once cancelled or failed
            outcome.total_time_s = next(
                (x.total_time for x in reversed(run.samples) if x.total_time is not None), None
            )
        result = MigrationResult(
            status, outcome, run, where, self.actions, reason, source_status, self.postcopy,
            version, self.warnings, self.restored,
        )  # fmt: skip
        assert self.rec is not None
        self.rec.result(
            {**outcome.to_dict(), "reason": reason, "source_status": source_status,
             "settings_restored": self.restored}
        )  # fmt: skip
        tee.close_file()
        return result


def _after_cancel(error: BaseException, source_status: str | None) -> BaseException:
    """The error that ended a migration, once it was cancelled, as one line."""
    if isinstance(error, KeyboardInterrupt) or not isinstance(error, Exception):
        return error
    where = f"source VM {source_status}" if source_status else "source VM state unknown"
    if isinstance(error, MigtuneError):
        out = MigtuneError(f"{error}; the migration was cancelled, {where}")
        out.exit_code = error.exit_code
        return out
    if os.environ.get("MIGTUNE_DEBUG"):
        return error
    out = MigtuneError(
        f"internal error: {type(error).__name__}: {error}; the migration was cancelled, "
        f"{where} (set MIGTUNE_DEBUG=1 for details)"
    )
    out.exit_code = EXIT_INTERNAL
    return out
