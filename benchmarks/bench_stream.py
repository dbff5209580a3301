"""Benchmark: the log commands on huge inputs keep memory bounded (issue "Solid ground" item 3).

Generates, into a temporary directory deleted afterwards:

* Proxmox task logs of 10 MB, 100 MB and 1 GB (the realistic lines of bench_parse.py:
  a 32 GiB VM that never converges, progress + xbzrle lines);
* a 1 GB file that is one single line (progress text without a newline);
* a 1 GB file of printable garbage (random words, random line lengths), read both as
  detected (rejected: unrecognised) and with ``--format proxmox`` forced (every line an
  unrecognised one);
* the report's hostile input: a Proxmox log whose ``transferred`` passes 1 TiB (the
  series used to walk back over every line for every line there), at 1x..10x of 1.8 MB.

Each command (``diagnose --json``, ``explain --json > /dev/null``, ``explain > /dev/null``
(text), ``simulate --from``, ``report -o``) runs in a child process (above ``--no-simulate-above`` MB, ``simulate``
is replaced by what it reads before simulating: the log and the calibration's evidence,
because the simulations' own time depends on the VM, not on the log); the script prints wall time, CPU time and peak
RSS (``ru_maxrss`` of that child), and the rate of bench_parse.py's stream parser measured
on the same file in the same run, so the ratio "command time / parse time" is printed too.
At the end one table sums it up: per file and command, CPU time, ratio to the parse, peak
RSS and whether both goals are met.

Run: ``nice -n 5 python benchmarks/bench_stream.py [--sizes 10 100 1000] [--hostile 1 10]``
Goals: peak RSS <= 200 MB and time <= 2x the parse time for every size; the hostile
report series < 2 s at x10.  Needs ~3 GB of free space in the temp directory.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_parse import write_log  # noqa: E402

from migtune.units import GiB, MiB, format_bytes  # noqa: E402

BYTES_PER_LINE = 122  # of bench_parse.write_log's lines
RSS_GOAL = 200 * 1024**2
COMMANDS = ("diagnose", "explain", "explain-text", "simulate", "report", "calibrate")
DEFAULT_COMMANDS = ("diagnose", "explain", "explain-text", "simulate", "report")
RATIO_GOAL = 2.0
SUMMARY: list[tuple[str, str, dict, float | None]] = []  # (file, command, figures, parse CPU)


# What ``simulate --from`` reads before it simulates: the log, then the calibration's
# evidence from it (the seeds' and the fit's simulations run the simulator: their speed
# depends on the VM, not on the size of the log, and is bench_sim's business).
_CALIBRATE = (
    "import sys; from migtune.sources import load_run; "
    "from migtune.sim.calibrate.evidence import extract, observed_outcome; "
    "run = load_run(sys.argv[1]); extract(run); observed_outcome(run)"
)


def run_child(argv: list[str], stdout_path: str = os.devnull, module: bool = True) -> dict:
    """Run ``python -m migtune argv`` and measure it alone (wait4 gives its own rusage)."""
    env = dict(os.environ)
    with open(stdout_path, "wb") as out:
        t0 = time.perf_counter()
        proc = subprocess.Popen(
            [sys.executable, *(["-m", "migtune"] if module else []), *argv],
            stdout=out,
            stderr=subprocess.PIPE,
            env=env,
        )
        err = proc.stderr.read()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
    return {
        "rc": os.waitstatus_to_exitcode(status),
        "wall": wall,
        "cpu": usage.ru_utime + usage.ru_stime,
        "rss": usage.ru_maxrss * 1024,
        "err": err.decode(errors="replace").strip().splitlines()[-1:] or [""],
    }


def parse_rate(path: str) -> tuple[float, int]:
    """bench_parse's measure: CPU seconds of proxmox.iter_records over the file, lines."""
    here = os.path.dirname(os.path.abspath(__file__))
    code = (
        f"import json,sys; sys.path.insert(0, {here!r}); import bench_parse; "
        f"print(json.dumps(bench_parse.measure({path!r})))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    fig = json.loads(out.stdout.strip().splitlines()[-1])
    return fig["cpu"], fig["lines"]


def write_single_line(path: str, size: int) -> None:
    piece = (
        b"2025-01-04 00:40:01 migration active, transferred 12.3 GiB of 32.0 GiB VM-state, "
        b"40.1 MiB/s "
    )
    block = piece * (MiB // len(piece))
    with open(path, "wb") as f:
        written = 0
        while written < size:
            f.write(block)
            written += len(block)


def write_garbage(path: str, size: int) -> None:
    rng = random.Random(8)
    words = [
        "".join(
            rng.choice("abcdefghijklmnopqrstuvwxyz0123456789=:/.-")
            for _ in range(rng.randint(1, 12))
        )
        for _ in range(5000)
    ]
    with open(path, "w", encoding="utf-8", buffering=1 << 20) as f:
        written = 0
        while written < size:
            line = " ".join(rng.choices(words, k=rng.randint(0, 30))) + "\n"
            f.write(line)
            written += len(line)


def write_tib_log(path: str, lines: int) -> None:
    """A Proxmox log past 1 TiB sent, growing at 35 MiB/s, one line a second.

    The report averages each point back until the bytes sent dwarf the printing
    rounding (0.05 TiB here): no earlier point qualifies, so the old backward walk went
    to the first line for every line (quadratic).
    """
    start = 1735950864
    with open(path, "w", encoding="utf-8") as f:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start))
        f.write(f"{stamp} starting migration of VM 100 to node 'pve2' (10.10.1.2)\n")
        f.write(f"{stamp} start migrate command to unix:/run/qemu-server/100.migrate\n")
        for second in range(1, lines):
            stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(start + second))
            done = int(1.5 * 1024 * GiB) + second * 35 * MiB
            f.write(
                f"{stamp} migration active, transferred {format_bytes(done)} of "
                f"{format_bytes(512 * GiB)} VM-state, {format_bytes(35 * MiB)}/s\n"
            )
        f.write(f"{stamp} migration status: completed\n")


