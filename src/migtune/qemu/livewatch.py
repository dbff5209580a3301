"""Live prediction next to a running migration, never in its way.

:class:`LiveWatch` is fed every sample the supervisor polls.  At the end of the first
pass and at each later sync (QEMU's dirty-sync-count rises) it hands the recording so
far to a worker, which calibrates and predicts (:func:`migtune.analysis.live.predict`);
the supervisor collects finished predictions between polls.  Polling, policy and
cancel never wait for it:

* the worker is a separate Python process (``python -m migtune.qemu.livewatch``) in its
  own session, so a long calibration takes neither the GIL nor Ctrl-C from the driver;
* one job at a time: a sync that comes while the worker is busy, or sooner after the
  last prediction than that one took (at least 1 s), is skipped;
* a job that takes longer than ``budget`` seconds is abandoned and the worker killed
  (a fresh one starts at the next sync);
* whatever goes wrong (the worker dies, an error in the model) is one warning, and the
  migration goes on as if there were no prediction.

``mode="inline"`` runs the same jobs synchronously in-process (tests, the benchmark).
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from migtune.analysis.live import Change, LivePrediction, predict, recording_prefix
from migtune.model import Sample

BUDGET = 60.0  # s a prediction may take before it is abandoned
# The worker shares the machine with QEMU: after a prediction that took c seconds the
# next one waits at least max(MIN_GAP, c), so it is busy at most half of the time.
MIN_GAP = 1.0
POSTCOPY_OR_DONE = ("postcopy-active", "postcopy-paused", "postcopy-recover", "postcopy-device",
                    "completed", "failed", "cancelled", "cancelling", "device")  # fmt: skip


@dataclass
class Outcome:
    """One finished job: the prediction as it goes and with each change asked for."""

    current: LivePrediction | None
    alternatives: list[tuple[Change, LivePrediction]] = field(default_factory=list)
    error: str | None = None
    asked_at: float = 0.0  # seconds into the migration the job was started at

    def event_data(self, now: float) -> dict[str, Any]:
        """The ``prediction`` event's data (see :mod:`migtune.sources.recording`)."""
        assert self.current is not None
        data = self.current.to_dict()
        data["available_t"] = round(now, 3)
        data["alternatives"] = [
            {**p.to_dict(), "change": c.to_dict()} for c, p in self.alternatives
        ]
        return data

    def publish(self, metrics: Any) -> None:
        """Hand the prediction to a metrics endpoint (``set_prediction``): the time left
        with its range, converges (None while uncertain), the expected pause."""
        assert self.current is not None
        pred = self.current
        eta, down = pred.eta_s, pred.downtime_ms["median"]
        verdict = {"converges": True, "will-not-converge": False}.get(pred.verdict)
        metrics.set_prediction(
            eta["median"], verdict, eta_low_s=eta["min"], eta_high_s=eta["max"],
            downtime_s=None if down is None else down / 1000.0,
        )  # fmt: skip


def run_job(job: dict[str, Any], lines: list[str]) -> dict[str, Any]:
    """Calibrate from ``lines`` (a recording so far) and predict: the worker's one task."""
    run = recording_prefix(lines)
    changes = [Change(tuple(c.get("set", ())), bool(c.get("postcopy"))) for c in job["changes"]]
    current, others = predict(
        run,
        time_limit=job.get("time_limit"),
        changes=changes,
        postcopy_after_passes=job.get("postcopy_after_passes"),
        postcopy_after=job.get("postcopy_after"),
    )
    return {"current": current.to_dict(), "alternatives": [o.to_dict() for o in others]}


