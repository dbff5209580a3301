"""Supervise a migration that is running on a QEMU: poll, follow a policy, end it safely.

:class:`Supervisor` is shared by ``migtune migrate`` (a migration it started) and
``migtune migrate --attach`` (one already in progress).  It polls ``query-migrate``,
records every sample, QMP event and policy action, watches the destination and, at
the end, makes sure the migration is over and the source runs unless it completed.
The only exception is post-copy once started (the user must have allowed it): from
then on neither side holds the whole VM, so nothing is cancelled.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from migtune.analysis.live import EVENT_KIND
from migtune.errors import InputError, MigrationFailed, MigtuneError
from migtune.model import Sample
from migtune.outputs.recording import RecordingWriter
from migtune.qemu import restore
from migtune.qemu.livewatch import LiveWatch, Outcome
from migtune.qemu.policies import (
    ABORT,
    PAUSE,
    POSTCOPY_STATES,
    SET_PARAMETERS,
    START_POSTCOPY,
    Action,
    Policy,
)
from migtune.qemu.qmp import (
    QMP,
    Pending,
    QMPCommandError,
    QMPConnectionLost,
    QMPReplyError,
    interrupt_safely,
)
from migtune.sources.querymigrate import sample_from_query_migrate

TERMINAL = ("completed", "failed", "cancelled")
RUNNING = ("setup", "active", "device", "pre-switchover", "wait-unplug", *POSTCOPY_STATES)
EVENTS = ("MIGRATION", "MIGRATION_PASS", "STOP", "RESUME")
CANCEL_WAIT = 30.0  # s to wait for QEMU to confirm a cancel
DEST_GRACE = 60.0  # s a destination may stay silent (a network stall) before we give up
MALFORMED = "malformed-reply"  # pseudo status: the source answered query-migrate with nonsense
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
SIGNAL_REASONS = ("interrupted", "terminated", "hangup")  # the reason a signal cancels with

ProgressFn = Callable[[Sample, dict[str, Any]], None]


@contextlib.contextmanager
def signals_request_stop(flag: dict[str, Any]) -> Iterator[None]:
    """While supervising, SIGINT/SIGTERM/SIGHUP only ask for a clean cancel (main thread)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = dict(zip(STOP_SIGNALS, SIGNAL_REASONS, strict=True))

    def handler(signum: int, _frame: Any) -> None:
        if flag.get("stop"):  # asked twice: stop waiting (a cancel has been sent already)
            interrupt_safely(KeyboardInterrupt())
            return
        flag["stop"] = names.get(signum, "signal")

    old = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)


def progress_sink(progress: bool | ProgressFn) -> ProgressFn | None:
    if progress is True:
        from migtune.qemu.progress import ProgressDisplay

        return ProgressDisplay()
    return progress if callable(progress) else None


class DestinationWatch:
    """Asks the destination ``query-status`` without ever waiting for the answer.

    A destination whose process is gone closes its QMP socket: that is noticed at
    once.  One that is stopped (SIGSTOP, a network stall, swapping) just does not
    answer; QEMU itself would wait for it, so it gets ``grace`` seconds.
    """

    def __init__(self, dst: QMP, grace: float):
        self.dst = dst
        self.grace = grace
        self.pending: Pending | None = None
        self.silent_since: float | None = None

    def explain(self, reason: str | None, wait: float = 1.5) -> str | None:
        """QEMU failed the migration (a broken stream): add whether the destination is gone."""
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            problem = self.check()
            if problem is not None and "gone" in problem:
                return f"{reason}: {problem}" if reason else problem
            time.sleep(0.1)
        return reason

    def check(self) -> str | None:
        """None while the destination answers (or is silent within the grace), else why not."""
        gone = "the destination QEMU process is gone (its QMP connection closed)"
        self.dst.pump()
        if self.pending is not None and self.pending.done():
            try:
                self.pending.result()
            except QMPConnectionLost:
                return gone
            except (QMPCommandError, QMPReplyError):
                pass  # it answered, so it is there
            self.pending = None
            self.silent_since = None
        if not self.dst.connected:
            return gone
        if self.pending is None:
            try:
                self.pending = self.dst.submit("query-status")
            except QMPConnectionLost:
                return gone
            return None
        silent = time.monotonic() - self.pending.sent
        if silent > 2.0 and self.silent_since is None:
            self.silent_since = self.pending.sent
        if silent > self.grace:
            return (
                f"the destination is not answering: no QMP reply for {silent:.0f} s "
                f"(grace {self.grace:g} s, --dest-grace)"
            )
        return None