def show(label: str, fig: dict, parse_cpu: float | None) -> None:
    # CPU against CPU: the machine may be shared, wall time then says little.
    ratio = f"{fig['cpu'] / parse_cpu:6.1f}x parse CPU" if parse_cpu else " " * 17
    flag = "" if fig["rss"] <= RSS_GOAL else "  RSS OVER GOAL"
    print(
        f"  {label:34} rc {fig['rc']}  wall {fig['wall']:7.1f} s  cpu {fig['cpu']:7.1f} s  "
        f"peak RSS {format_bytes(fig['rss']):>10}  {ratio}{flag}"
    )
    if fig["rc"] not in (0,) and fig["err"][0]:
        print(f"  {'':34} stderr: {fig['err'][0][:110]}")


_PARSE_CPU_PER_BYTE: list[float] = []  # from the Proxmox logs, for the files it cannot read


def bench_file(
    path: str, label: str, commands: tuple[str, ...], tmp: str, fmt: list[str], proxmox: bool
) -> None:
    size = os.path.getsize(path)
    if proxmox:
        parse_cpu, lines = parse_rate(path)
        _PARSE_CPU_PER_BYTE.append(parse_cpu / size)
        print(
            f"{label}: {format_bytes(size)}, {lines:,} lines; bench_parse stream parser "
            f"{parse_cpu:.1f} s CPU ({lines / max(parse_cpu, 1e-9):,.0f} lines/s)"
        )
    else:
        # bench_parse iterates the file with ``for line in f``: a 1 GB line would be one
        # 1 GB string there, so its time is scaled by bytes from the Proxmox logs.
        parse_cpu = size * min(_PARSE_CPU_PER_BYTE) if _PARSE_CPU_PER_BYTE else None
        print(
            f"{label}: {format_bytes(size)}; parse time by bytes at the Proxmox logs' rate: "
            + (f"{parse_cpu:.1f} s" if parse_cpu else "unknown")
        )
    for cmd in commands:
        if cmd == "diagnose":
            fig = run_child(["diagnose", "--json", *fmt, path])
        elif cmd == "explain":
            fig = run_child(["explain", "--json", *fmt, path])
        elif cmd == "explain-text":
            fig = run_child(["explain", *fmt, path])
        elif cmd == "simulate":
            fig = run_child(["simulate", "--from", path, "--set", "downtime-limit=2s"])
        elif cmd == "calibrate":
            fig = run_child(["-c", _CALIBRATE, path], module=False)
        else:
            out = os.path.join(tmp, "report.html")
            fig = run_child(["report", *fmt, path, "-o", out])
            if os.path.exists(out):
                fig["err"] = [f"page {format_bytes(os.path.getsize(out))}"]
                os.unlink(out)
        show(cmd, fig, parse_cpu)
        SUMMARY.append((label, cmd, fig, parse_cpu))


