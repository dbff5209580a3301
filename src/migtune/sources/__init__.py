"""Sources: turn a migration log of any supported format into a :class:`~migtune.model.Run`.

Each format lives in its own module exposing:

* ``FORMAT`` - the name used by ``--format`` and in JSON output;
* ``sniff(lines) -> float`` - confidence 0..1 that the (first ~200) lines are this format;
* ``parse(lines) -> Run`` - the whole log; never raises on odd lines (they become
  ``run.warnings`` and ``run.partial``), raises :class:`~migtune.errors.InputError`
  only when nothing at all could be recognised.

``load_run`` is the entry point that everything else uses.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path

from migtune.errors import InputError
from migtune.model import Run, Settings
from migtune.sources._bounds import check_run

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
MAX_BYTES = 2 * 1024**3  # refuse to slurp absurdly large files


def _module(fmt: str):
    try:
        return importlib.import_module(FORMAT_MODULES[fmt])
    except KeyError:
        raise InputError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})") from None


def read_text(path: str | Path) -> str:
    """Read a log file as text; a clear InputError for missing, binary or empty files."""
    p = Path(path)
    try:
        if p.is_dir():
            raise InputError(f"{path}: is a directory, not a log file")
        raw = p.read_bytes() if str(path) != "-" else _stdin_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: no such file") from None
    except PermissionError:
        raise InputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    if len(raw) > MAX_BYTES:
        raise InputError(f"{path}: file is larger than 2 GiB; cut it to the migration task first")
    sample = raw[:65536]
    if sample.count(b"\x00") > max(8, len(sample) // 100):
        raise InputError(f"{path}: looks like a binary file, not a migration log")
    text = raw.decode("utf-8", errors="replace")
    if not text.strip():
        raise InputError(f"{path}: file is empty")
    return text


def _stdin_bytes() -> bytes:
    import sys

    return sys.stdin.buffer.read()


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
    """Blank out a leading block of ``# ...`` comment lines (as in ../shared/logs).

    Returns the lines with the comments replaced by empty strings, so line numbers
    still match the file, and the comments themselves.
    """
    comments: list[str] = []
    body = list(lines)
    for i, line in enumerate(lines):
        if line.startswith("#"):
            comments.append(line.lstrip("# ").rstrip())
            body[i] = ""
        elif line.strip():
            break
    return body, comments


def parse_text(text: str, fmt: str | None = None, name: str = "<input>") -> Run:
    """Parse log text into a Run, detecting the format unless ``fmt`` is given."""
    lines = text.splitlines()
    body, comments = split_header_comments(lines)
    if not any(line.strip() for line in body):
        raise InputError(f"{name}: no log lines")
    chosen = fmt or detect_format([line for line in body if line.strip()], name)
    try:
        run = _module(chosen).parse(body)
    except InputError as exc:
        raise InputError(
            exc.message if exc.message.startswith(name) else f"{name}: {exc}"
        ) from None
    if _recognised_nothing(run):
        # Typically a forced --format that fits nothing in the file: an empty diagnosis
        # would look like an answer.
        raise InputError(f"{name}: nothing in it reads as a {chosen} migration log")
    check_run(run)
    run.lines = lines
    if comments:
        run.meta["comments"] = comments
    return run


def _recognised_nothing(run: Run) -> bool:
    """No sample, no settings and no event but those made of lines not understood."""
    return (
        not run.samples
        and run.settings == Settings()
        and all(isinstance(e.data, dict) and e.data.get("unrecognised") for e in run.events)
    )


def load_run(path: str | Path, fmt: str | None = None) -> Run:
    """Read and parse a migration log, recording or simulation file."""
    text = read_text(path)
    run = parse_text(text, fmt, name=str(path))
    run.meta.setdefault("path", str(path))
    return run
