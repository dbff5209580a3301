"""explain(): per-line notes with the numbers worked out, the timeline, the JSON shape."""

from __future__ import annotations

import io
import json

from migtune.analysis.explain import explain
from migtune.model import Event, Run, Sample, SourceRef
from migtune.outputs.jsonout import dumps, explanation_dict
from migtune.outputs.text import render_explanation
from migtune.sources import parse_text

# A busy 32 GiB VM over SSH (the example of issue 2), written from the PVE 8 templates.
BUSY_PVE = """\
2026-03-02 10:00:00 starting migration of VM 4242 to node 'pve-b' (10.20.0.12)
2026-03-02 10:00:00 starting VM 4242 on remote node 'pve-b'
2026-03-02 10:00:14 start remote tunnel
2026-03-02 10:00:15 ssh tunnel ver 1
2026-03-02 10:00:15 starting online/live migration on unix:/run/qemu-server/4242.migrate
2026-03-02 10:00:15 set migration capabilities
2026-03-02 10:00:15 migration downtime limit: 100 ms
2026-03-02 10:00:15 migration cachesize: 4.0 GiB
2026-03-02 10:00:15 set migration parameters
2026-03-02 10:00:15 start migrate command to unix:/run/qemu-server/4242.migrate
2026-03-02 10:16:15 migration active, transferred 34.0 GiB of 32.0 GiB VM-state, 39.9 MiB/s
2026-03-02 10:26:15 migration active, transferred 54.9 GiB of 32.0 GiB VM-state, 32.6 MiB/s, VM dirties lots of memory: 46.4 MiB/s
2026-03-02 10:26:15 xbzrle: send updates to 345000 pages in 800.0 MiB encoded memory, cache-miss 99.59%, overflow 1100
2026-03-02 10:26:15 auto-increased downtime to continue migration: 200 ms
2026-03-02 10:27:15 migration active, transferred 57.2 GiB of 32.0 GiB VM-state, 35.0 MiB/s, VM dirties lots of memory: 46.4 MiB/s
2026-03-02 10:27:15 xbzrle: send updates to 354000 pages in 820.0 MiB encoded memory, cache-miss 99.59%, overflow 1300
"""

OLD_PVE = """\
Nov 24 12:26:41 starting migration of VM 123 to node 'proxmox1' (10.0.1.1)
Nov 24 12:26:41 starting VM 123 on remote node 'proxmox1'
Nov 24 12:26:43 starting ssh migration tunnel
Nov 24 12:26:43 starting online/live migration on localhost:60000
Nov 24 12:26:45 migration status: active (transferred 133567908, remaining 930062336), total 1082789888)
Nov 24 12:26:47 migration status: active (transferred 273781779, remaining 788221952), total 1082789888)
Nov 24 12:26:58 migration status: active (transferred 1036346176, remaining 20889600), total 1082789888)
Nov 24 12:26:59 migration status: active (transferred 1060346176, remaining 120889600), total 1082789888)
Nov 24 12:27:00 migration speed: 56.89 MB/s - downtime 54 ms
Nov 24 12:27:00 migration status: completed
Nov 24 12:27:03 migration finished successfully (duration 00:00:22)
TASK OK
"""


def notes_of(x, needle):
    """Notes of the first line containing ``needle``."""
    line = next(ln for ln in x.lines if needle in ln.text)
    return " | ".join(line.notes)


def test_busy_proxmox_lines_are_explained_with_numbers():
    x = explain(parse_text(BUSY_PVE, "proxmox"))
    first = notes_of(x, "transferred 34.0 GiB")
    assert "1.06x the 32.0 GiB RAM" in first and "pass 2 or later" in first
    assert "zero pages count" in first  # the per-line rate is not the network rate
    busy = notes_of(x, "transferred 54.9 GiB")
    assert "real rate over the last 600 s: 35.7 MiB/s" in busy
    assert "dirties 46.4 MiB/s" in busy and "faster than the migration" in busy
    xb = notes_of(x, "cache-miss 99.59%, overflow 1100")
    assert "cache-miss 99.59%" in xb and "4.0 GiB cache" in xb and "too small" in xb
    assert "overflow 1100" in xb
    auto = notes_of(x, "auto-increased downtime")
    assert "from 100 ms to 200 ms" in auto and "6th" in auto
    assert "4.0 GiB: Proxmox sizes it at RAM/10" in notes_of(x, "migration cachesize")
    assert "through SSH" in notes_of(x, "start migrate command")
    assert "14.0 s" in notes_of(x, "starting VM 4242 on remote node")
    # Lines without information carry no notes rather than filler.
    assert all(isinstance(n, str) and n for ln in x.lines for n in ln.notes)
    d = x.diagnosis
    assert {"not-converging", "resending-dirty-memory", "xbzrle-cache-too-small",
            "xbzrle-overflow", "downtime-increased", "slow-target-start"} <= set(d.ids())  # fmt: skip


