"""A Prometheus / OpenMetrics endpoint with a running migration's figures.

``migtune migrate --metrics-port N`` and ``migtune lab run --metrics-port N`` serve
``http://ADDR:N/metrics`` for the monitoring people already run: every ``query-migrate``
poll updates the gauges and counters below, and a live prediction (when the driver
makes one) is published with :meth:`MigrationMetrics.set_prediction`.

It uses the standard ``prometheus_client`` library (its text and OpenMetrics
exposition, content negotiation and HTTP server) rather than a hand-written format:
the exposition format has escaping, type and ``_total`` rules that scrapers check.

Names follow Prometheus conventions: a ``migtune_migration_`` prefix, base units in the
name (``_bytes``, ``_seconds``, ``_bytes_per_second``, ``_ratio`` for 0..1 shares) and
``_total`` for counters.  A figure QEMU has not reported yet is NaN, never 0.
"""

from __future__ import annotations

import contextlib
import math
import threading
from collections.abc import Callable
from typing import Any

from migtune.errors import InputError
from migtune.model import Sample, Settings

try:
    from prometheus_client import CollectorRegistry, Counter, Enum, Gauge, start_http_server
except ImportError:  # pragma: no cover - declared as a dependency
    CollectorRegistry = None  # type: ignore[assignment,misc]

# QEMU's MigrationStatus values, plus "none" before the first poll.
STATES = (
    "none", "setup", "active", "device", "pre-switchover", "wait-unplug", "postcopy-active",
    "postcopy-paused", "postcopy-recover-setup", "postcopy-recover", "colo", "completed",
    "failed", "cancelling", "cancelled",
)  # fmt: skip
PREFIX = "migtune_migration_"