class Supervisor:
    """Polls one migration on ``src`` until it ends; see the module docstring."""

    def __init__(
        self,
        policy: Policy,
        time_limit: float | None,
        poll_interval: float | None,
        allow_postcopy: bool,
        after_passes: int | None = None,
        after: float | None = None,
        dest_grace: float = DEST_GRACE,
    ):
        self.policy, self.time_limit = policy, time_limit
        self.allow_postcopy, self.after_passes, self.after = allow_postcopy, after_passes, after
        # None: the policy's own cadence (Proxmox 1 s / 100 ms, Nova 0.5 s, KubeVirt 0.4 s)
        self.fixed_interval = None if poll_interval is None else max(0.05, poll_interval)
        self.poll_interval = self.fixed_interval or policy.poll_interval(None)
        self.dest_grace = dest_grace
        self.flag: dict[str, Any] = {}
        self.actions: list[Action] = []
        self.warnings: list[str] = []
        self.postcopy = False
        self.postcopy_requested = False
        self.paused_by_us = False
        self.t0 = time.time()
        self.rec: RecordingWriter | None = None
        self.show: ProgressFn | None = None
        self.on_pause: Callable[[], None] | None = None  # lets --cancel know who paused it
        self.dest_unreachable = False  # gone or silent: do not wait on it any more
        # the live prediction (migtune.qemu.livewatch), fed the recording so far
        self.live: LiveWatch | None = None
        self.snapshot: Callable[[], str] | None = None
        self.prediction_text: str | None = None

    # -- the loop --------------------------------------------------------------------
    def loop(self, src: QMP, dst: QMP | None) -> tuple[str, str | None]:
        watch = DestinationWatch(dst, self.dest_grace) if dst is not None else None
        next_poll = time.monotonic()
        sample: Sample | None = None
        while True:
            if self.fixed_interval is None:
                self.poll_interval = self.policy.poll_interval(sample)
            next_poll += self.poll_interval
            while time.monotonic() < next_poll and not self.flag.get("stop"):
                time.sleep(min(0.05, max(0.0, next_poll - time.monotonic())))
            sample = self.poll(src)
            status = sample.status or "unknown"
            if status in POSTCOPY_STATES and not self.postcopy:
                self.postcopy = True
            if status in TERMINAL:
                reason = sample.error or (None if status == "completed" else status)
                if status == "failed" and watch is not None:
                    reason = watch.explain(reason)
                return status, reason
            if watch is not None:
                problem = watch.check()
                self._record_destination_events(dst)
                if problem is not None:
                    self.dest_unreachable = True
                    return "failed", problem
                if watch.silent_since is not None:
                    text = "the destination stopped answering; waiting for it"
                    if text not in self.warnings and self.show is not None:
                        print(f"migtune: warning: {text} (up to {self.dest_grace:g} s, "
                              "--dest-grace)", file=sys.stderr, flush=True)  # fmt: skip
                    self.note_once(text)
            stop = self.flag.get("stop")
            if stop is None and self.time_limit is not None and sample.t > self.time_limit:
                stop = f"time limit of {self.time_limit:g} s reached"
            if stop is not None:
                if not self.postcopy:
                    return "cancelled", stop
                self.note_once("post-copy is running: it cannot be cancelled, waiting for it")
            now = sample.t or 0.0
            self._live_step(sample, now)
            for action in self.policy.decide(sample, now) + self._postcopy_trigger(sample, now):
                if self.apply(src, action, now):
                    return "cancelled", action.reason

    def poll(self, src: QMP) -> Sample:
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
        try:
            sample = sample_from_query_migrate(info, round(t, 3))
        except (TypeError, ValueError, AttributeError, KeyError) as exc:
            raise QMPReplyError("query-migrate", f"{type(exc).__name__}: {exc}") from None
        if sample.postcopy_bytes:
            self.postcopy = True
        if self.show is not None:
            try:
                self.show(sample, {"postcopy": self.postcopy, "prediction": self.prediction_text})
            except Exception:
                self.show = None  # a broken display must not also break the cancel
                raise
        return sample

    def _live_step(self, sample: Sample, now: float) -> None:
        """Collect finished predictions (recorded, shown, handed to the policy) and start
        the next one at a sync.  Never waits; a failure is one warning, never the
        migration's end."""
        live = self.live
        if live is None or self.snapshot is None:
            return
        try:
            for out in live.collect():
                if out.current is None:
                    continue
                self._record_prediction(out, now)
                self.policy.on_prediction(out.current, out.alternatives)
            changes = self.policy.candidate_changes(sample)
            live.feed(sample, self.snapshot, changes)
        except Exception as exc:  # noqa: BLE001 - the prediction is optional, the migration is not
            self.live = None
            live.close()
            self.note_once(f"live prediction stopped: {type(exc).__name__}: {exc}")
        for text in live.warnings:
            self.note_once(f"live prediction: {text}")

    def _record_prediction(self, out: Outcome, now: float) -> None:
        self.prediction_text = out.current.short()
        assert self.rec is not None
        self.rec.event(now, EVENT_KIND, out.current.message(), out.event_data(now))
        metrics = getattr(self, "metrics", None)  # a Prometheus endpoint (migrate --metrics-port)
        if metrics is not None:
            out.publish(metrics)

    def _record_destination_events(self, dst: QMP | None) -> None:
        if dst is None or self.rec is None:
            return
        for ev in dst.events(("RESUME", "STOP", "MIGRATION")):
            self.rec.event(
                ev["timestamp"] - self.t0, "info", f"destination {ev['event']}", ev["data"]
            )

    def _postcopy_trigger(self, sample: Sample, now: float) -> list[Action]:
        if not self.allow_postcopy or self.postcopy_requested or self.postcopy:
            return []
        if self.after_passes is not None and (sample.passes or 0) >= self.after_passes:
            return [Action(START_POSTCOPY, f"dirty-sync-count reached {self.after_passes}")]
        if self.after is not None and now >= self.after:
            return [Action(START_POSTCOPY, f"{self.after:g} s elapsed")]
        return []

    def apply(self, src: QMP, action: Action, now: float) -> bool:
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
                    self.note_once("the policy asked for post-copy, which was not allowed")
                    return False
                self.postcopy_requested = True
                src.cmd("migrate-start-postcopy")
                self.rec.event(now, "postcopy-start", action.reason, data)
            elif action.kind == PAUSE:
                src.cmd("stop")
                self.paused_by_us = True
                if self.on_pause is not None:
                    self.on_pause()
                self.rec.event(now, "info", f"guest paused: {action.reason}", data)
        except QMPCommandError as exc:
            self.warnings.append(f"{action.kind} failed: {exc}")
            self.rec.event(now, "warning", f"{action.kind} failed: {exc}", data)
        return False

    def note_once(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)
            if self.rec is not None:
                self.rec.event(time.time() - self.t0, "warning", text)

    # -- safety ----------------------------------------------------------------------
    def _state(self, src: QMP) -> str | None:
        """The migration status now (recorded): None before any migration (QEMU then
        answers ``{}``), ``MALFORMED`` when the reply made no sense."""
        try:
            return self.poll(src).status
        except QMPReplyError:
            return MALFORMED

    def ensure_safe(
        self, src: QMP, dst: QMP | None, status: str, reason: str | None
    ) -> tuple[str, str | None]:
        """Make sure the migration is over and, unless it completed, the source runs."""
        final = status
        try:
            state = self._state(src)
            if state in (None, "none"):  # QEMU refused to start it: nothing to cancel
                return final, reason
            if state not in TERMINAL and not self.postcopy:
                with contextlib.suppress(QMPCommandError):
                    src.cmd("migrate_cancel")
                deadline = time.monotonic() + CANCEL_WAIT
                senseless = 0
                while state not in TERMINAL and time.monotonic() < deadline and senseless < 3:
                    time.sleep(0.1)
                    state = self._state(src)
                    senseless = senseless + 1 if state == MALFORMED else 0
                if state not in TERMINAL:
                    final = "failed"
                    reason = f"{reason or status}; QEMU did not confirm the cancel (status {state})"
            elif state not in TERMINAL:  # post-copy cannot be cancelled: wait for it to end
                while state not in (*TERMINAL, "postcopy-paused"):
                    time.sleep(self.poll_interval)
                    state = self._state(src)
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
            if src.connected and not self.postcopy:  # slow, not gone: it must not run unwatched
                with contextlib.suppress(MigtuneError):
                    src.cmd("migrate_cancel", timeout=30.0)
                    reason += " (migrate_cancel sent)"
        return final, reason

    def _resume_destination(self, dst: QMP | None) -> None:
        """The guest was paused to finish; like Nova and KubeVirt, run it again on arrival."""
        assert self.rec is not None
        t = time.time() - self.t0
        if dst is None:
            self.note_once("the guest was paused to complete: run 'cont' on the destination")
            return
        try:
            deadline = time.monotonic() + 10
            while dst.status() == "inmigrate" and time.monotonic() < deadline:
                time.sleep(0.1)
            dst.cmd("cont")
            self.rec.event(t, "info", "guest resumed on the destination")
        except (QMPCommandError, QMPConnectionLost, QMPReplyError) as exc:
            self.note_once(f"could not resume the guest on the destination: {exc}")

    def source_state(self, src: QMP, before: str) -> str | None:
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
        except (QMPConnectionLost, QMPReplyError):
            return None


