"""The migration thread's main loop over an :class:`~migtune.sim.engine.Engine` (§14.6-§14.8)."""

from __future__ import annotations

import math

from migtune.sim import rules
from migtune.sim.engine import Engine
from migtune.sim.report import query_migrate
from migtune.sim.runs import contains, distinct
from migtune.sim.settle import Settler

MAX_FETCH = 1 << 21
# at most this many ram_save_iterate calls are simulated as one (see fusable_calls)
FUSE_MAX = 200


def _want(e: Engine, boost: int) -> int:
    """How many dirty pages to price next: what the last call sent (+25 %), or enough
    full pages to end the call; doubled while fetches get used up."""
    if e.budget:
        left = max(0, e.budget - e.window_bytes())
        want = left // rules.normal_page_cost() + 2
    else:
        per_page = rules.normal_page_cost() / e.link + e.machine.page_cpu
        want = int(rules.MAX_WAIT_MS / 1000 / per_page) + 64
    if e.last_call_pages:
        want = max(want, int(e.last_call_pages * 1.25) + 64) if boost == 1 else want
    return int(min(want * boost, MAX_FETCH, max(1, e.dirty)))


def cutoff(
    e: Engine, plan, loop_i: int, t_iter: float, done_full: int = 0, calls: int = 1
) -> tuple[int, bool]:
    """Pages of ``plan`` sent before the call stops, and whether it stopped.

    The rate limit is checked before each page (strict, §1.4), so the page that crosses
    the budget is still sent - and from 8.1 the limiter only sees bytes once QEMUFile
    flushes them; the clock is read after pages 0, 64, 128 … (§1.5).
    """
    n = plan.n
    stop, fired = n, False
    if e.budget:
        limit = e.budget - e.window_bytes()
        if e.multifd:
            limit += rules.multifd_limiter_lag(e.channels or 1, e.machine.multifd_backlog)
        k = plan.first_over_bytes(limit)
        if k is not None and rules.limiter_counts_flushed_bytes(e.version) and not e.multifd:
            k = plan.flush_at_or_after(k, done_full, rules.FLUSH_FULL_PAGES)
        if k is not None:
            stop, fired = k, True
    k = plan.first_over_time(calls * rules.MAX_WAIT_MS / 1000 - (e.t - t_iter))
    if k is not None:
        every = rules.MAX_WAIT_CHECK_EVERY
        j = k - 1  # page index after which the clock is first late
        j += (-(loop_i + j)) % every  # … and the next page after which it is read
        if j + 1 < stop or (j + 1 == stop and not fired):
            stop, fired = j + 1, True
    return stop, fired


def fusable_calls(e: Engine, next_event: float) -> int:
    """How many ``ram_save_iterate`` calls can be simulated as one (speed only).

    Between two calls the loop checks the sync, completion, timer, sample and setting
    changes (§1.2, §1.3).  When the link limits (each call runs its MAX_WAIT and the
    rate limiter is far away) and pages are priced in closed form, none of those checks
    can fire before ``next_event`` (the next sample, timer tick, setting change or time
    limit) except the sync, and :func:`iterate` ends the fused calls with the one in
    which the dirty set falls under the threshold: they send the same pages as one call
    of their total length."""
    if e.prices_per_page() or e.multifd or e.postcopy_active or e.stopped:
        return 1
    per_call = e.last_call_pages
    if not e.last_call_timed_out or per_call <= 0:
        return 1
    window = rules.BUFFER_DELAY_MS / 1000
    if e.budget and e.budget < 4 * e.link * window:
        return 1
    dt = rules.MAX_WAIT_MS / 1000
    k_time = int((next_event - e.t) / dt) - 1
    return max(1, min(FUSE_MAX, k_time))