class MigrationMetrics:
    """The figures of one migration, in their own registry (two never mix).

    Feed it with :meth:`observe` (or wrap a progress display with
    :meth:`progress_sink`); :meth:`serve` starts the HTTP endpoint.
    """

    def __init__(self) -> None:
        if CollectorRegistry is None:  # pragma: no cover
            raise InputError("--metrics-port needs the prometheus_client package")
        self.registry = CollectorRegistry()
        reg = self.registry

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            g = Gauge(PREFIX + name, doc, labels, registry=reg)
            if not labels:
                g.set(math.nan)
            return g

        def counter(name: str, doc: str) -> Counter:
            return Counter(PREFIX + name, doc, registry=reg)

        self.transferred = counter(
            "transferred_bytes", "RAM bytes put on the wire (ram.transferred)"
        )
        self.remaining = gauge("remaining_bytes", "dirty RAM still to send (ram.remaining)")
        self.ram_total = gauge("ram_total_bytes", "guest RAM being migrated (ram.total)")
        self.throughput = gauge(
            "throughput_bytes_per_second", "real network rate of the migration stream (mbps)"
        )
        self.dirty_rate = gauge(
            "dirty_rate_bytes_per_second", "rate at which the guest dirties RAM (dirty-pages-rate)"
        )
        self.passes = counter("passes", "dirty-bitmap syncs: passes over RAM (dirty-sync-count)")
        self.elapsed = gauge("elapsed_seconds", "time since QEMU started the migration")
        self.downtime_limit = gauge("downtime_limit_seconds", "downtime limit in force")
        self.max_bandwidth = gauge(
            "max_bandwidth_bytes_per_second", "bandwidth cap in force (0: unlimited)"
        )
        self.expected_downtime = gauge(
            "expected_downtime_seconds", "QEMU's estimate of the final pause (expected-downtime)"
        )
        self.throttle = gauge(
            "cpu_throttle_ratio", "auto-converge vCPU throttle, 0..1 (cpu-throttle-percentage/100)"
        )
        self.xbzrle_miss = gauge(
            "xbzrle_cache_miss_ratio", "XBZRLE cache misses over QEMU's last period, 0..1"
        )
        self.xbzrle_overflow = counter(
            "xbzrle_overflow_pages", "pages whose XBZRLE delta did not fit a page"
        )
        self.status = Enum(
            PREFIX + "status", "QEMU's migration status", states=list(STATES), registry=reg
        )
        self.predicted_eta = gauge(
            "predicted_remaining_seconds",
            "migtune's prediction of the time left (NaN: will not converge or no prediction)",
            ("bound",),
        )
        self.predicted_converges = gauge(
            "predicted_converges", "1: migtune predicts convergence, 0: it predicts none"
        )
        self.predicted_downtime = gauge(
            "predicted_downtime_seconds", "migtune's prediction of the final pause"
        )
        for bound in ("low", "median", "high"):
            self.predicted_eta.labels(bound).set(math.nan)
        self._lock = threading.Lock()
        self._last: dict[str, float] = {}
        self._actions_seen = 0
        self.server: Any = None

    # -- the endpoint ------------------------------------------------------------------
    def serve(self, port: int, addr: str = "127.0.0.1") -> MigrationMetrics:
        """Start serving ``/metrics`` on ``addr:port`` (a daemon thread); a port that is
        taken or an address that is not this host's is an ``InputError``."""
        if not 0 < port < 65536:
            raise InputError(f"--metrics-port: {port} is not a TCP port (1-65535)")
        try:
            self.server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            why = exc.strerror or str(exc)
            raise InputError(f"--metrics-port: cannot listen on {addr}:{port}: {why}") from None
        return self

    def close(self) -> None:
        if self.server is not None:
            with contextlib.suppress(Exception):
                self.server.shutdown()
                self.server.server_close()
            self.server = None

    # -- what the driver feeds ---------------------------------------------------------
    def set_settings(self, settings: Settings) -> None:
        """The settings in force (at the start, and after each change a policy makes)."""
        if settings.downtime_limit is not None:
            self.downtime_limit.set(settings.downtime_limit)
        if settings.max_bandwidth is not None:
            self.max_bandwidth.set(settings.max_bandwidth)

    def set_parameters(self, params: dict[str, Any]) -> None:
        """A ``migrate-set-parameters`` issued during the migration (QMP names and units)."""
        if isinstance(params.get("downtime-limit"), (int, float)):
            self.downtime_limit.set(params["downtime-limit"] / 1000.0)  # QMP: milliseconds
        if isinstance(params.get("max-bandwidth"), (int, float)):
            self.max_bandwidth.set(params["max-bandwidth"])

    def observe(self, sample: Sample) -> None:
        """One ``query-migrate`` poll."""
        with self._lock:
            if sample.status in STATES:
                self.status.state(sample.status)
            self._count(self.transferred, "transferred", sample.transferred)
            self._count(self.passes, "passes", sample.passes)
            for gauge, value in (
                (self.remaining, sample.remaining),
                (self.ram_total, sample.total),
                (self.throughput, sample.throughput),
                (self.dirty_rate, sample.dirty_rate),
                (self.elapsed, sample.total_time),
                (self.expected_downtime, sample.expected_downtime),
            ):
                if value is not None:
                    gauge.set(value)
            if sample.throttle_pct is not None:
                self.throttle.set(sample.throttle_pct / 100.0)
            elif sample.status == "active":
                self.throttle.set(0.0)  # QEMU omits the field while it does not throttle
            xb = sample.xbzrle
            if xb is not None:
                if xb.cache_miss_rate is not None:
                    self.xbzrle_miss.set(xb.cache_miss_rate)
                self._count(self.xbzrle_overflow, "overflow", xb.overflow)

    def _count(self, counter: Counter, key: str, value: int | None) -> None:
        # QEMU's figures are cumulative; a counter only goes up, by the difference
        if value is None:
            return
        last = self._last.get(key, 0.0)
        if value > last:
            counter.inc(value - last)
            self._last[key] = float(value)

    def set_prediction(
        self,
        eta_s: float | None,
        converges: bool | None,
        *,
        eta_low_s: float | None = None,
        eta_high_s: float | None = None,
        downtime_s: float | None = None,
    ) -> None:
        """Publish a live prediction: time left (with its range), converges or not, and the
        expected pause.  ``None`` is "not known" (NaN); a migration predicted not to
        converge has no time left (NaN) and ``predicted_converges`` 0."""

        def v(x: float | None) -> float:
            return math.nan if x is None or (converges is False) else float(x)

        self.predicted_eta.labels("median").set(v(eta_s))
        self.predicted_eta.labels("low").set(v(eta_low_s if eta_low_s is not None else eta_s))
        self.predicted_eta.labels("high").set(v(eta_high_s if eta_high_s is not None else eta_s))
        self.predicted_converges.set(math.nan if converges is None else float(bool(converges)))
        self.predicted_downtime.set(math.nan if downtime_s is None else float(downtime_s))

    def finish(self, status: str) -> None:
        """The migration ended (completed, cancelled, failed)."""
        with self._lock:
            if status in STATES:
                self.status.state(status)
            if status == "completed":
                self.remaining.set(0.0)

    def progress_sink(
        self,
        display: Callable[[Sample, dict[str, Any]], None] | None,
        settings: Settings,
        actions: list[Any],
    ) -> Callable[[Sample, dict[str, Any]], None]:
        """A progress function that updates the metrics, then calls ``display``.

        ``actions`` is the driver's list of policy actions: new ``set-parameters``
        entries move the downtime limit and bandwidth cap in force.  A metrics problem
        never reaches the migration (the endpoint then shows the last good figures)."""
        self.set_settings(settings)

        def sink(sample: Sample, extra: dict[str, Any]) -> None:
            with contextlib.suppress(Exception):
                for action in actions[self._actions_seen :]:
                    params = getattr(action, "params", None)
                    if isinstance(params, dict):
                        self.set_parameters(params)
                self._actions_seen = len(actions)
                self.observe(sample)
            if display is not None:
                display(sample, extra)

        return sink