def summary() -> None:
    """One table of every figure of this run: CPU, ratio to the parse, peak RSS, goals."""
    if not SUMMARY:
        return
    print(
        f"\nsummary (goals: CPU <= {RATIO_GOAL:g}x the parse, peak RSS <= "
        f"{format_bytes(RSS_GOAL)}):"
    )
    print(
        f"  {'file':38} {'command':13} {'rc':>3} {'CPU s':>8} {'x parse':>8} {'peak RSS':>10}  goals"
    )
    for label, cmd, fig, parse_cpu in SUMMARY:
        ratio = fig["cpu"] / parse_cpu if parse_cpu else None
        ok_time = ratio is not None and ratio <= RATIO_GOAL
        ok_rss = fig["rss"] <= RSS_GOAL
        goals = (
            ("time ok" if ok_time else "TIME OVER") + ", " + ("RSS ok" if ok_rss else "RSS OVER")
        )
        shown = f"{ratio:7.2f}x" if ratio is not None else "       ?"
        print(
            f"  {label:38} {cmd:13} {fig['rc']:>3} {fig['cpu']:8.1f} {shown} "
            f"{format_bytes(fig['rss']):>10}  {goals}"
        )


def hostile(scales: list[int], tmp: str) -> None:
    print("report on a log whose transferred passes 1 TiB (was quadratic in report.series):")
    base = 15_000  # ~1.8 MB
    for k in scales:
        path = os.path.join(tmp, f"tib-x{k}.log")
        write_tib_log(path, base * k)
        code = (
            "import time,sys; from migtune.sources import load_run; "
            "from migtune.report.series import run_series, pass_rows; "
            "r = load_run(sys.argv[1]); t = time.process_time(); run_series(r); pass_rows(r); "
            "print(time.process_time() - t)"
        )
        series = subprocess.run(
            [sys.executable, "-c", code, path], check=True, capture_output=True, text=True
        ).stdout.strip()
        fig = run_child(["report", path, "-o", os.path.join(tmp, "tib.html")])
        print(
            f"  x{k:<3} {format_bytes(os.path.getsize(path)):>10}: series + pass table "
            f"{float(series):6.2f} s CPU; whole report {fig['cpu']:6.1f} s CPU "
            f"({fig['wall']:.1f} s wall), "
            f"peak RSS {format_bytes(fig['rss'])} (rc {fig['rc']})"
        )
        os.unlink(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[10, 100, 1000], help="MB")
    ap.add_argument(
        "--big", type=int, default=1000, help="MB of the single-line/garbage files (0: skip)"
    )
    ap.add_argument("--hostile", type=int, nargs="*", default=[1, 2, 5, 10], help="scales")
    ap.add_argument("--commands", nargs="*", default=list(DEFAULT_COMMANDS), choices=COMMANDS)
    ap.add_argument(
        "--no-simulate-above",
        type=int,
        default=10,
        help="MB; above it, only what simulate --from reads (load + calibration inputs)",
    )
    ap.add_argument("--dir", default=None, help="where to write the generated files")
    args = ap.parse_args(argv)
    commands = tuple(args.commands)
    print(f"migtune bench_stream (goal: peak RSS <= {format_bytes(RSS_GOAL)}, time <= 2x parse)")
    start = run_child(["--version"])
    print(
        f"start-up of `migtune --version`: {start['cpu']:.2f} s CPU; every figure below "
        "includes at least that (it weighs on the small files' ratios)"
    )
    with tempfile.TemporaryDirectory(prefix="migtune-stream-", dir=args.dir) as tmp:
        for mb in args.sizes:
            path = os.path.join(tmp, f"proxmox-{mb}MB.log")
            write_log(path, max(100, mb * 10**6 // BYTES_PER_LINE))
            cmds = tuple(
                ("calibrate" if c == "simulate" and mb > args.no_simulate_above else c)
                for c in commands
            )
            bench_file(path, f"Proxmox log {mb} MB", cmds, tmp, [], proxmox=True)
            os.unlink(path)
        if args.big:
            path = os.path.join(tmp, "single-line.log")
            write_single_line(path, args.big * 10**6)
            bench_file(
                path,
                f"single line {args.big} MB",
                ("diagnose", "explain", "explain-text", "report"),
                tmp,
                [],
                False,
            )
            os.unlink(path)
            path = os.path.join(tmp, "garbage.log")
            write_garbage(path, args.big * 10**6)
            bench_file(path, f"garbage {args.big} MB (detected)", ("diagnose",), tmp, [], False)
            bench_file(
                path,
                f"garbage {args.big} MB (--format proxmox)",
                ("diagnose", "explain", "explain-text", "report"),
                tmp,
                ["--format", "proxmox"],
                False,
            )
            os.unlink(path)
        summary()
        if args.hostile:
            hostile(args.hostile, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