def test_old_proxmox_speed_and_pass_from_remaining():
    x = explain(parse_text(OLD_PVE, "proxmox"))
    speed = notes_of(x, "migration speed: 56.89")
    assert "divided by the whole seconds" in speed and "(18 s)" in speed
    assert "downtime 54 ms" in speed and "resumes it on the target" in speed
    jump = notes_of(x, "remaining 120889600")
    assert "remaining rose" in jump and "pass 2" in jump
    assert "whole task 22.0 s" in notes_of(x, "finished successfully")
    names = [p.name for p in x.timeline]
    assert names[:2] == ["setup", "target-start"]
    assert "first-pass" in names and "dirty-passes" in names and "cleanup" in names
    first = next(p for p in x.timeline if p.name == "first-pass")
    assert (first.start, first.end) == (2.0, 18.0)
    cleanup = next(p for p in x.timeline if p.name == "cleanup")
    assert cleanup.duration == 3.0


def test_hmp_fields_explained():
    lines = [
        "Migration status: active",
        "expected downtime: 1475 milliseconds",
        "transferred ram: 18197383 kbytes",
        "throughput: 866.83 mbps",
        "remaining ram: 376892 kbytes",
        "total ram: 8388864 kbytes",
        "dirty sync count: 6",
        "page size: 4 kbytes",
        "dirty pages rate: 39044 pages",
    ]
    run = parse_text("\n".join(lines), "hmp")
    x = explain(run)
    assert "above the 300 ms limit" in notes_of(x, "expected downtime")
    assert "2.17x the 8.0 GiB RAM" in notes_of(x, "transferred ram")
    assert "103.3 MiB/s" in notes_of(x, "throughput")
    assert "3.6 s" in notes_of(x, "remaining ram")
    assert "pass 6" in notes_of(x, "dirty sync count")
    assert "152.5 MiB/s" in notes_of(x, "dirty pages rate") and "1.48x" in notes_of(
        x, "dirty pages rate"
    )


def test_run_without_text_is_rebuilt_from_source_refs_and_renders():
    run = Run(format="qmp", status="completed", downtime=0.05)
    text = '{"status": "completed", "downtime": 50}'
    run.samples = [
        Sample(t=3, status="completed", transferred=1, downtime=0.05, source=SourceRef(1, text))
    ]
    run.events = [Event(3, "status", "migration status completed", source=SourceRef(1, text))]
    x = explain(run)
    assert [ln.line for ln in x.lines] == [1]
    out = io.StringIO()
    render_explanation(x, out)
    text_out = out.getvalue()
    assert "healthy" in text_out and "\x1b[" not in text_out  # no colour when not a TTY
    data = json.loads(dumps(explanation_dict(x)))
    assert {"lines", "timeline", "diagnosis", "summary", "format", "status"} <= set(data)
    assert data["diagnosis"]["findings"][0]["id"] == "healthy"


def test_markup_in_log_text_is_printed_verbatim():
    x = explain(parse_text("2025-11-28 14:01:09 [pve2] [bold]not markup[/bold]\n", "proxmox"))
    out = io.StringIO()
    render_explanation(x, out)
    assert "[pve2] [bold]not markup[/bold]" in out.getvalue()


