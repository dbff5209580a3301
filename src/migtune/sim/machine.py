"""What the simulator needs to know about the hosts besides QEMU's settings.

QEMU decides; the machine only says how long things take.  Defaults describe the lab:
two QEMUs on loopback, TCG guest, 2 shared cores (calibrated on ``tests/fixtures/lab``,
see ``docs/simulator.md``).  ``--link RATE`` sets :attr:`Machine.link_rate`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass


@dataclass
class Machine:
    # wire rate the migration stream achieves when nothing caps it (bytes/s): loopback
    # between two QEMUs on the lab's 2 shared cores (final copies, post-copy push)
    link_rate: float = 0.7e9
    # one TCP stream / one migration thread; multifd uses `channels x stream_rate`
    stream_rate: float | None = None
    # migration-thread CPU per page handled (bitmap search, zero check, copy set-up)
    page_cpu: float = 0.55e-6
    # extra CPU per page that goes through the XBZRLE cache (hit: compare and copy)
    xbzrle_cpu: float = 1.5e-6
    # per-page cost of a dirty bitmap sync (both bitmaps walked)
    sync_cpu_per_page: float = 2e-9
    setup_time: float = 0.003  # s, reported as setup-time
    device_state_bytes: int = 180_000  # non-iterable device state sent at switchover
    switchover_fixed: float = 0.003  # s: stop vCPUs, inactivate disks, return path
    wake_latency: float = 0.0004  # s the thread oversleeps a rate-limit window
    guest_cpu_rate: float = 250_000.0  # pages/s a CPU-bound dirtier writes unthrottled
    # the guest OS's own writes besides the workload (timers, its init loop forking a
    # process a second): a small hot set of its non-zero pages, rewritten all the time
    guest_background_rate: float = 900.0  # writes/s
    guest_background_pages: int = 350  # the hot set (0: all of the static pages)
    guest_background_bytes: int = 20  # bytes such a rewrite changes (what XBZRLE sees)
    multifd_sync_time: float = 0.0002  # s per multifd channel sync
    # packets per channel still unsent when the rate limiter trips: their bytes are
    # counted only once written, so the main thread runs on (lab, median windows:
    # 2 channels ~0.95 MB over a 3.4 MB budget, 4 channels ~1.7 MB over 6.7 MB, i.e.
    # 0.7 packet per channel plus half a batch; fitted on multifd-1/2 and
    # calib-random-640-cap64-multifd4)
    multifd_backlog: float = 0.7
    sample_interval: float = 0.5  # s between query-migrate samples (the lab polls at 2 Hz)
    rtt: float = 0.0001  # s, one postcopy page request round trip
    # post-copy push rate (lab: ~130 MB of remaining pages in 0.53 s)
    postcopy_rate: float | None = 0.25e9

    def stream(self, multifd_channels: int | None) -> float:
        """Bytes/s the migration can push: one stream, or multifd channels in parallel."""
        per = self.stream_rate or self.link_rate
        if multifd_channels:
            return min(self.link_rate, per * multifd_channels)
        return min(self.link_rate, per)

    def replace(self, **changes: float) -> Machine:
        return dataclasses.replace(self, **changes)
