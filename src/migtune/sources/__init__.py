"""Sources: turn a migration log of any supported format into a :class:`~migtune.model.Run`.

Each format lives in its own module exposing:

* ``FORMAT`` - the name used by ``--format`` and in JSON output;
* ``sniff(lines) -> float`` - confidence 0..1 that the (first ~200) lines are this format;
* ``parse(lines) -> Run`` - the whole log, given as an iterator of lines that is read
  once (parsers keep state, not lines); never raises on odd lines (they become
  ``run.warnings`` and ``run.partial``), raises :class:`~migtune.errors.InputError`
  only when nothing at all could be recognised.

``load_run`` is the entry point that everything else uses.
"""

from __future__ import annotations

import collections
import contextlib
import gc
import importlib
import itertools
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from migtune.bounded import EventList, SampleList
from migtune.errors import InputError
from migtune.model import Run, Settings
from migtune.sources._bounds import check_run
from migtune.sources._common import warn
from migtune.sources.errorlines import ErrorLines
from migtune.sources.linesource import MAX_LINE_CHARS, LineSource

# Order matters only for ties in sniffing.
FORMAT_MODULES = {
    "qmp": "migtune.sources.qmp",
    "hmp": "migtune.sources.hmp",
    "libvirt": "migtune.sources.libvirt",
    "nova": "migtune.sources.nova",
    "proxmox": "migtune.sources.proxmox",
}
FORMATS = tuple(FORMAT_MODULES)
SNIFF_LINES = 200


def _module(fmt: str):
    try:
        return importlib.import_module(FORMAT_MODULES[fmt])
    except KeyError:
        raise InputError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})") from None


def detect_format(lines: Sequence[str], name: str = "<input>") -> str:
    """The most likely format of these lines, or InputError (naming ``name``) if none fits."""
    head = list(lines[:SNIFF_LINES])
    best, best_score = None, 0.0
    for fmt in FORMATS:
        score = _module(fmt).sniff(head)
        if score > best_score:
            best, best_score = fmt, score
    if best is None or best_score < 0.2:
        raise InputError(
            f"{name}: unrecognised log format: expected a Proxmox task log, QMP query-migrate output, "
            "HMP 'info migrate', 'virsh domjobinfo' or nova-compute lines (use --format to force one)"
        )
    return best


def split_header_comments(lines: list[str]) -> tuple[list[str], list[str]]:
    """Blank out a leading block of ``# ...`` comment lines (as in tests/fixtures/real).

    Returns the lines with the comments replaced by empty strings, so line numbers
    still match the file, and the comments themselves.
    """
    comments: list[str] = []
    body = list(blank_header_comments(iter(lines), comments))
    return body, comments


def parse_text(text: str, fmt: str | None = None, name: str = "<input>") -> Run:
    """Parse log text into a Run, detecting the format unless ``fmt`` is given."""
    return parse_lines(text.splitlines(), fmt, name)


class LineWindow:
    """The last few batches of lines the parse read, by line number.

    For an observer of a Proxmox parse (:func:`parse_lines` ``observe``): a record
    comes out a line or two after its line was read, and the lines that make no record
    (an xbzrle line folded into the progress sample before it) are looked up here.
    """

    __slots__ = ("_batches", "end")

    def __init__(self) -> None:
        self._batches: collections.deque[tuple[int, list[str]]] = collections.deque(maxlen=3)
        self.end = 0  # number of the last line read

    def push(self, batch: list[str]) -> None:
        self._batches.append((self.end + 1, batch))
        self.end += len(batch)

    def text(self, no: int) -> str | None:
        """Line ``no`` if it is still in the window, else None."""
        found = self.batch_of(no)
        return None if found is None else found[1][no - found[0]]

    def batch_of(self, no: int) -> tuple[int, list[str]] | None:
        """(number of its first line, batch) of the batch holding line ``no``, or None."""
        for first, batch in reversed(self._batches):
            if no >= first:
                return (first, batch) if no - first < len(batch) else None
        return None


def parse_lines(
    source: Iterable[str],
    fmt: str | None = None,
    name: str = "<input>",
    observe: Callable[[Any], None] | None = None,
) -> Run:
    """Parse a log given as lines: a list, or a :class:`LineSource` read once, as a stream.

    Only the first lines are held to detect the format; the parser then consumes the
    rest one line at a time.  ``run.lines`` is ``source`` itself, so ``explain`` can read
    the lines again without this function having kept them.

    ``observe`` (Proxmox logs only): called with each record of the parse, in line
    order, after ``observe.start(window)`` gave it a :class:`LineWindow` over the lines
    read; so one pass can do what would otherwise need a second read of a huge log.
    """
    cut: list[tuple[int, int]] = []
    if isinstance(source, LineSource):
        batches = source.batches(on_cut=lambda no, length: cut.append((no, length)))
    else:
        batches = _batched(iter(source))
    comments: list[str] = []
    errors = ErrorLines()
    window = LineWindow() if observe is not None else None
    body = _body(batches, errors, comments, window)
    head: list[str] = []
    seen = 0
    for line in body:
        head.append(line)
        if line.strip():
            seen += 1
            if seen >= SNIFF_LINES:
                break
    if not seen:
        raise InputError(f"{name}: no log lines")
    chosen = fmt or detect_format([line for line in head if line.strip()], name)
    try:
        if observe is not None and chosen == "proxmox":
            observe.start(window)  # type: ignore[attr-defined]
            run = _module(chosen).parse(itertools.chain(head, body), observe=observe)
        else:
            run = _module(chosen).parse(itertools.chain(head, body))
    except InputError as exc:
        raise InputError(
            exc.message if exc.message.startswith(name) else f"{name}: {exc}"
        ) from None
    for _ in body:  # a parser that stopped early: the error lines still see the rest
        pass
    if _recognised_nothing(run):
        # Typically a forced --format that fits nothing in the file: an empty diagnosis
        # would look like an answer.
        raise InputError(f"{name}: nothing in it reads as a {chosen} migration log")
    check_run(run)
    run.lines = source
    run.error_lines = errors.close()
    if comments:
        run.meta["comments"] = comments
    _note_bounds(run, cut)
    return run