def iterate(e: Engine, calls: int = 1) -> None:
    """One ``ram_save_iterate`` call (§1.5), or up to ``calls`` back-to-back ones that
    nothing can happen between (:func:`fusable_calls`): they end with the call in which
    the dirty set falls under the threshold, after which the loop syncs."""
    t_iter = e.t
    dt = rules.MAX_WAIT_MS / 1000
    # from this many pages on, the pending bytes are under the threshold
    crossing = math.floor(e.dirty - e.threshold / e.P) + 1
    e.add_bytes(rules.SECTION_FRAMING // 2, ram=False)
    loop_i = done_full = 0
    boost = 1
    stopped = False
    while not e.rate_exceeded() and e.dirty > 0:
        # closed-form pricing needs no page arrays: offer every dirty page at once
        a, b, ran_off = e.ds.take(_want(e, boost) if e.prices_per_page() else e.dirty)
        boost *= 2
        stopped = False
        for plan in e.plans(a, b):
            if calls > 1 and loop_i + plan.n >= crossing:
                t_cross = e.t - t_iter + plan.time_upto(max(1, crossing - loop_i))
                calls = max(1, min(calls, math.ceil(t_cross / dt - 1e-9)))
            n, stopped = cutoff(e, plan, loop_i, t_iter, done_full, calls)
            done_full += plan.fulls(n)
            e.commit(plan, n)
            loop_i += n
            if stopped:
                break
        if stopped:
            break
        if ran_off:
            e.on_wrap()
        elif a == b:
            break
    if calls > 1:  # the calls actually made, each with its framing
        calls = max(1, min(calls, math.ceil((e.t - t_iter) / dt - 1e-9)))
        e.add_bytes((calls - 1) * (rules.SECTION_FRAMING // 2), ram=False)
    e.last_call_pages = loop_i // calls
    e.last_call_timed_out = stopped
    e.add_bytes(calls * rules.EOS_BYTES, ram=True)
    e.add_bytes(calls * (rules.SECTION_FRAMING // 2), ram=False)
    if e.multifd and e.version < (8, 1):
        e.t += e.machine.multifd_sync_time * (e.channels or 1)
    e.guest_to(e.t)


def send_everything(e: Engine) -> None:
    """Send every dirty page with no rate limit (stop-and-copy, postcopy push)."""
    while e.dirty > 0:
        a, b, ran_off = e.ds.take(min(MAX_FETCH, e.dirty))
        for plan in e.plans(a, b):
            e.commit(plan, plan.n)
        if ran_off:
            e.on_wrap()


def complete(e: Engine) -> None:
    """§1.7 / §14.7: stop the guest, final sync, send the rest and the device state."""
    downtime_start = e.t
    e.guest_to(e.t)
    e.stopped = True
    e.status = "device"
    e.last_stage = True
    e.sync()
    e.add_bytes(rules.SECTION_FRAMING // 2, ram=False)
    send_everything(e)
    e.add_bytes(rules.EOS_BYTES, ram=True)
    e.add_bytes(rules.SECTION_FRAMING // 2 + e.machine.device_state_bytes, ram=False)
    e.t += e.machine.device_state_bytes / e.link + e.machine.switchover_fixed
    finish(e, downtime_start)


def finish(e: Engine, downtime_start: float | None) -> None:
    if downtime_start is not None and e.downtime_ms is None:
        e.downtime_ms = int(round((e.t - downtime_start) * 1000))
    e.total_time_ms = int(round((e.t - e.start) * 1000))
    e.completed_mbps = rules.completed_mbps(
        e.c.all_bytes, e.total_time_ms, int(round(e.machine.setup_time * 1000))
    )
    e.status = "completed"
    e.throttle = 0


def postcopy(e: Engine, max_postcopy_bandwidth: float) -> None:
    """§6 / §14.8: switch to post-copy, then push the rest while serving faults."""
    downtime_start = e.t
    e.guest_to(e.t)
    e.stopped = True
    e.sync()
    # discard bitmap: roughly 16 bytes per run of dirty pages
    runs = e.ds.run_count()
    e.add_bytes(16 * runs + e.machine.device_state_bytes, ram=False)
    e.t += (16 * runs + e.machine.device_state_bytes) / e.link + e.machine.switchover_fixed
    e.downtime_ms = int(round((e.t - downtime_start) * 1000))
    e.events.append((e.t, "postcopy-start", "switched to post-copy", {}))
    e.postcopy_active = True
    e.stopped = False
    # the destination places each page with UFFDIO_COPY while its guest runs: slower
    # than a pre-copy receive on the lab host
    e.link = min(e.link, e.machine.postcopy_rate or e.link)
    e.status = "postcopy-active"
    e.throttle = 0
    budget = rules.window_budget(max_postcopy_bandwidth)
    while e.dirty > 0:
        t0 = e.t
        # faults: pages the guest touches on the destination that are still on the source
        touched = e.dirtier.writes(e.guest_t, e.t + 0.1, 0)
        e.guest_t = e.t + 0.1
        if len(touched):
            touched = distinct(touched)
            touched = touched[contains(e.ds.unsent(), touched)]
        if len(touched):
            # served ahead of the background push; the round trip stalls the faulting
            # vCPU (postcopy blocktime), not the migration thread
            e.c.postcopy_requests += len(touched)
            e.blocktime += len(touched) * e.machine.rtt
            plan = e.plan(touched)
            e.commit(plan, plan.n)
        e.win_bytes0 = e.c.all_bytes
        while e.dirty > 0 and not rules.rate_exceeded(e.window_bytes(), budget) and e.t < t0 + 0.1:
            a, b, ran_off = e.ds.take(min(MAX_FETCH, e.dirty, 8192))
            for plan in e.plans(a, b):
                e.commit(plan, plan.n)
            if ran_off:
                e.on_wrap()
        e.t = max(e.t, t0 + 0.1) if budget else e.t
        e.discard_log()  # the source no longer tracks a running guest
    e.add_bytes(rules.EOS_BYTES, ram=True)
    finish(e, None)


def main_loop(e: Engine, time_limit: float, sample, postcopy_trigger=None, steer=None) -> None:
    """§1.2/§1.3/§14.6.  ``sample(e)`` is called whenever a poll is due; ``steer``, a
    :class:`~migtune.sim.steer.Steering`, lets a platform's policy act at its polls."""
    m = e.machine
    e.status = "setup"
    sample(e)
    e.t += m.setup_time
    e.guest_t = e.t  # the guest's writes before this are covered by the all-ones bitmap
    e.sync()
    setup_bytes = 8 + (1 + 6 + 8) + rules.EOS_BYTES
    e.add_bytes(setup_bytes, ram=True)
    e.status = "active"
    next_tick = rules.FORCED_SYNC_PERIOD_MS / 1000
    e.synced_since_tick = False
    settler = Settler() if e.stop_when_settled else None
    while True:
        sample(e)
        e.apply_schedule()
        if steer is not None:
            steer.poll(e)
        if settler is not None and settler.check(e, postcopy_trigger is not None):
            settler = _settle(e, settler, time_limit, sample, steer)
        give_up = e.stop_after_passes is not None and e.sync_count > e.stop_after_passes
        if steer is not None and steer.abort:
            give_up = True
        if e.t - e.start >= time_limit or give_up:
            e.status = "cancelled"
            e.throttle = 0
            e.total_time_ms = int(round((e.t - e.start) * 1000))
            break
        if e.t >= next_tick:  # §5.4 timer (its own thread: runs between our steps)
            if rules.forced_sync_due(e.version, e.auto_converge, e.sync_count, e.synced_since_tick):
                e.sync()
            e.synced_since_tick = False
            next_tick += rules.FORCED_SYNC_PERIOD_MS / 1000
        pending = e.dirty * e.P
        if rules.sync_due(pending, e.threshold):
            e.sync()
            pending = e.dirty * e.P
        if (postcopy_trigger is not None and postcopy_trigger(e)) or (steer and steer.postcopy):
            postcopy(e, e.s.max_postcopy_bandwidth or 0)
            break
        if rules.completion_ready(pending, e.threshold, e.version):
            complete(e)
            break
        calls = 1
        if postcopy_trigger is None and not e.dirty_limit_active:
            nxt = min(next_tick, e.start + time_limit, getattr(sample, "next_due", lambda: 1e18)())
            if e.schedule:
                nxt = min(nxt, e.start + e.schedule[0][0])
            calls = fusable_calls(e, nxt)
        iterate(e, calls)
        e.close_window_if_due()
        if e.rate_exceeded():
            end = e.win_start + rules.BUFFER_DELAY_MS / 1000 + m.wake_latency
            e.t = max(e.t, end)
            e.guest_to(e.t)
            e.close_window_if_due()
    sample(e)


def _settle(e: Engine, settler: Settler, time_limit: float, sample, steer) -> Settler | None:
    """Extrapolate a settled run up to the limit, or only as far as the policy is sure
    to stay quiet; then simulate on from there (a fresh :class:`Settler`)."""
    until = time_limit if steer is None else min(time_limit, steer.quiet_until(e))
    if until <= e.t - e.start + 1.0:
        return settler
    first = e.settled_from
    settler.extrapolate(e, until, sample)
    if first is not None:
        e.settled_from = first
    if until >= time_limit:
        return None
    # a new rate period and window from here, as if the skipped rounds had been run
    e.time_last_sync_ms = e.now_ms()
    e.period_new = 0
    e.bytes_xfer_prev = e.period_counter()
    e.win_start, e.win_bytes0, e.win_pages0 = e.t, e.c.all_bytes, e.pages_total()
    return Settler()


def make_sampler(interval: float, records: list):
    """A ``sample`` callback that stores a query-migrate reply every ``interval`` s."""
    state = {"next": 0.0}

    def sample(e: Engine) -> None:
        final = e.status in ("completed", "cancelled")
        if e.status == "setup" and not records:
            records.append((e.t, query_migrate(e)))
            return
        while state["next"] <= e.t and not final:
            records.append((state["next"], query_migrate(e)))
            state["next"] += interval
        if final:
            records.append((e.t, query_migrate(e)))

    sample.next_due = lambda: state["next"]
    return sample
