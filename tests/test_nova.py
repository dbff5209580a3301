"""nova-compute live-migration lines and the nova.conf downtime inference."""

from __future__ import annotations

import pytest

from conftest import FIXTURES
from migtune.errors import InputError
from migtune.model import Run
from migtune.sources import load_run, nova, parse_text
from migtune.sources._nova_infer import infer_downtime_config

NOVA = FIXTURES / "nova"


def test_real_downtime_steps(real_logs):
    run = load_run(real_logs / "nova-compute-downtime-steps-4GiB.txt")
    assert run.format == "nova"
    assert run.status in ("active", "unknown")
    changes = run.events_of("downtime-change")
    assert len(changes) == 8
    assert [e.data["downtime_limit"] for e in changes] == [
        0.714, 1.326, 1.938, 2.55, 3.162, 3.774, 4.386, 4.998
    ]  # fmt: skip
    assert [e.data["elapsed"] for e in changes] == [300.0 * i for i in range(8)]
    assert [e.t for e in changes] == [300.0 * i for i in range(8)]
    meta = run.meta["nova"]
    assert meta["downtime_final"] == 5.0
    assert meta["downtime_steps"] == 7
    assert meta["downtime_delay"] == 300.0
    assert meta["integer_arithmetic"] is True  # 4998 ms, not 5000: Python 2 era nova
    assert meta["conf"]["live_migration_downtime"] == 5000
    assert meta["downtime_delay_per_gib"] is None  # the excerpt does not show the RAM size
    assert run.settings.downtime_limit == 0.714


def test_inference_with_ram_gives_delay_per_gib():
    steps = [(300.0 * i, ms) for i, ms in enumerate([714, 1326, 1938, 2550])]
    meta = infer_downtime_config(steps, ram_gib=4297064448 / 1024**3)
    assert meta is not None
    assert (meta["downtime_final"], meta["downtime_steps"]) == (5.0, 7)
    assert meta["downtime_delay_per_gib"] == 75.0
    assert meta["conf"] == {
        "live_migration_downtime": 5000,
        "live_migration_downtime_steps": 7,
        "live_migration_downtime_delay": 75,
    }


def test_inference_nova_defaults_python3():
    # defaults: 500 ms in 10 steps, 75 s/GiB; 8 GiB guest -> 600 s between steps
    steps = [(600.0 * i, int(50 + 45 * i)) for i in range(11)]
    meta = infer_downtime_config(steps, ram_gib=8.0)
    assert meta is not None
    assert meta["downtime_final"] == 0.5 and meta["downtime_steps"] == 10
    assert meta["downtime_delay"] == 600.0 and meta["downtime_delay_per_gib"] == 75.0


def test_inference_needs_two_steps():
    meta = infer_downtime_config([(0.0, 50)])
    assert meta is not None
    assert meta["downtime_initial"] == 0.05 and meta["downtime_final"] is None
    assert infer_downtime_config([]) is None


def test_train_log_with_prefix_completed():
    run = load_run(NOVA / "nova-compute-4GiB-completed.log")
    assert run.status == "completed"
    assert run.vm == "3f1c9a52-7d0e-4b7e-9a51-2c8e4f6d1b20"
    assert run.t0 == 1767607200.101  # "Starting monitoring" stamp
    assert len(run.samples) == 11  # the other instance's line is left out
    assert any("other instance" in w for w in run.warnings)
    first = run.samples[0]
    assert first.t == 30.0
    assert first.transferred == 1675624448
    assert first.remaining == 2621440000
    assert first.total == 4297064448
    assert first.disk_total is None  # nova prints zeros when no disk is copied
    assert run.ram_bytes == 4297064448 and run.ram_duration == 330.0
    assert [e.data["downtime_limit"] for e in run.events_of("downtime-change")] == [0.05, 0.095]
    assert [e.t for e in run.events_of("downtime-change")] == [0.5, 300.5]
    (done,) = run.events_of("completed")
    assert done.t == 349.7
    meta = run.meta["nova"]
    assert meta["downtime_delay"] == 300.0
    assert meta["downtime_delay_per_gib"] == 75.0
    assert meta["downtime_steps"] == 10 and meta["downtime_final"] == 0.5
    assert run.events_of("migration-start")[0].t == 0.0


