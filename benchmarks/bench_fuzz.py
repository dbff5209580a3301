"""Mutation fuzzer: no input may crash or hang ``load_run -> diagnose -> explain -> output``.

The corpus is every file under ``examples/`` and ``tests/fixtures/`` (plus any ``--corpus``
directories given).  Each input is one corpus file with one to three mutations applied:
numbers made huge, negative, NaN, inf or ``1.2.3``; lines dropped, duplicated, shuffled;
truncation at a random byte; invalid UTF-8; NUL bytes; JSON values of the wrong type;
many JSON objects on one line; very long lines; lines spliced in from another file.
About one input in ten forces a ``--format`` that may not fit.

Each input is written to a RAM-backed temporary file and run in-process through the same
library calls as ``migtune diagnose/explain [--json]`` (the explained log rendered as text
every ``--text-every``-th input, the HTML report every ``--html-every``-th).  A
:class:`~migtune.errors.MigtuneError` is a correct answer; any other exception is a crash;
more than ``--timeout`` seconds of CPU is a hang.  CPU time, not wall time, so that other
jobs on a shared machine do not make hangs of slow neighbours: a per-input
``setitimer(ITIMER_PROF)`` alarm interrupts Python code (time spent inside one C call,
such as a backtracking regex, is still measured when it returns).

Runs are deterministic: input ``i`` of seed ``s`` is always the same bytes, so
``--only i`` reproduces it.  Each new crash or hang signature (exception type and the
innermost migtune frame) is written, after a quick line-dropping shrink, to
``tests/fixtures/fuzz/`` (the regression corpus read by ``tests/test_fuzz_regressions.py``).

Run: ``nice -n 10 python benchmarks/bench_fuzz.py [--count 100000] [--seconds S]``
Goal: 0 crashes and 0 hangs in 100,000 inputs.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from migtune.analysis.diagnose import diagnose
from migtune.analysis.explain import explain
from migtune.errors import MigtuneError
from migtune.outputs import jsonout, text
from migtune.sources import FORMATS, load_run

REPO = Path(__file__).resolve().parents[1]
CORPUS_DIRS = [REPO / "examples", REPO / "tests" / "fixtures"]
FUZZ_DIR = REPO / "tests" / "fixtures" / "fuzz"
MAX_INPUT = 600_000  # bytes: bigger mutants are cut, so the loop stays fast


class Hang(BaseException):
    """Raised by the per-input alarm (BaseException so `except Exception` in migtune
    cannot swallow it)."""


def _alarm(signum, frame):  # noqa: ARG001 - signal handler signature
    raise Hang()


# --------------------------------------------------------------------------- pipeline


def run_pipeline(path: str, fmt: str | None, html: bool, full_text: bool = True) -> None:
    """What ``diagnose``, ``explain`` (text and JSON) and ``report`` do with one file.

    ``full_text=False`` skips rich's rendering of the explained log line by line (most of
    the time per input, and only strings already built by ``explain``); the diagnosis,
    where numbers get formatted, is always rendered.
    """
    run = load_run(path, fmt)
    d = diagnose(run)
    x = explain(run)
    jsonout.dumps(jsonout.diagnosis_dict(d))
    jsonout.dumps(jsonout.explanation_dict(x))
    sink = io.StringIO()
    text.render_diagnosis(d, stream=sink)
    if full_text:
        text.render_explanation(x, stream=sink)
    if html:
        from migtune.report import ProxmoxExcerpt, render

        # As `migtune report` does: the log excerpt made during the parse, its notes
        # written from what it kept (whatever the size of the log).
        excerpt = ProxmoxExcerpt()
        run = load_run(path, fmt, observe=excerpt)
        render(run, (), excerpt)
        excerpt.rows(run, explain(run).metrics)


def signature(exc: BaseException) -> str:
    """Exception type and the innermost frame inside migtune's own code."""
    where = "?"
    frames = traceback.extract_tb(exc.__traceback__)
    for fr in reversed(frames):
        if f"{os.sep}migtune{os.sep}" in fr.filename:
            rel = fr.filename.split(f"{os.sep}migtune{os.sep}", 1)[1]
            where = f"{rel}:{fr.name}"
            break
    return f"{type(exc).__name__} at {where}"


