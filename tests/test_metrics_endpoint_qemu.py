"""The metrics endpoint during a real lab migration, scraped as Prometheus would.

A 256 MiB guest writing 16 MiB/s behind a 32 MiB/s cap migrates for a few seconds;
a thread scrapes ``/metrics`` every 0.2 s and every scrape is parsed with
prometheus_client's own parser.
"""

from __future__ import annotations

import socket
import threading
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from migtune.lab.run import lab_run
from migtune.model import Settings
from migtune.outputs.metrics import MigrationMetrics
from migtune.units import MiB
from migtune.workload import parse_workload

pytestmark = pytest.mark.qemu


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _parse(text: str) -> dict[str, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            key = s.name + "".join(f"[{v}]" for v in s.labels.values())
            out[key] = s.value
    return out


def test_scraped_during_a_real_migration(image):
    port = _free_port()
    metrics = MigrationMetrics().serve(port)
    scrapes: list[dict[str, float]] = []
    stop = threading.Event()

    def scraper() -> None:
        while not stop.wait(0.2):
            body = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read()
            scrapes.append(_parse(body.decode()))

    t = threading.Thread(target=scraper, daemon=True)
    try:
        t.start()
        lab = lab_run(
            256 * MiB, parse_workload("ws=64MiB,rate=16MiB/s,pattern=random"),
            Settings(max_bandwidth=32 * MiB, downtime_limit=0.5), time_limit=40,
            progress=False, image=image, accel="tcg", metrics=metrics,
        )  # fmt: skip
        final = _parse(urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics").read().decode())
    finally:
        stop.set()
        t.join(timeout=10)
        metrics.close()
    assert lab.outcome.status == "completed"
    active = [s for s in scrapes if s.get("migtune_migration_status[active]") == 1]
    assert len(active) >= 3  # seen while it ran, not only at the end
    mid = active[len(active) // 2]
    assert mid["migtune_migration_transferred_bytes_total"] > 0
    assert mid["migtune_migration_remaining_bytes"] > 0
    assert mid["migtune_migration_ram_total_bytes"] >= 256 * MiB
    assert 0 < mid["migtune_migration_throughput_bytes_per_second"] < 40 * MiB
    assert mid["migtune_migration_downtime_limit_seconds"] == 0.5
    assert mid["migtune_migration_max_bandwidth_bytes_per_second"] == 32 * MiB
    sent = [s["migtune_migration_transferred_bytes_total"] for s in active]
    assert sent == sorted(sent) and sent[-1] > sent[0]  # a counter: only up
    assert final["migtune_migration_status[completed]"] == 1
    assert final["migtune_migration_passes_total"] == lab.outcome.passes
    assert final["migtune_migration_transferred_bytes_total"] >= lab.outcome.transferred_bytes * 0.9