def test_old_layout_timeout_then_cancelled():
    run = load_run(NOVA / "nova-compute-queens-timeout-cancelled.log")
    assert run.status == "cancelled"
    assert [s.t for s in run.samples] == [30.0, 600.0]
    assert run.samples[1].transferred == 65011712000
    assert run.samples[1].remaining == 188743680
    (timeout,) = [e for e in run.events_of("warning") if "completion timeout" in e.message]
    assert timeout.data == {"elapsed": 1600.0}
    meta = run.meta["nova"]
    assert meta["downtime_delay"] == 150.0 and meta["downtime_delay_per_gib"] == 75.0
    assert not run.partial, run.warnings


def test_failure_and_traceback():
    run = load_run(NOVA / "nova-compute-failure-aborted.log")
    assert run.status == "failed"
    errors = run.events_of("error")
    assert errors[0].message.startswith("operation failed: Failed to connect to remote libvirt")
    assert errors[-1].message == "Migration operation has aborted"
    assert run.samples == []
    assert run.warnings == []  # traceback lines of a prefixed log are not complaints


def test_postcopy_force_complete():
    run = load_run(NOVA / "nova-compute-postcopy-force-complete.log")
    assert run.status == "completed"
    assert run.settings.capabilities == {"postcopy-ram": True}
    (pc,) = run.events_of("postcopy-start")
    assert pc.t == pytest.approx(1600.511)
    assert run.t0 == pytest.approx(1767628800.22)  # progress stamp minus 1590 s


def test_bare_lines_and_unknown():
    run = nova.parse(
        [
            "Migration running for 10 secs, memory 50% remaining (bytes processed=5, "
            "remaining=50, total=100); disk 0% remaining (bytes processed=7, remaining=0, total=7).",
            "something else entirely",
        ]
    )
    assert run.samples[0].disk_total == 7
    assert run.samples[0].t == 10.0
    assert run.partial and run.warnings == [
        "line 2: not a nova-compute migration line: something else entirely"
    ]
    with pytest.raises(InputError):
        parse_text("no nova here\n", "nova")


def test_sniff():
    assert nova.sniff(["Increasing downtime to 714 ms after 0 sec elapsed time"]) > 0.2
    assert nova.sniff(["2025-01-01 10:00:00 migration status: completed"]) == 0.0


def test_a_whole_nova_compute_log_keeps_only_the_migration_lines(tmp_path):
    # The migration's lines in a day of other nova-compute messages: the run is the same,
    # and the parse keeps only the lines it uses (bounded memory on a huge log).
    migration = (NOVA / "nova-compute-4GiB-completed.log").read_text().splitlines()
    noise = [
        f"2026-01-05 09:{i // 60 % 60:02d}:{i % 60:02d}.000 4242 INFO nova.compute.manager "
        f"[req-{i}] periodic task {i} ran"
        for i in range(20_000)
    ]
    path = tmp_path / "nova-compute.log"
    path.write_text("\n".join(noise[:10_000] + migration + noise[10_000:]) + "\n")
    alone, whole = load_run(NOVA / "nova-compute-4GiB-completed.log"), load_run(path)
    assert [(s.t, s.transferred) for s in whole.samples] == [
        (s.t, s.transferred) for s in alone.samples
    ]
    assert whole.status == alone.status and whole.meta.get("nova") == alone.meta.get("nova")
    records, _, prefixed = nova._collect(Run(format="nova"), iter(path.read_text().splitlines()))
    assert prefixed and len(records) <= len(migration)