# --------------------------------------------------------------------------- mutations

_NUM_RE = re.compile(rb"-?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?")
_HOSTILE_NUMBERS = [
    b"1e308",
    b"1e309",
    b"-1e308",
    b"1" + b"0" * 5000,
    b"9" * 30,
    str(2**64).encode(),
    str(2**63).encode(),
    b"-1",
    b"-123456789",
    b"NaN",
    b"nan",
    b"inf",
    b"-inf",
    b"Infinity",
    b"-Infinity",
    b"1.2.3",
    b"0",
    b"-0",
    b"0.0",
    b"1e-320",
    b"1" * 20000 + b"!",
    b"",
]
_WRONG_JSON = [[], {}, "x", None, True, 1e308, -1, -1.5, [1, 2], {"a": 1}, "NaN", "1.2.3", 0]


def _lines(data: bytes) -> list[bytes]:
    return data.split(b"\n")


def m_number(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    matches = list(_NUM_RE.finditer(data))
    if not matches:
        return data
    picked = rng.sample(matches, min(len(matches), rng.choice((1, 1, 2, 5))))
    for m in sorted(picked, key=lambda m: m.start(), reverse=True):  # end first: offsets hold
        repl = b"-" + m.group(0) if rng.random() < 0.3 else rng.choice(_HOSTILE_NUMBERS)
        data = data[: m.start()] + repl + data[m.end() :]
    return data


def m_all_numbers(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    repl = rng.choice(_HOSTILE_NUMBERS[:19])
    neg = rng.random() < 0.3
    return _NUM_RE.sub(lambda m: (b"-" + m.group(0)) if neg else repl, data)


def m_drop(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    lines = _lines(data)
    k = rng.randrange(len(lines))
    n = rng.choice((1, 1, 3, max(1, len(lines) // 2)))
    return b"\n".join(lines[:k] + lines[k + n :])


def m_duplicate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    lines = _lines(data)
    k = rng.randrange(len(lines))
    times = rng.choice((1, 2, 50))
    return b"\n".join(lines[: k + 1] + [lines[k]] * times + lines[k + 1 :])


def m_shuffle(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    lines = _lines(data)
    if rng.random() < 0.5:
        rng.shuffle(lines)
    else:
        a = rng.randrange(len(lines))
        b = min(len(lines), a + rng.randint(2, 10))
        part = lines[a:b]
        rng.shuffle(part)
        lines[a:b] = part
    return b"\n".join(lines)


def m_truncate(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    return data[: rng.randrange(len(data) + 1)]


def m_bad_utf8(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    junk = rng.choice((b"\xff", b"\xfe\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80", b"\xf4\x90"))
    k = rng.randrange(len(data) + 1)
    return data[:k] + junk + data[k:]


def m_nul(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    k = rng.randrange(len(data) + 1)
    return data[:k] + b"\x00" * rng.choice((1, 3, 20)) + data[k:]


def _mutate_json(rng: random.Random, obj, depth: int = 0):
    """Replace one value somewhere in ``obj`` with a value of the wrong type."""
    if isinstance(obj, dict) and obj and depth < 6:
        key = rng.choice(list(obj))
        if rng.random() < 0.4 or not isinstance(obj[key], (dict, list)):
            obj[key] = rng.choice(_WRONG_JSON)
        else:
            obj[key] = _mutate_json(rng, obj[key], depth + 1)
        return obj
    if isinstance(obj, list) and obj and depth < 6:
        i = rng.randrange(len(obj))
        obj[i] = _mutate_json(rng, obj[i], depth + 1)
        return obj
    return rng.choice(_WRONG_JSON)


def m_json_type(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    lines = _lines(data)
    json_idx = [i for i, line in enumerate(lines) if line.lstrip().startswith(b"{")]
    if not json_idx:
        return m_number(rng, data, corpus)
    for _ in range(rng.choice((1, 1, 3))):
        i = rng.choice(json_idx)
        try:
            obj = json.loads(lines[i])
        except ValueError:
            continue
        # Recording headers: the members the reader copies into the model.
        if isinstance(obj, dict) and obj.get("kind") == "header" and rng.random() < 0.5:
            obj[rng.choice(("meta", "settings", "t0", "qemu_version"))] = rng.choice(_WRONG_JSON)
        else:
            obj = _mutate_json(rng, obj)
        lines[i] = json.dumps(obj).encode()
    return b"\n".join(lines)


def m_one_line(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    lines = [line for line in _lines(data) if line.strip()]
    if rng.random() < 0.5:
        return b" ".join(lines)
    obj = next((line for line in lines if line.lstrip().startswith(b"{")), b'{"return": {}}')
    return b" ".join([obj.strip()] * rng.choice((10, 300, 2000)))


def m_long_line(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    lines = _lines(data)
    k = rng.randrange(len(lines))
    filler = rng.choice(
        (b"A", b"a", b"a-", b"1", b" ", b"{", b"[", b"1 ", b"9.", b"'a': ", b"# ", b"a=1,", b", ")
    )
    lines[k] = lines[k] + filler * rng.choice((1000, 50_000, 200_000))
    return b"\n".join(lines)


def m_splice(rng: random.Random, data: bytes, corpus: list[bytes]) -> bytes:
    other = _lines(rng.choice(corpus))
    lines = _lines(data)
    a = rng.randrange(len(other))
    k = rng.randrange(len(lines) + 1)
    return b"\n".join(lines[:k] + other[a : a + rng.randint(1, 20)] + lines[k:])


MUTATIONS: list[Callable[[random.Random, bytes, list[bytes]], bytes]] = [
    m_number,
    m_number,
    m_all_numbers,
    m_drop,
    m_duplicate,
    m_shuffle,
    m_truncate,
    m_bad_utf8,
    m_nul,
    m_json_type,
    m_json_type,
    m_one_line,
    m_long_line,
    m_splice,
]


def make_input(seed: int, i: int, corpus: list[bytes]) -> tuple[bytes, str | None]:
    """Input ``i`` of run ``seed``: the same bytes every time."""
    return mutate(random.Random(seed * 1_000_003 + i), corpus)


def mutate(rng: random.Random, corpus: list[bytes]) -> tuple[bytes, str | None]:
    """One mutant of a corpus file and the format to force (None: detect), drawn from ``rng``."""
    data = rng.choice(corpus)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        data = rng.choice(MUTATIONS)(rng, data, corpus)[:MAX_INPUT] or b"\n"
    fmt = rng.choice(FORMATS) if rng.random() < 0.1 else None
    return data, fmt


def load_corpus(extra: list[str]) -> list[bytes]:
    """The seed files.  The regression corpus is left out so that input ``i`` of a seed
    stays the same input when new crashes are saved."""
    files: list[Path] = []
    for d in [*CORPUS_DIRS, *map(Path, extra)]:
        files += sorted(
            p
            for p in d.rglob("*")
            if p.is_file() and p.suffix != ".md" and FUZZ_DIR not in p.parents
        )
    return [p.read_bytes() for p in files if p.stat().st_size <= MAX_INPUT]


# --------------------------------------------------------------------------- runner


@dataclass
class Outcome:
    kind: str  # "ok", "error" (a MigtuneError: fine), "crash", "hang"
    seconds: float
    sig: str = ""
    detail: str = ""


@dataclass
class Stats:
    run: int = 0
    ok: int = 0
    errors: int = 0
    crashes: dict[str, list[int]] = field(default_factory=dict)
    hangs: dict[str, list[int]] = field(default_factory=dict)
    slowest: tuple[float, int] = (0.0, -1)


def try_one(
    path: str,
    data: bytes,
    fmt: str | None,
    html: bool,
    timeout: float,
    verbose: bool = False,
    full_text: bool = True,
) -> Outcome:
    with open(path, "wb") as fh:
        fh.write(data)
    start = time.process_time()
    signal.setitimer(signal.ITIMER_PROF, timeout)
    try:
        run_pipeline(path, fmt, html, full_text)
        kind, sig, detail = "ok", "", ""
    except Hang as exc:
        kind, sig, detail = "hang", signature(exc), "timed out"
        if verbose:
            detail = "".join(traceback.format_exception(exc)[-24:])
    except MigtuneError:
        kind, sig, detail = "error", "", ""
    except RecursionError as exc:
        kind, sig, detail = "crash", signature(exc), "RecursionError"
    except Exception as exc:  # noqa: BLE001 - that is what a fuzzer looks for
        kind, sig, detail = "crash", signature(exc), f"{type(exc).__name__}: {exc}"[:300]
        if verbose:
            detail = "".join(traceback.format_exception(exc)[-24:])
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
    elapsed = time.process_time() - start
    if kind != "crash" and elapsed > timeout:
        kind, sig = "hang", sig or "slow"
        detail = detail if verbose else f"{elapsed:.1f} s"
    return Outcome(kind, elapsed, sig, detail)


def shrink(
    path: str, data: bytes, fmt: str | None, html: bool, timeout: float, sig: str, budget: int
) -> bytes:
    """Drop chunks of lines, then cut the longest line, while the same signature still
    reproduces (at most ``budget`` tries: a hang costs ``timeout`` seconds per try)."""
    lines = _lines(data)
    tries = 0

    def same(cand: list[bytes]) -> bool:
        nonlocal tries
        tries += 1
        return bool(cand) and try_one(path, b"\n".join(cand), fmt, html, timeout).sig == sig

    chunk = max(1, len(lines) // 2)
    while chunk >= 1 and tries < budget:
        i, changed = 0, False
        while i < len(lines) and tries < budget:
            cand = lines[:i] + lines[i + chunk :]
            if same(cand):
                lines, changed = cand, True
            else:
                i += chunk
        if not changed:
            chunk //= 2
    while tries < budget and lines:
        k = max(range(len(lines)), key=lambda j: len(lines[j]))
        if len(lines[k]) < 200:
            break
        cand = [*lines[:k], lines[k][: len(lines[k]) // 2], *lines[k + 1 :]]
        if not same(cand):
            break
        lines = cand
    return b"\n".join(lines)


def save(kind: str, sig: str, data: bytes, fmt: str | None) -> Path:
    FUZZ_DIR.mkdir(parents=True, exist_ok=True)
    slug = re.sub(r"[^A-Za-z0-9]+", "-", sig).strip("-").lower()[:60]
    digest = hashlib.sha1(data).hexdigest()[:8]
    suffix = f".{fmt}" if fmt else ""
    path = FUZZ_DIR / f"{kind}-{slug}-{digest}{suffix}.log"
    path.write_bytes(data)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=100_000, help="inputs to run (default 100000)")
    ap.add_argument("--seconds", type=float, default=None, help="stop after this long")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--start", type=int, default=0, help="first input index")
    ap.add_argument("--only", type=int, default=None, help="run just input INDEX, verbosely")
    ap.add_argument(
        "--timeout", type=float, default=2.0, help="CPU seconds per input that make a hang"
    )
    ap.add_argument(
        "--html-every", type=int, default=100, help="also render HTML every N (0: never)"
    )
    ap.add_argument(
        "--text-every", type=int, default=10, help="render the explained log as text every N"
    )
    ap.add_argument("--corpus", action="append", default=[], help="extra corpus directory")
    ap.add_argument("--progress", type=int, default=10_000, help="a progress line every N")
    ap.add_argument("--dump", default=None, help="with --only: write the input to this file")
    ap.add_argument("--no-save", action="store_true", help="do not write to tests/fixtures/fuzz")
    args = ap.parse_args(argv)

    corpus = load_corpus(args.corpus)
    if args.html_every or args.only is not None:
        import migtune.report  # noqa: F401 - matplotlib's import takes seconds: not a hang
    signal.signal(signal.SIGPROF, _alarm)
    tmpdir = "/dev/shm" if os.path.isdir("/dev/shm") else None
    fd, path = tempfile.mkstemp(prefix="migtune-fuzz-", suffix=".log", dir=tmpdir)
    os.close(fd)
    stats = Stats()
    began = time.perf_counter()
    indices = [args.only] if args.only is not None else range(args.start, args.start + args.count)
    try:
        for i in indices:
            if args.seconds and time.perf_counter() - began > args.seconds:
                break
            data, fmt = make_input(args.seed, i, corpus)
            html = bool(args.html_every) and i % args.html_every == 0
            verbose = args.only is not None
            full = verbose or (args.text_every > 0 and i % args.text_every == 0)
            out = try_one(path, data, fmt, html or verbose, args.timeout, verbose, full)
            stats.run += 1
            if args.progress and stats.run % args.progress == 0:
                crashes, hangs = (
                    sum(map(len, stats.crashes.values())),
                    sum(map(len, stats.hangs.values())),
                )
                print(
                    f"... {stats.run} inputs, {crashes} crashes, {hangs} hangs, "
                    f"{time.perf_counter() - began:.0f} s",
                    flush=True,
                )
            if out.seconds > stats.slowest[0]:
                stats.slowest = (out.seconds, i)
            if out.kind == "ok":
                stats.ok += 1
            elif out.kind == "error":
                stats.errors += 1
            else:
                table = stats.crashes if out.kind == "crash" else stats.hangs
                first = out.sig not in table
                table.setdefault(out.sig, []).append(i)
                if first:
                    print(f"[{i}] {out.kind}: {out.sig}: {out.detail}", flush=True)
                    if not args.no_save and args.only is None:
                        budget = 150 if out.kind == "crash" else 4
                        small = shrink(path, data, fmt, html, args.timeout, out.sig, budget)
                        print(f"      saved {save(out.kind, out.sig, small, fmt)}", flush=True)
            if args.only is not None:
                print(f"input {i} (format {fmt or 'detected'}, {len(data)} bytes): {out.kind}")
                print(out.detail)
                if args.dump:
                    Path(args.dump).write_bytes(data)
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        os.unlink(path)
    wall = time.perf_counter() - began
    n_crash = sum(map(len, stats.crashes.values()))
    n_hang = sum(map(len, stats.hangs.values()))
    print(f"inputs run:       {stats.run} (seed {args.seed}, corpus {len(corpus)} files)")
    print(f"clean / rejected: {stats.ok} / {stats.errors} (rejected = a one-line MigtuneError)")
    print(f"crashes:          {n_crash} ({len(stats.crashes)} distinct signatures)")
    for sig, idx in sorted(stats.crashes.items(), key=lambda kv: -len(kv[1])):
        print(f"  {len(idx):6d}  {sig}  (e.g. --only {idx[0]})")
    print(f"hangs (>{args.timeout:g} s):    {n_hang} ({len(stats.hangs)} distinct)")
    for sig, idx in stats.hangs.items():
        print(f"  {len(idx):6d}  {sig}  (e.g. --only {idx[0]})")
    print(f"slowest input:    {stats.slowest[0]:.3f} s CPU (--only {stats.slowest[1]})")
    print(f"wall time:        {wall:.1f} s ({stats.run / max(wall, 1e-9):.0f} inputs/s)")
    return 1 if n_crash or n_hang else 0


if __name__ == "__main__":
    sys.exit(main())
