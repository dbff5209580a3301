"""QEMU's pre-copy decisions, one function per rule.

Each docstring names the section of ``docs/qemu-migration.md`` (in this repository) it
implements.  Times handed to these functions are in milliseconds where QEMU works in
integer milliseconds (windows, rate periods), otherwise seconds; sizes in bytes.
"""

from __future__ import annotations

from migtune.errors import InputError

PAGE = 4096
BUFFER_DELAY_MS = 100  # §1.4: one rate-limit window
XFER_LIMIT_RATIO = 1000 // BUFFER_DELAY_MS
MAX_WAIT_MS = 50  # §1.5: one ram_save_iterate call, clock checked every 64 pages
MAX_WAIT_CHECK_EVERY = 64
RATE_PERIOD_MS = 1000  # §1.6: dirty-rate / auto-converge period
EXPECTED_DOWNTIME_MIN_BYTES = 10000  # §1.4
FORCED_SYNC_PERIOD_MS = 5000  # §5.4, QEMU 9.2+
PAGE_HEADER = 8  # §3: be64 offset|flags
SECTION_FRAMING = 5 + 5  # §1.5: section header + footer (not RAM-accounted)
EOS_BYTES = 8
MULTIFD_PACKET_PAGES = 128  # §7: 512 KiB / 4 KiB
MULTIFD_PACKET_HEADER = 1344  # §7: 320 + 128 x 8


# -- versions ---------------------------------------------------------------------
def parse_version(text: str) -> tuple[int, int]:
    """``"10.0.2"`` -> (10, 0).  QEMU behaviour changes only at minor releases (§12)."""
    try:
        parts = [int(p) for p in str(text).strip().split(".")[:2]]
    except ValueError:
        raise InputError(f"bad QEMU version {text!r} (expected e.g. 7.2 or 10.0)") from None
    if len(parts) == 1:
        parts.append(0)
    if not (2, 0) <= tuple(parts) < (100, 0):
        raise InputError(f"bad QEMU version {text!r}")
    return parts[0], parts[1]


def transferred_counts_all_bytes(version: tuple[int, int]) -> bool:
    """§2.2/§12: from 8.2 ``ram.transferred`` (and the auto-converge counter) count every
    byte on every channel; before, only RAM-accounted bytes."""
    return version >= (8, 2)


def has_forced_sync(version: tuple[int, int]) -> bool:
    """§5.4: the 5 s periodic bitmap sync under auto-converge exists from 9.2."""
    return version >= (9, 2)


# -- §1.4 rate limit and bandwidth estimate -------------------------------------------
def window_budget(max_bandwidth: float) -> int:
    """§1.4: bytes allowed per 100 ms window, ``max_bandwidth / 10``; 0 means unlimited."""
    return int(max_bandwidth) // XFER_LIMIT_RATIO


def rate_exceeded(window_bytes: int, budget: int) -> bool:
    """§1.4: strictly more than the budget sent since the window opened (0 = no limit)."""
    return budget > 0 and window_bytes > budget


FLUSH_FULL_PAGES = 32  # QEMUFile: 64 iovecs, two per full page (header bytes + the page)


def limiter_counts_flushed_bytes(version: tuple[int, int]) -> bool:
    """§1.4: from 8.1 the limiter reads ``migration_transferred_bytes()``, whose main-channel
    part grows when QEMUFile flushes (every 64 iovecs: 32 full pages), so a window runs
    past the budget until the next flush - on average ≈16 pages.  7.2 counted bytes as
    they were queued.  (Measured in the lab: 273 Mbit/s windows under a 256 Mbit/s cap.)"""
    return version >= (8, 1)


def multifd_limiter_lag(channels: int, backlog: float, page_size: int = PAGE) -> float:
    """§1.4/§7: multifd bytes reach the limiter's counter when a sender thread has written
    its packet; until then the main thread keeps queueing.  Lag = the packets the
    channels still hold (``backlog`` x channels) + half the batch being filled."""
    packet = MULTIFD_PACKET_HEADER + MULTIFD_PACKET_PAGES * page_size
    return (backlog * channels + 0.5) * packet


def window_bandwidth(transferred: int, time_spent_ms: int) -> float:
    """§1.4: bytes per millisecond over the last closed window only (no smoothing)."""
    return transferred / time_spent_ms