class LiveWatch:
    def __init__(
        self,
        *,
        time_limit: float | None = None,
        postcopy_after_passes: int | None = None,
        postcopy_after: float | None = None,
        budget: float = BUDGET,
        mode: str = "process",
    ):
        self.params = {
            "time_limit": time_limit,
            "postcopy_after_passes": postcopy_after_passes,
            "postcopy_after": postcopy_after,
        }
        self.budget, self.mode = budget, mode
        self.last_sync: int | None = None
        self.busy_since: float | None = None
        self.job_id = 0
        self.job_t = 0.0
        self.changes: list[Change] = []
        self.sent = 0  # characters of the recording the worker has
        self.proc: subprocess.Popen[str] | None = None
        self.replies: queue.Queue[str | None] = queue.Queue()
        self.done: list[Outcome] = []
        self.warnings: list[str] = []
        self.failures = 0
        self.next_allowed = 0.0  # monotonic time before which no job starts (see MIN_GAP)
        self.min_gap = MIN_GAP if mode == "process" else 0.0

    def start(self) -> None:
        """Start the worker now, so its imports are done by the end of the first pass."""
        if self.mode == "process":
            try:
                self._ensure_worker()
            except OSError as exc:
                self._fail(f"the prediction worker could not start: {exc}")

    # -- fed by the supervisor ---------------------------------------------------------------
    def wants(self, sample: Sample) -> bool:
        """A new sync since the last job (from dirty-sync-count 2 on), pre-copy running."""
        if sample.passes is None or sample.passes < 2 or sample.status in POSTCOPY_OR_DONE:
            return False
        return self.last_sync is None or sample.passes > self.last_sync

    def feed(
        self,
        sample: Sample,
        snapshot: Callable[[], str],
        changes: list[Change] | None = None,
        force: bool = False,
    ) -> bool:
        """Start a job for this sample if it ends a pass and the worker is free; True if
        started.  ``snapshot()`` returns the recording so far; ``force`` ignores the sync
        rule (a policy that wants a fresh answer)."""
        if self.failures >= 3 or self.busy_since is not None:
            return False
        if not force and time.monotonic() < self.next_allowed:
            return False
        if not force and not self.wants(sample):
            return False
        self.last_sync = sample.passes
        self.changes = list(changes or [])
        self.job_id += 1
        self.job_t = float(sample.t or 0.0)
        job = {"id": self.job_id, **self.params, "changes": [c.to_dict() for c in self.changes]}
        text = snapshot()
        if self.mode == "inline":
            self.busy_since = time.monotonic()
            self._finish(self._inline(job, text))
            return True
        try:
            self._ensure_worker()
            assert self.proc is not None and self.proc.stdin is not None
            job["append"] = text[self.sent :]
            self.proc.stdin.write(json.dumps(job) + "\n")
            self.proc.stdin.flush()
            self.sent = len(text)
            self.busy_since = time.monotonic()
        except (OSError, ValueError) as exc:
            self._fail(f"the prediction worker could not start: {exc}")
            return False
        return True

    def collect(self) -> list[Outcome]:
        """Finished predictions since the last call (never blocks)."""
        if self.busy_since is not None:
            try:
                line = self.replies.get_nowait()
            except queue.Empty:
                line = ""
            if line is None:
                self._fail("the prediction worker exited")
            elif line:
                try:
                    self._finish(json.loads(line))
                except (ValueError, KeyError, TypeError) as exc:
                    self._fail(f"unreadable reply from the prediction worker: {exc}")
            elif time.monotonic() - self.busy_since > self.budget:
                self._fail(f"a prediction took longer than {self.budget:g} s: abandoned")
        out, self.done = self.done, []
        return out

    def close(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        try:
            if proc.stdin is not None:
                proc.stdin.close()
            proc.wait(timeout=1.0)
        except (OSError, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()

    # -- internals -------------------------------------------------------------------------
    def _inline(self, job: dict[str, Any], text: str) -> dict[str, Any]:
        try:
            return {"id": job["id"], **run_job(job, text.splitlines())}
        except Exception as exc:  # noqa: BLE001 - a failing prediction is a warning
            return {"id": job["id"], "error": f"{type(exc).__name__}: {exc}"}

    def _finish(self, reply: dict[str, Any]) -> None:
        if self.busy_since is not None and self.min_gap > 0:
            took = time.monotonic() - self.busy_since
            self.next_allowed = time.monotonic() + max(self.min_gap, took)
        self.busy_since = None
        if reply.get("id") != self.job_id:
            return
        if reply.get("error"):
            self._note(f"prediction failed: {reply['error']}")
            self.done.append(Outcome(None, [], reply["error"], self.job_t))
            return
        current = LivePrediction.from_dict(reply["current"])
        alts = [LivePrediction.from_dict(d) for d in reply.get("alternatives", [])]
        self.done.append(
            Outcome(current, list(zip(self.changes, alts, strict=False)), None, self.job_t)
        )

    def _fail(self, why: str) -> None:
        self.failures += 1
        self.busy_since = None
        self._note(why)
        proc, self.proc = self.proc, None
        if proc is not None:
            proc.kill()
            proc.wait()
        self.sent = 0  # a new worker gets the whole recording
        self.replies = queue.Queue()

    def _note(self, text: str) -> None:
        if text not in self.warnings:
            self.warnings.append(text)

    def _ensure_worker(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            return
        self.sent = 0
        env = dict(os.environ)
        here = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "migtune.qemu.livewatch"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            start_new_session=True,  # Ctrl-C on the terminal is the driver's to handle
        )
        replies = self.replies = queue.Queue()
        out = self.proc.stdout

        def read() -> None:
            assert out is not None
            for line in out:
                replies.put(line)
            replies.put(None)

        threading.Thread(target=read, name="livewatch-reader", daemon=True).start()


def _worker() -> None:
    """The worker process: one JSON job a line on stdin (with the recording's new
    text), one JSON reply a line on stdout."""
    text: list[str] = []
    for raw in sys.stdin:
        job = None
        try:
            job = json.loads(raw)
            text.append(job.pop("append", ""))
            reply = {"id": job.get("id"), **run_job(job, "".join(text).splitlines())}
        except Exception as exc:  # noqa: BLE001 - reported to the driver, never fatal
            reply = {"id": job.get("id") if isinstance(job, dict) else None,
                     "error": f"{type(exc).__name__}: {exc}"}  # fmt: skip
        sys.stdout.write(json.dumps(reply, default=str) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    _worker()
