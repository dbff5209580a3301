"""No input crashes or hangs ``load_run -> diagnose -> explain -> JSON/text (-> HTML)``.

* every file of ``tests/fixtures/fuzz/`` (what ``benchmarks/bench_fuzz.py`` found, each
  input that once crashed or hung, shrunk) goes through the whole pipeline: nothing but a
  one-line :class:`~migtune.errors.MigtuneError`, and within a generous time bound (these
  guard against hangs coming back; speed is measured by the benchmarks);
* the issue's hostile inputs (many JSON objects on one line, ``'1' * N + '!'`` sizes, a
  long HMP transcript), built here at a modest size, same checks;
* a fast hypothesis slice of the fuzzer: mutants of the examples and fixtures, drawn by
  hypothesis so a failure shrinks and is replayed.
"""

from __future__ import annotations

import importlib.util
import io
import random
import signal
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import FIXTURES, REPO
from migtune.analysis.diagnose import diagnose
from migtune.analysis.explain import explain
from migtune.errors import MigtuneError
from migtune.outputs import jsonout, text
from migtune.report import build_report
from migtune.sources import FORMATS, load_run

FUZZ_DIR = FIXTURES / "fuzz"
FUZZ_FILES = sorted(p for p in FUZZ_DIR.iterdir() if p.is_file()) if FUZZ_DIR.is_dir() else []
TIME_BOUND = 5.0  # seconds per input: generous for a loaded 2-core machine


def _benchmark(name: str):
    """A benchmark script as a module (benchmarks/ is not a package: load it by path)."""
    path = REPO / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(name, module)
    spec.loader.exec_module(module)
    return module


class _TooSlow(BaseException):
    pass


def _alarm(signum, frame):  # noqa: ARG001
    raise _TooSlow()


def pipeline(path: Path, fmt: str | None = None, html: bool = False) -> str:
    """Everything ``diagnose``, ``explain [--json]`` and ``report`` do; "ok" or "refused"."""
    try:
        run = load_run(path, fmt)
    except MigtuneError as exc:
        assert "\n" not in str(exc), "errors are one line"
        return "refused"
    d = diagnose(run)
    x = explain(run)
    jsonout.dumps(jsonout.diagnosis_dict(d))
    jsonout.dumps(jsonout.explanation_dict(x))
    sink = io.StringIO()
    text.render_diagnosis(d, stream=sink)
    text.render_explanation(x, stream=sink)
    assert sink.getvalue()
    if html:
        assert build_report(run).lstrip().lower().startswith("<!doctype html")
    return "ok"


def timed_pipeline(path: Path, fmt: str | None = None, html: bool = False) -> str:
    """:func:`pipeline` under an alarm, so a hang fails the test instead of stalling it."""
    old = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, TIME_BOUND * 4)
    start = time.perf_counter()
    try:
        result = pipeline(path, fmt, html)
    except _TooSlow:
        pytest.fail(f"{path.name}: still running after {TIME_BOUND * 4:g} s")
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_BOUND, f"{path.name}: {elapsed:.1f} s"
    return result


def _forced_format(path: Path) -> str | None:
    """The fuzzer names inputs that force a format ``<name>.<format>.log``."""
    suffix = Path(path.stem).suffix.lstrip(".")
    return suffix if suffix in FORMATS else None


@pytest.mark.parametrize("path", FUZZ_FILES, ids=[p.name for p in FUZZ_FILES])
def test_fuzz_regression_corpus(path):
    html = FUZZ_FILES.index(path) % 3 == 0  # the report for a third of them: it is slower
    assert timed_pipeline(path, _forced_format(path), html) in ("ok", "refused")


def test_fuzz_corpus_is_there():
    """The corpus is what the other test runs over: an empty one would prove nothing."""
    assert len(FUZZ_FILES) >= 5


# --------------------------------------------------------------------------- hostile inputs

_REPLY = (
    '{"return": {"status": "active", "total-time": %d, "ram": {"transferred": %d, '
    '"remaining": 1048576000, "total": 4294967296, "mbps": 800.5, "dirty-sync-count": 3}}} '
)


def test_many_json_objects_on_one_line(tmp_path):
    """Was quadratic: the text before each object was re-read from the line's start."""
    path = tmp_path / "one-line.json"
    path.write_text("".join(_REPLY % (i * 1000, i * 10**8) for i in range(1, 4001)) + "\n")
    assert timed_pipeline(path) == "ok"
    assert len(load_run(path).samples) == 4000


def test_long_digit_run_in_a_virsh_log(tmp_path):
    """``'1' * N + '!'`` as a size: the size regex backtracked (13.8 s at N = 20,000)."""
    path = tmp_path / "virsh.txt"
    path.write_text(
        "Job type:         Unbounded\nOperation:        Outgoing migration\n"
        "Time elapsed:     47301        ms\nMemory processed: " + "1" * 200_000 + "! GiB\n"
        "Memory remaining: 1.000 GiB\nMemory total:     4.002 GiB\n"
    )
    assert timed_pipeline(path, html=True) == "ok"


def test_long_hmp_transcript(tmp_path):
    lines = []
    for i in range(1, 1001):
        lines += [
            "(qemu) info migrate",
            "Migration status: active",
            f"total time: {i * 1000} ms",
            f"transferred ram: {i * 100_000} kbytes",
            "remaining ram: 1048576 kbytes",
            "total ram: 4194304 kbytes",
            f"dirty sync count: {1 + i // 10}",
        ]
    path = tmp_path / "hmp.txt"
    path.write_text("\n".join(lines) + "\n")
    assert timed_pipeline(path) == "ok"
    assert len(load_run(path).samples) == 1000


def test_report_of_a_log_past_one_tib(tmp_path):
    """Was quadratic in the report's throughput series (a 1.8 MB log took 178 s)."""
    path = tmp_path / "tib.log"
    _benchmark("bench_stream").write_tib_log(str(path), 15_000)
    assert timed_pipeline(path, html=True) == "ok"


# --------------------------------------------------------------------------- hypothesis slice


@pytest.fixture(scope="module")
def fuzzer():
    module = _benchmark("bench_fuzz")  # the fuzzer's mutation engine
    corpus = [
        p.read_bytes()
        for d in (REPO / "examples", FIXTURES)
        for p in sorted(d.rglob("*"))
        if p.is_file() and p.suffix != ".md" and p.parent.name != "fuzz"
        and p.stat().st_size <= 200_000
    ]  # fmt: skip
    return module, corpus


@settings(
    max_examples=300,
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(rng=st.randoms(use_true_random=False))
def test_mutants_never_crash(fuzzer, tmp_path_factory, rng: random.Random):
    module, corpus = fuzzer
    data, fmt = module.mutate(rng, corpus)
    path = tmp_path_factory.mktemp("mutant") / "input.log"
    path.write_bytes(data)
    # Text and JSON only: the HTML report is covered by the corpus test above.
    assert timed_pipeline(path, fmt) in ("ok", "refused")