QMP_SESSION = """\
{"execute": "migrate-set-parameters", "arguments": {"downtime-limit": 300, "max-bandwidth": 134217728}}
{"execute": "migrate-set-capabilities", "arguments": {"capabilities": [{"capability": "xbzrle", "state": true}]}}
{"execute": "migrate", "arguments": {"uri": "tcp:10.0.0.2:4444"}}
{"timestamp": {"seconds": 1700000001, "microseconds": 0}, "event": "MIGRATION", "data": {"status": "active"}}
{"return": {"status": "active", "total-time": 5000, "expected-downtime": 300, "ram": {"transferred": 671088640, "remaining": 3000000000, "total": 4297064448, "duplicate": 10, "normal": 163840, "dirty-pages-rate": 0, "mbps": 1073.7, "dirty-sync-count": 1, "page-size": 4096}}}
{"timestamp": {"seconds": 1700000040, "microseconds": 0}, "event": "STOP"}
{"return": {"status": "completed", "total-time": 41327, "downtime": 64, "ram": {"transferred": 5391204321, "remaining": 0, "total": 4297064448, "duplicate": 52011, "normal": 1261377, "mbps": 1043.9, "dirty-sync-count": 7, "page-size": 4096}}}
"""


def test_qmp_session_commands_events_and_samples():
    x = explain(parse_text(QMP_SESSION, "qmp"))
    assert "300 ms" in notes_of(x, '"downtime-limit": 300') and "128.0 MiB/s" in notes_of(
        x, '"max-bandwidth"'
    )
    assert notes_of(x, "migrate-set-capabilities") == "capabilities: xbzrle on"
    assert "tcp:10.0.0.2:4444" in notes_of(x, '"execute": "migrate",')
    assert "downtime starts" in notes_of(x, '"event": "STOP"')
    active = notes_of(x, '"status": "active", "total-time"')
    assert "16% of the 4.0 GiB RAM" in active and "the downtime limit itself" in active
    done = notes_of(x, '"status": "completed"')
    assert "real rate since the previous sample 123.9 MiB/s" in done and "64 ms" in done
    names = [p.name for p in x.timeline]
    assert "first-pass" not in names and "ram-copy" in names  # pass 2's start is not shown
    # Plain QEMU sitting at its configured 128 MiB/s cap.
    assert x.diagnosis.get("bandwidth-capped").evidence["cap_source"] == "configured max-bandwidth"


def test_first_pass_bounded_by_transferred_passing_ram_size():
    x = explain(parse_text(BUSY_PVE, "proxmox"))
    first = next(p for p in x.timeline if p.name == "first-pass")
    # RAM copy starts 10:00:15; at 10:16:15 more than the RAM size had been sent.
    assert (first.start, first.end) == (15.0, 975.0) and "at the latest" in first.note
    assert x.timeline[1].name == "target-start" and x.timeline[1].duration == 14.0


def test_storage_mirror_and_failure_lines():
    log = """\
2024-05-01 09:00:00 starting migration of VM 300 to node 'n2' (10.1.1.2)
2024-05-01 09:00:00 starting VM 300 on remote node 'n2'
2024-05-01 09:00:03 start remote tunnel
2024-05-01 09:00:04 starting storage migration
2024-05-01 09:00:04 scsi0: start migration to nbd:unix:/run/qemu-server/300_nbd.migrate:exportname=drive-scsi0
drive mirror is starting for drive-scsi0
drive-scsi0: transferred 1.1 GiB of 32.0 GiB (3.44%) in 5s
all 'mirror' jobs are ready
2024-05-01 09:02:04 starting online/live migration on unix:/run/qemu-server/300.migrate
2024-05-01 09:02:05 migration status error: failed - Unable to write to socket: Broken pipe
2024-05-01 09:02:05 ERROR: online migrate failure - aborting
"""
    x = explain(parse_text(log, "proxmox"))
    assert "storage mirror" in notes_of(x, "drive-scsi0: transferred")
    assert "in sync" in notes_of(x, "all 'mirror' jobs are ready")
    assert "Broken pipe" in notes_of(x, "migration status error")
    assert "failed" in notes_of(x, "online migrate failure - aborting")
    d = x.diagnosis
    assert d.status == "failed" and "migration-failed" in d.ids()
    assert "Broken pipe" in d.get("migration-failed").summary
