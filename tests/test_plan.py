"""Evacuation plans: the timeline, the planner against its baselines, flags, the CLI."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from migtune.cli.main import main
from migtune.plan import plan_evacuation
from migtune.plan.curves import Profile
from migtune.plan.timeline import Entry, run_timeline
from migtune.plan.verify import check_vm

ROOT = Path(__file__).resolve().parents[1]
LINK = 1.25e9  # 10 Gbit/s
STREAM = 300e6

# small guests so the simulations take milliseconds: heavy writers (one faster than a
# stream can send), web servers, idle VMs
FLEET = """name,ram,workload,max-downtime
db,4GiB,"ws=1GiB,rate=150MiB/s,pattern=random",1s
cache,2GiB,"ws=1GiB,rate=250MiB/s,pattern=random",
hot,2GiB,"ws=1GiB,rate=400MiB/s,pattern=random",
web-1,2GiB,"ws=256MiB,rate=20MiB/s,pattern=hotcold",
web-2,2GiB,"ws=256MiB,rate=20MiB/s,pattern=hotcold",
idle-1,8GiB,idle,
idle-2,1GiB,idle,
"""


@pytest.fixture(scope="module")
def fleet(tmp_path_factory) -> str:
    p = tmp_path_factory.mktemp("fleet") / "vms.csv"
    p.write_text(FLEET)
    return str(p)


@pytest.fixture(scope="module")
def plan(fleet):
    # libvirt lifts QEMU's 128 MiB/s cap: baselines that mostly converge, to race against;
    # one stream moves at most 300 MB/s, so several run at once
    return plan_evacuation(fleet, link_rate=LINK, max_parallel=4, serial=True,
                           platform="libvirt", stream_rate=STREAM)  # fmt: skip


def _flat(first_bytes: float, rest_bytes: float, threshold: float | None = None) -> Profile:
    rates = (LINK, LINK / 2, LINK / 4)
    rest = tuple(rest_bytes if threshold is None or r >= threshold else math.inf for r in rates)
    return Profile(rates, (first_bytes,) * 3, rest, (0.1,) * 3)


def test_two_equal_migrations_share_the_link_and_end_together():
    p = _flat(LINK * 10, 0.0)  # 10 s of bytes at the full link, no later passes
    tl = run_timeline([Entry("a", p, None, 3600), Entry("b", p, None, 3600)], LINK, 2)
    assert tl.runs["a"].end == pytest.approx(20.0) and tl.runs["b"].end == pytest.approx(20.0)
    assert tl.runs["a"].rates == [(0.0, pytest.approx(20.0), LINK / 2)]
    # one at a time: the same bytes over the same link, the same drain time
    tl1 = run_timeline([Entry("a", p, None, 3600), Entry("b", p, None, 3600)], LINK, 1)
    assert tl1.runs["a"].end == pytest.approx(10.0)
    assert tl1.drain_time == pytest.approx(20.0) and tl1.runs["b"].wave == 2


def test_a_capped_stream_leaves_the_rest_of_the_link_to_the_other():
    p = _flat(LINK * 10, 0.0)
    tl = run_timeline([Entry("a", p, LINK / 4, 3600), Entry("b", p, None, 3600)], LINK, 2)
    # b runs at 3/4 of the link until it is done, then a is alone but still capped
    assert tl.runs["b"].end == pytest.approx(10 / 0.75)
    assert tl.runs["a"].end == pytest.approx(40.0)


def test_a_migration_that_cannot_converge_at_its_share_stalls_then_fails_at_max_time():
    hard = _flat(LINK * 5, LINK * 5, threshold=LINK)  # converges only with the whole link
    easy = _flat(LINK * 100, 0.0)
    tl = run_timeline([Entry("hard", hard, None, 60), Entry("easy", easy, None, 3600)], LINK, 2)
    assert tl.runs["hard"].status == "failed" and tl.runs["hard"].end == pytest.approx(60.0)
    # with admission control the hard one waits until it would get the whole link
    tl2 = run_timeline(
        [Entry("easy", easy, None, 3600, None), Entry("hard", hard, None, 60, LINK)],
        LINK, 2, admission=True,
    )  # fmt: skip
    assert tl2.runs["hard"].status == "completed"
    assert tl2.runs["hard"].start == pytest.approx(tl2.runs["easy"].end)


def test_the_plan_is_never_worse_than_a_baseline_and_better_on_a_mixed_fleet(plan):
    d = plan.to_dict()
    best = d["plan"]
    for b in d["baselines"]:
        assert best["failed"] <= b["failed"]
        if best["failed"] == b["failed"]:
            assert best["drain_time_s"]["max"] <= b["drain_time_s"]["max"] + 1e-6
    top = min((b["failed"], b["drain_time_s"]["max"]) for b in d["baselines"])
    assert (best["failed"], best["drain_time_s"]["max"]) < top
    assert d["ok"] and not d["failed"]
    assert {b["name"] for b in d["baselines"]} == {
        "bulk migrate (list order)", "largest-first", "smallest-first"}  # fmt: skip


def test_every_vm_has_times_settings_and_commands(plan):
    d = plan.to_dict()
    names = ["db", "cache", "hot", "web-1", "web-2", "idle-1", "idle-2"]
    assert [v["name"] for v in d["vms"]] == names
    for v in d["vms"]:
        assert v["status"] == "planned"
        assert v["start_s"]["min"] <= v["start_s"]["max"]
        assert v["end_s"]["median"] > v["start_s"]["median"]
        assert v["settings"]["downtime-limit"] > 0
        assert any(c.startswith("virsh migrate --live") for c in v["commands"])
    by = {v["name"]: v for v in d["vms"]}
    assert by["db"]["settings"]["downtime-limit"] <= 1.0  # within its own row's budget
    assert by["db"]["downtime_ms"]["max"] <= 1000.0
    # faster than one stream can send: converges only with auto-converge
    assert by["hot"]["settings"]["auto-converge"] and by["hot"]["settings_candidate"] == (
        "auto-converge")  # fmt: skip
    # the idle VMs keep the platform's downtime limit: nothing more is needed
    assert by["idle-1"]["settings"]["downtime-limit"] == 0.3
    assert sum(len(w["vms"]) for w in d["waves"]) == 7


def test_the_timeline_agrees_with_direct_simulation_under_changing_rates(fleet):
    # four at once, no admission: rates change as neighbours finish
    plan = plan_evacuation(fleet, link_rate=LINK, max_parallel=4, serial=True)
    from migtune.plan.strategies import Strategy

    busy = plan.evaluate(Strategy("t", "list", 4, False, True))
    checks = [check_vm(plan, v.spec.name, evaluation=busy) for v in plan.vms]
    assert any(c.rate_changes for c in checks)
    for c in checks:
        assert c.same_class
        assert abs(c.error) < 0.10, c


def test_impossible_limits_are_flagged_never_dropped(tmp_path, capsys):
    p = tmp_path / "vms.csv"
    p.write_text(
        "name,ram,workload,max-downtime,max-time\n"
        "ok,1GiB,idle,,\n"
        "zero-pause,1GiB,idle,0,\n"
        "no-time,4GiB,idle,,0\n"
        'slow,4GiB,"ws=3GiB,rate=10MiB/s",,2s\n'
        'runaway,2GiB,"ws=2GiB,rate=4GiB/s,pattern=random,cpu=0",,\n'
    )
    argv = ["plan", "evacuate", str(p), "--serial", "--json", "--link", "1Gbit/s"]
    assert main([*argv, "--max-time", "5min"]) == 6
    d = json.loads(capsys.readouterr().out)
    by = {v["name"]: v for v in d["vms"]}
    assert set(by) == {"ok", "zero-pause", "no-time", "slow", "runaway"}
    assert by["ok"]["status"] == "planned"
    assert "below 1 ms" in by["zero-pause"]["flags"][0]
    assert by["zero-pause"]["status"] == "over-downtime"
    assert "max-time 0" in by["no-time"]["flags"][0]
    assert by["no-time"]["status"] in ("fails", "cannot-converge") and "no-time" in d["failed"]
    # 2 s cannot send its 3 GiB working set: no setting converges within its max-time
    assert by["slow"]["status"] == "cannot-converge" and "slow" in d["failed"]
    assert by["runaway"]["status"] == "cannot-converge"
    assert "runaway" in d["cannot_converge"] and not d["ok"]
    need = by["runaway"]["needs"]
    assert need["rate_bytes_per_s"] or need["downtime_limit_s"]


def test_cli_text_json_and_report(fleet, tmp_path, capsys):
    html = tmp_path / "plan.html"
    assert main(["plan", "evacuate", fleet, "--serial", "--report", str(html)]) == 0
    out = capsys.readouterr().out
    assert "Evacuation plan: 7 VMs over 10.00 Gbit/s" in out
    assert "bulk migrate (list order)" in out and "Waves" in out and "GiB" in out
    page = html.read_text()
    assert "<svg" in page and "<script" not in page.lower()
    assert "Content-Security-Policy" in page and "http://" not in page.replace(
        'xmlns="http://www.w3.org/2000/svg"', "")  # fmt: skip
    assert main(["plan", "evacuate", fleet, "--serial", "--json", "--deadline", "1s"]) == 6
    d = json.loads(capsys.readouterr().out)
    for key in ("ok", "link_rate", "strategy", "drain_time_s", "meets_deadline", "failed",
                "cannot_converge", "waves", "vms", "plan", "baselines", "simulations"):  # fmt: skip
        assert key in d
    assert d["meets_deadline"] is False


@pytest.mark.parametrize(
    "argv,text",
    [
        (["{BAD}", "--serial"], "vms.csv:2: ram: cannot read size"),
        (["{MISSING}", "--serial"], "no such file"),
        (["{GOOD}", "--link", "fast"], "--link"),
        (["{GOOD}", "--serial", "--workers", "2"], "--serial"),
        (["{GOOD}", "--serial", "--report", "{NOWHERE}"], "--report"),
        (["{GOOD}", "--platform", "vmware"], "--platform"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, argv, text):
    bad = tmp_path / "vms.csv"
    bad.write_text("name,ram,workload\na,lots,idle\n")
    good = tmp_path / "good.csv"
    good.write_text("name,ram,workload\na,1GiB,idle\n")
    subs = {"{BAD}": str(bad), "{GOOD}": str(good), "{MISSING}": str(tmp_path / "no.csv"),
            "{NOWHERE}": str(tmp_path / "no" / "dir" / "p.html")}  # fmt: skip
    assert main(["plan", "evacuate", *[subs.get(a, a) for a in argv]]) == 2
    err = capsys.readouterr().err
    assert err.startswith("migtune: error: ") and err.count("\n") == 1 and text in err


TINY = "name,ram,workload\na,1GiB,idle\n"


def _value_options() -> list[str]:
    import click

    from migtune.cli.main import _register, cli

    _register()
    cmd = cli.commands["plan"].commands["evacuate"]  # type: ignore[attr-defined]
    skip = {"--report"}  # writes a file
    return sorted(
        next(o for o in p.opts if o.startswith("--"))
        for p in cmd.params
        if isinstance(p, click.Option) and not p.is_flag and not skip & set(p.opts)
    )


def test_every_option_value_is_a_plan_or_one_error_line(tmp_path):
    """Nasty values for every option: exit 0, 6 or 2 with one error line, no traceback."""
    import contextlib
    import io

    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    fleet = tmp_path / "vms.csv"
    fleet.write_text(TINY)
    nasty = st.sampled_from([
        "", "0", "-1", "1", "1e-300", "1e308", "nan", "inf", "9" * 400, "1Gbit/s", "1B/s",
        "300ms", "-300ms", "64", "65", "qemu", "proxmox", "tcp://", "10.0", "\x00", "ünï",
    ])  # fmt: skip

    @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
    @given(option=st.sampled_from(_value_options()), value=nasty)
    def run(option, value):
        err, out = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
            rc = main(["plan", "evacuate", str(fleet), "--serial", option, value])
        lines = [x for x in err.getvalue().splitlines() if x.strip()]
        assert rc in (0, 2, 6), lines
        assert "Traceback" not in err.getvalue() and "internal error" not in err.getvalue()
        if rc == 2:
            assert len(lines) == 1 and lines[0].startswith("migtune: error: ")
        else:
            assert lines == [] and out.getvalue().startswith("Evacuation plan")

    run()


def test_history_rows_take_the_plausible_set_of_the_history_store(tmp_path, capsys):
    """``history:NAME`` simulates every plausible workload the history store calibrated
    from NAME's past migrations (a real store, a real log)."""
    from migtune.history import add_logs

    db = str(tmp_path / "history.db")
    add_logs([str(ROOT / "examples" / "virsh-domjobinfo-completed.txt")], vm="db-prod", db=db)
    p = tmp_path / "vms.csv"
    p.write_text(
        "name,ram,workload\ndb,4GiB,history:db-prod\nidle,1GiB,idle\nlost,1GiB,history:nobody\n"
    )
    assert main(["plan", "evacuate", str(p), "--serial", "--db", db]) == 2
    err = capsys.readouterr().err
    assert "vms.csv:4: workload: history:nobody" in err and err.count("\n") == 1
    p.write_text("name,ram,workload\ndb,4GiB,history:db-prod\nidle,1GiB,idle\n")
    plan = plan_evacuation(str(p), link_rate=125e6, max_parallel=2, serial=True, history_db=db)
    vm = next(v for v in plan.to_dict()["vms"] if v["name"] == "db")
    assert len(vm["plausible_workloads"]) >= 2 and vm["status"] == "planned"
    assert vm["end_s"]["min"] <= vm["end_s"]["max"]


def test_tune_adds_its_recommendation_as_a_candidate(tmp_path):
    """With ``use_tune`` each VM also gets ``migtune tune``'s recommendation at the rate it
    can expect, simulated like the other candidates, with tune's own commands."""
    p = tmp_path / "vms.csv"
    p.write_text('name,ram,workload\nbusy,1GiB,"ws=512MiB,rate=60MiB/s,pattern=random"\n'
                 "idle,1GiB,idle\n")  # fmt: skip
    plain = plan_evacuation(str(p), link_rate=125e6, max_parallel=2, serial=True)
    tuned = plan_evacuation(str(p), link_rate=125e6, max_parallel=2, serial=True,
                            use_tune=True)  # fmt: skip
    assert all("tune" not in v.settings for v in plain.vms)
    assert all(v.curves.tuned is not None for v in tuned.vms)
    d = tuned.to_dict()
    picked = [v for v in d["vms"] if v["settings_candidate"] == "tune"]
    assert picked, "tune's recommendation converges: it is preferred"
    for v in picked:
        assert v["commands"] and all("VMID" not in c and "DOMAIN" not in c for c in v["commands"])
    assert tuned.simulations > plain.simulations