def _recognised_nothing(run: Run) -> bool:
    """No sample, no settings and no event but those made of lines not understood."""
    return (
        not run.samples
        and run.settings == Settings()
        and all(isinstance(e.data, dict) and e.data.get("unrecognised") for e in run.events)
    )


def _batched(lines: Iterator[str], size: int = 1024) -> Iterator[list[str]]:
    while batch := list(itertools.islice(lines, size)):
        yield batch


def _body(
    batches: Iterable[list[str]],
    errors: ErrorLines,
    comments: list[str],
    window: LineWindow | None = None,
) -> Iterator[str]:
    """One pass over the source: header comments blanked, error lines collected.

    The work is done per batch; the lines come out of ``chain`` (in C, no generator
    step per line of a 10-million-line log).
    """
    return itertools.chain.from_iterable(_fed(batches, errors, comments, window))


def _fed(
    batches: Iterable[list[str]],
    errors: ErrorLines,
    comments: list[str],
    window: LineWindow | None,
) -> Iterator[list[str]]:
    in_header = True
    for batch in batches:
        read = batch  # as read, for the window: explain shows the comments as they are
        if in_header:
            if window is not None:
                read = list(batch)
            for i, line in enumerate(batch):
                if line.startswith("#"):
                    comments.append(line.lstrip("# ").rstrip())
                    batch[i] = ""
                elif line.strip():
                    in_header = False
                    break
        errors.feed(batch)
        if window is not None:
            window.push(read)
        yield batch


def blank_header_comments(lines: Iterator[str], comments: list[str]) -> Iterator[str]:
    """The leading ``#`` block becomes blank lines, as a stream; ``comments`` gets its text."""
    for line in lines:
        if line.startswith("#"):
            comments.append(line.lstrip("# ").rstrip())
            yield ""
            continue
        yield line
        if line.strip():
            break
    yield from lines


def _note_bounds(run: Run, cut: list[tuple[int, int]]) -> None:
    """Say what was left out to keep memory bounded (cut lines, thinned samples/events)."""
    for no, length in cut[:5]:
        warn(
            run,
            f"line {no} is {length:,} characters long: only its first {MAX_LINE_CHARS:,} were read",
        )
    if len(cut) > 5:
        warn(run, f"{len(cut) - 5} more overlong lines cut")
    samples, events = run.samples, run.events
    if isinstance(samples, SampleList) and samples.thinned:
        seen, kept = samples.seen, len(samples)
        run.meta["samples_thinned"] = {"seen": seen, "kept": kept, "stride": samples.stride}
        # Not a problem of the log (run.partial stays as it is): a note on what is kept.
        run.warnings.append(
            f"{seen:,} samples thinned to {kept:,} to bound memory (every {samples.stride}th "
            "sample plus every change of status, pass or throttle); totals, extremes and "
            "pass counts are over all samples"
        )
    if isinstance(events, EventList) and events.thinned:
        kinds = events.thinned_kinds()
        run.meta["events_thinned"] = {k: {"seen": a, "kept": b} for k, (a, b) in kinds.items()}
        what = ", ".join(f"{a:,} '{k}' events to {b:,}" for k, (a, b) in kinds.items())
        run.warnings.append(f"thinned {what} to bound memory")


@contextlib.contextmanager
def fewer_collections(threshold: int = 100_000) -> Iterator[None]:
    """Run the cyclic garbage collector less often while a log streams past.

    A parse makes a record per line (millions of small objects, none in a cycle: freed
    by reference counting as soon as they are thinned away), and the objects it keeps
    (samples, a window of recent ones) grow old; with the default threshold the
    collector runs every 700 allocations and keeps re-scanning those: 15-40 % of the
    time of a big log.  Restores the thresholds when the last such stream is done
    (streams may end in any order: an abandoned generator is closed when it is freed).
    """
    if not _RELAXED:
        _RELAXED.append(gc.get_threshold())
        old = _RELAXED[0]
        gc.set_threshold(max(old[0], threshold), *old[1:])
    _RELAXED.append(None)
    try:
        yield
    finally:
        _RELAXED.pop()
        if len(_RELAXED) == 1:
            gc.set_threshold(*_RELAXED.pop())


_RELAXED: list = []  # [thresholds to restore, one None per stream going on]


def load_run(
    path: str | Path, fmt: str | None = None, observe: Callable[[Any], None] | None = None
) -> Run:
    """Read and parse a migration log, recording or simulation file, as a stream.

    ``-`` reads standard input (spooled to a temporary file so ``explain`` can read
    it again).  Memory stays bounded whatever the size of the file: see
    :mod:`migtune.sources.linesource` and :mod:`migtune.bounded`.
    """
    source = LineSource.from_stdin() if str(path) == "-" else LineSource(path)
    source.check()
    with fewer_collections():
        run = parse_lines(source, fmt, name=str(path), observe=observe)
    run.meta.setdefault("path", str(path))
    return run