def switchover_bandwidth(
    bandwidth_per_ms: float, avail_switchover_bandwidth: float, version: tuple[int, int]
) -> float:
    """§1.4: 8.2+ uses ``avail-switchover-bandwidth / 1000`` (integer) when it is set."""
    if version >= (8, 2) and avail_switchover_bandwidth:
        return float(int(avail_switchover_bandwidth) // 1000)
    return bandwidth_per_ms


def switchover_threshold(expected_bw_per_ms: float, downtime_limit_ms: int) -> int:
    """§1.4: ``threshold_size = expected_bw_per_ms x downtime_limit`` truncated to bytes.

    128 MiB/s and 300 ms: 134217.728 B/ms x 300 = 40 265 318 bytes (≈ 9830 pages).
    """
    return int(expected_bw_per_ms * downtime_limit_ms)


def window_mbps(transferred: int, time_spent_ms: int) -> float:
    """§1.4: decimal megabits per second over the window."""
    return transferred * 8 / (time_spent_ms / 1000) / 1e6


def expected_downtime_ms(
    dirty_bytes_last_sync: int, expected_bw_per_ms: float, dirty_pages_rate: int, window_bytes: int
) -> int | None:
    """§1.4: remaining-at-last-sync over the switchover bandwidth; only updated when a
    dirty rate is known and the window moved more than 10 000 bytes (else None)."""
    if (
        not dirty_pages_rate
        or window_bytes <= EXPECTED_DOWNTIME_MIN_BYTES
        or expected_bw_per_ms <= 0
    ):
        return None
    return int(dirty_bytes_last_sync / expected_bw_per_ms)


# -- §1.3 sync trigger and completion -----------------------------------------------------
def sync_due(pending: int, threshold: int) -> bool:
    """§1.3: the exact pending query (a bitmap sync) runs only when the estimate is
    already under the threshold (strict, all versions, precopy)."""
    return pending < threshold


def completion_ready(
    pending: int, threshold: int, version: tuple[int, int], can_switchover: bool = True
) -> bool:
    """§1.3 completion predicate: ≤10.0 ``pending == 0 or pending < threshold``;
    10.1+ ``pending <= threshold``; both require ``can_switchover`` (8.1+)."""
    if not can_switchover:
        return False
    if version >= (10, 1):
        return pending <= threshold
    return pending == 0 or pending < threshold


# -- §1.6 rate period ----------------------------------------------------------------
def rate_period_elapsed(now_ms: int, time_last_sync_ms: int) -> bool:
    """§1.6: a sync closes a rate period only if more than 1000 ms passed since the last one
    that did (closer syncs accumulate into one period)."""
    return now_ms > time_last_sync_ms + RATE_PERIOD_MS


def dirty_pages_rate(new_dirty_in_period: int, now_ms: int, time_last_sync_ms: int) -> int:
    """§1.6: newly dirtied pages of the period x 1000 / its length (integer pages/s)."""
    return new_dirty_in_period * 1000 // (now_ms - time_last_sync_ms)


# -- §5 auto-converge ---------------------------------------------------------------
def throttle_condition(
    bytes_dirty_period: int, bytes_xfer_period: int, trigger_threshold_pct: int
) -> tuple[bool, int]:
    """§5.2: the period counts as "dirtying too fast" when newly dirtied bytes exceed
    ``threshold_pct`` % of the bytes transferred in the period.  Returns (hit, thresh)."""
    thresh = bytes_xfer_period * trigger_threshold_pct // 100
    return bytes_dirty_period > thresh, thresh


def throttle_step(
    current: int,
    bytes_dirty_period: int,
    bytes_dirty_thresh: int,
    initial: int = 20,
    increment: int = 10,
    maximum: int = 99,
    tailslow: bool = False,
) -> int:
    """§5.3 ``mig_throttle_guest_down``: initial, then +increment up to max (20, 30, … 90,
    99 by default); with tailslow the step shrinks to what the ideal CPU share needs."""
    if current == 0:
        new = initial
    elif not tailslow:
        new = min(current + increment, maximum)
    else:
        cpu_now = 100 - current
        cpu_ideal = int(cpu_now * (bytes_dirty_thresh / bytes_dirty_period))
        new = min(current + min(cpu_now - cpu_ideal, increment), maximum)
    return max(1, min(99, new))


def throttle_cpu_share(throttle_pct: float) -> float:
    """§5.3: a throttled vCPU runs ≈10 ms then sleeps p/(1-p) x 10 ms: it keeps 1 - p."""
    return 1.0 - throttle_pct / 100.0


def forced_sync_due(
    version: tuple[int, int], auto_converge: bool, sync_count: int, synced_since_tick: bool
) -> bool:
    """§5.4 (9.2+): at each 5 s tick under auto-converge, sync if the first pass is over
    (sync count > 1) and no sync happened since the previous tick."""
    return has_forced_sync(version) and auto_converge and sync_count > 1 and not synced_since_tick


# -- §3 wire cost ---------------------------------------------------------------------
def normal_page_cost(page_size: int = PAGE, header: int = PAGE_HEADER) -> int:
    """§3: header + the page."""
    return header + page_size


def zero_page_cost(header: int = PAGE_HEADER) -> int:
    """§3: header + one fill byte (9 bytes)."""
    return header + 1


def xbzrle_page_cost(encoded_len: int, header: int = PAGE_HEADER) -> int:
    """§3/§4.1: header + flag byte + be16 length + encoding; 0 when unchanged (nothing sent)."""
    return 0 if encoded_len == 0 else header + 3 + encoded_len


def multifd_page_cost(
    zero: bool, page_size: int = PAGE, version: tuple[int, int] = (10, 0)
) -> float:
    """§7: pages travel in 128-page packets with a 1344-byte header; 9.0+ multifd threads
    send zero pages as a header slot only (older versions send them on the main channel)."""
    share = MULTIFD_PACKET_HEADER / MULTIFD_PACKET_PAGES
    if zero:
        return share if version >= (9, 0) else zero_page_cost()
    return page_size + share


def completed_mbps(total_bytes: int, total_time_ms: int, setup_time_ms: int) -> float:
    """§1.7: whole-migration average excluding setup (Mbit/s)."""
    span = max(1, total_time_ms - setup_time_ms)
    return total_bytes * 8 / span / 1000
