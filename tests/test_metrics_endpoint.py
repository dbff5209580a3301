"""The Prometheus endpoint of ``migrate`` / ``lab run``, without QEMU: what a scrape of
``/metrics`` says after given samples, parsed with prometheus_client's own parser."""

from __future__ import annotations

import math
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from migtune.cli.main import main
from migtune.errors import InputError
from migtune.model import Sample, Settings, Xbzrle
from migtune.outputs.metrics import MigrationMetrics
from migtune.qemu.policies import SET_PARAMETERS, Action


def scrape(port: int) -> dict[str, float]:
    """name{labels} -> value, as a scraper reads it."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(s.labels.items()))
            out[s.name + (f"{{{labels}}}" if labels else "")] = s.value
    return out


@pytest.fixture
def endpoint():
    m = MigrationMetrics().serve(_free_port())
    yield m
    m.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _port(m: MigrationMetrics) -> int:
    return m.server.server_address[1]


def test_samples_become_gauges_and_counters(endpoint):
    actions: list[Action] = []
    sink = endpoint.progress_sink(
        None, Settings(downtime_limit=0.3, max_bandwidth=32 * 2**20), actions
    )
    before = scrape(_port(endpoint))
    assert math.isnan(before["migtune_migration_remaining_bytes"])  # nothing known yet
    sink(
        Sample(
            status="active", transferred=100 * 2**20, remaining=50 * 2**20, total=512 * 2**20,
            throughput=33e6, dirty_rate=10e6, passes=3, throttle_pct=20.0,
            expected_downtime=0.25, total_time=4.0,
            xbzrle=Xbzrle(cache_miss_rate=0.4, overflow=7),
        ),
        {},
    )  # fmt: skip
    actions.append(Action(SET_PARAMETERS, "policy raised it", {"downtime-limit": 600}))
    sink(Sample(status="active", transferred=150 * 2**20, remaining=20 * 2**20, passes=4), {})
    got = scrape(_port(endpoint))
    assert got["migtune_migration_transferred_bytes_total"] == 150 * 2**20
    assert got["migtune_migration_remaining_bytes"] == 20 * 2**20
    assert got["migtune_migration_ram_total_bytes"] == 512 * 2**20
    assert got["migtune_migration_throughput_bytes_per_second"] == 33e6
    assert got["migtune_migration_dirty_rate_bytes_per_second"] == 10e6
    assert got["migtune_migration_passes_total"] == 4
    assert got["migtune_migration_downtime_limit_seconds"] == 0.6  # the policy's change
    assert got["migtune_migration_max_bandwidth_bytes_per_second"] == 32 * 2**20
    assert got["migtune_migration_expected_downtime_seconds"] == 0.25
    assert got["migtune_migration_cpu_throttle_ratio"] == 0.0  # QEMU stopped reporting it
    assert got["migtune_migration_xbzrle_cache_miss_ratio"] == 0.4
    assert got["migtune_migration_xbzrle_overflow_pages_total"] == 7
    assert got["migtune_migration_status{migtune_migration_status=active}"] == 1
    assert got["migtune_migration_status{migtune_migration_status=completed}"] == 0


def test_counters_never_go_down(endpoint):
    endpoint.observe(Sample(transferred=1000, passes=5))
    endpoint.observe(Sample(transferred=900, passes=4))  # a reply out of order
    got = scrape(_port(endpoint))
    assert got["migtune_migration_transferred_bytes_total"] == 1000
    assert got["migtune_migration_passes_total"] == 5


def test_prediction_and_end(endpoint):
    endpoint.set_prediction(240.0, True, eta_low_s=180.0, eta_high_s=360.0, downtime_s=0.2)
    got = scrape(_port(endpoint))
    assert got["migtune_migration_predicted_remaining_seconds{bound=median}"] == 240.0
    assert got["migtune_migration_predicted_remaining_seconds{bound=low}"] == 180.0
    assert got["migtune_migration_predicted_remaining_seconds{bound=high}"] == 360.0
    assert got["migtune_migration_predicted_converges"] == 1
    assert got["migtune_migration_predicted_downtime_seconds"] == 0.2
    endpoint.set_prediction(None, False)
    got = scrape(_port(endpoint))
    assert got["migtune_migration_predicted_converges"] == 0
    assert math.isnan(got["migtune_migration_predicted_remaining_seconds{bound=median}"])
    endpoint.finish("completed")
    got = scrape(_port(endpoint))
    assert got["migtune_migration_status{migtune_migration_status=completed}"] == 1
    assert got["migtune_migration_remaining_bytes"] == 0


def test_openmetrics_is_served_when_asked(endpoint):
    req = urllib.request.Request(
        f"http://127.0.0.1:{_port(endpoint)}/metrics",
        headers={"Accept": "application/openmetrics-text; version=1.0.0"},
    )
    body = urllib.request.urlopen(req, timeout=5).read().decode()
    assert body.rstrip().endswith("# EOF")
    assert "migtune_migration_transferred_bytes_total" in body


def test_a_broken_display_does_not_lose_the_figures(endpoint):
    def display(_sample, _extra):
        raise RuntimeError("terminal gone")

    sink = endpoint.progress_sink(display, Settings(), [])
    with pytest.raises(RuntimeError):
        sink(Sample(status="active", remaining=5), {})
    assert scrape(_port(endpoint))["migtune_migration_remaining_bytes"] == 5


def test_a_port_in_use_is_an_input_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(InputError, match="cannot listen"):
            MigrationMetrics().serve(port)


@pytest.mark.parametrize("command", [["lab", "run", "--ram", "256MiB", "--workload", "idle"],
                                     ["migrate", "--qmp", "/nonexistent.qmp", "--to", "tcp:x:1"]])  # fmt: skip
def test_cli_port_in_use_is_exit_2_before_anything_starts(command, capsys):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert main([*command, "--metrics-port", str(port)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"migtune: error: --metrics-port: cannot listen on 127.0.0.1:{port}: Address already in use"
    ]
