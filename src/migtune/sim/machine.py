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
    # wire rate the migration stream achieves when nothing caps it (bytes/s)
    link_rate: float = 1.2e9
    # one TCP stream / one migration thread; multifd uses `channels x stream_rate`
    stream_rate: float | None = None
    # migration-thread CPU per page handled (bitmap search, zero check, copy set-up)
    page_cpu: float = 0.55e-6
    # extra CPU per page that goes through the XBZRLE cache (hit: compare and copy)
    xbzrle_cpu: float = 1.5e-6
    # per-page cost of a dirty bitmap sync (both bitmaps walked)
    sync_cpu_per_page: float = 2e-9
    setup_time: float = 0.012  # s, reported as setup-time
    device_state_bytes: int = 180_000  # non-iterable device state sent at switchover
    switchover_fixed: float = 0.004  # s: stop vCPUs, inactivate disks, return path
    wake_latency: float = 0.0004  # s the thread oversleeps a rate-limit window
    guest_cpu_rate: float = 250_000.0  # pages/s a CPU-bound dirtier writes unthrottled
    guest_background_rate: float = 0.0  # pages/s the guest OS rewrites of its own pages
    multifd_sync_time: float = 0.0002  # s per multifd channel sync
    sample_interval: float = 0.5  # s between query-migrate samples (the lab polls at 2 Hz)
    rtt: float = 0.0001  # s, one postcopy page request round trip

    def stream(self, multifd_channels: int | None) -> float:
        """Bytes/s the migration can push: one stream, or multifd channels in parallel."""
        per = self.stream_rate or self.link_rate
        if multifd_channels:
            return min(self.link_rate, per * multifd_channels)
        return min(self.link_rate, per)

    def replace(self, **changes: float) -> Machine:
        return dataclasses.replace(self, **changes)