# -- ending a migration nobody supervises (migtune was killed) ---------------------------


@dataclass
class CancelResult:
    status: str  # what query-migrate says at the end: cancelled | failed | completed
    previous: str  # the status before the cancel
    source_status: str | None
    settings_restored: bool | None
    warnings: list[str] = field(default_factory=list)


def cancel_migration(source_qmp: str, *, keep_settings: bool = False) -> CancelResult:
    """Cancel the migration running on ``source_qmp`` and check that the source runs.

    Refuses (``InputError``) when none is in progress or post-copy has started
    (cancelling it would lose the VM).  Restores the settings a killed migtune saved,
    and resumes the guest if that migtune had paused it.
    """
    refuse_if_supervised(source_qmp)
    with QMP(source_qmp, name="source") as src:
        before = src.migration_status() or "none"
        if before not in RUNNING:
            raise InputError(f"no migration in progress on {source_qmp} (status {before})")
        if before in POSTCOPY_STATES:
            raise InputError(
                f"post-copy is running ({before}): cancelling it would lose the VM; wait for "
                "it to end, or recover it with migrate-recover on the destination"
            )
        with contextlib.suppress(QMPCommandError):
            src.cmd("migrate_cancel")
        state, deadline = before, time.monotonic() + CANCEL_WAIT
        while state not in TERMINAL and time.monotonic() < deadline:
            time.sleep(0.1)
            state = src.migration_status() or "none"
        warnings: list[str] = []
        run_state = src.status()
        if run_state == "paused" and state != "completed" and restore.paused_by_migtune(source_qmp):
            src.cmd("cont")  # the killed migtune's policy paused it to finish
            run_state = src.status()
        restored = _restore_saved(src, source_qmp, keep_settings, warnings)
    if state not in TERMINAL:
        raise MigrationFailed(f"QEMU did not confirm the cancel within {CANCEL_WAIT:g} s")
    return CancelResult(state, before, run_state, restored, warnings)


def refuse_if_supervised(source_qmp: str) -> None:
    """--attach/--cancel are for a migration nobody supervises: not one a live migtune has."""
    pid = restore.live_owner(source_qmp)
    if pid is not None:
        raise InputError(
            f"migtune (PID {pid}) is supervising this migration: stop it with Ctrl-C or "
            f"kill -TERM {pid}, which cancels it cleanly"
        )


def _restore_saved(src: QMP, path: str, keep: bool, warnings: list[str]) -> bool | None:
    saved = restore.load_saved(path)
    if saved is None or keep:
        return None
    problems = saved.restore(src)
    warnings += problems
    restore.forget(path)
    return not problems
