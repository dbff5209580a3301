"""The plan computed on a real Dask LocalCluster (2 worker processes) equals the serial one."""

from __future__ import annotations

import pytest

from migtune.plan import plan_evacuation

FLEET = """name,ram,workload
db,2GiB,"ws=1GiB,rate=150MiB/s,pattern=random"
web,1GiB,"ws=256MiB,rate=20MiB/s,pattern=hotcold"
idle,2GiB,idle
"""


def _plan_without_execution(d: dict) -> dict:
    return {k: v for k, v in d.items() if k != "execution"}


@pytest.mark.slow
def test_local_cluster_with_two_processes_gives_the_serial_plan(tmp_path):
    fleet = tmp_path / "vms.csv"
    fleet.write_text(FLEET)
    kw = {"link_rate": 125e6, "max_parallel": 2}
    serial = plan_evacuation(str(fleet), serial=True, **kw)
    seen: list[tuple[str, int, int]] = []
    dask = plan_evacuation(str(fleet), workers=2, progress=lambda *a: seen.append(a), **kw)
    assert dask.runner == "dask LocalCluster, 2 worker process(es)" and dask.workers == 2
    assert _plan_without_execution(dask.to_dict()) == _plan_without_execution(serial.to_dict())
    # both stages reported progress up to their totals
    assert ("simulating VMs", 3, 3) in seen
    assert any(w == "scoring strategies" and d == t for w, d, t in seen)


@pytest.mark.slow
def test_an_existing_cluster_at_its_scheduler_address(tmp_path):
    from dask.distributed import LocalCluster

    fleet = tmp_path / "vms.csv"
    fleet.write_text(FLEET)
    kw = {"link_rate": 125e6, "max_parallel": 2}
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster:  # fmt: skip
        remote = plan_evacuation(str(fleet), scheduler=cluster.scheduler_address, **kw)
    assert remote.runner == f"dask scheduler {cluster.scheduler_address}"
    serial = plan_evacuation(str(fleet), serial=True, **kw)
    assert _plan_without_execution(remote.to_dict()) == _plan_without_execution(serial.to_dict())
