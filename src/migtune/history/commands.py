"""What each ``migtune history`` command does, as library calls (the CLI only prints)."""

from __future__ import annotations

import csv
import io
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import IO, Any

from migtune import __version__
from migtune.errors import InputError, MigtuneError
from migtune.history.entries import (
    LIST_KEYS,
    calibration_brief,
    compress_file,
    detailed,
    listed,
    parse_since,
    run_row,
)
from migtune.history.store import HistoryStore, open_store
from migtune.model import Run

Db = str | os.PathLike[str] | None


@dataclass
class AddResult:
    added: list[tuple[str, int]] = field(default_factory=list)  # (file, run id)
    duplicates: list[tuple[str, int]] = field(default_factory=list)  # already stored as id
    errors: list[str] = field(default_factory=list)  # one line per file that failed
    db_path: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {
            "db": self.db_path,
            "added": [{"file": f, "id": i} for f, i in self.added],
            "duplicates": [{"file": f, "id": i} for f, i in self.duplicates],
            "errors": self.errors,
        }


def _load(path: str) -> Run:
    """``load_run``, every error naming the file (as the other commands' errors do)."""
    from migtune.sources import load_run

    try:
        return load_run(path)
    except MigtuneError as exc:
        if path not in exc.message:
            exc.message = f"{path}: {exc.message}"
            exc.args = (exc.message,)
        raise


def add_logs(paths: Iterable[str], *, vm: str | None = None, db: Db = None) -> AddResult:
    """Read each log (any format ``load_run`` reads) and store it; a file that cannot be
    read is one line in ``errors`` and the others are still added."""
    paths = list(paths)
    store = open_store(db)
    result = AddResult(db_path=str(store.path))
    try:
        for path in paths:
            try:
                if path == "-":
                    raise InputError("-: history add needs files (the text is stored)")
                run = _load(path)
                text = compress_file(path)
                row = run_row(run, text, origin="add", vm=vm, source=os.path.abspath(path))
                run_id, new = store.add_run(row)
            except MigtuneError as exc:
                result.errors.append(str(exc))
                continue
            except (OSError, ValueError) as exc:  # a NUL in the name, a vanished file
                result.errors.append(f"{path!r}: {exc}")
                continue
            (result.added if new else result.duplicates).append((path, run_id))
    finally:
        store.close()
    return result


def record_run(
    run: Run,
    raw: bytes,
    *,
    origin: str,
    db: Db = None,
    **kw: Any,
) -> int:
    """Store a run that migtune just made (``migrate``, ``lab``, ``simulate``); its id."""
    store = open_store(db)
    try:
        run_id, _ = store.add_run(run_row(run, raw, origin=origin, **kw))
    finally:
        store.close()
    return run_id


def list_runs(
    *, vm: str | None = None, since: str | None = None, db: Db = None
) -> list[dict[str, Any]]:
    """The runs in the history (oldest first), as the ``history list --json`` objects."""
    cutoff = parse_since(since) if since else None
    store = open_store(db, create=False)
    if store is None:
        return []
    try:
        return [listed(r) for r in store.runs(vm=vm, since=cutoff)]
    finally:
        store.close()


def _need(store: HistoryStore | None, run_id: int, db: Db) -> HistoryStore:
    if store is None:
        raise InputError(f"no run #{run_id} in the history (there is no history yet)")
    return store


def show_run(run_id: int, *, db: Db = None) -> dict[str, Any]:
    """One run with its outcome, settings and calibrations (``history show --json``)."""
    store = _need(open_store(db, create=False), run_id, db)
    try:
        row = store.run(run_id)
        if row is None:
            raise InputError(f"no run #{run_id} in the history ({store.path})")
        return detailed(row, store.calibrations(run_id=run_id))
    finally:
        store.close()


def raw_text(run_id: int, *, db: Db = None) -> bytes:
    """The recording or log text of a run, as it was stored."""
    store = _need(open_store(db, create=False), run_id, db)
    try:
        if store.run(run_id) is None:
            raise InputError(f"no run #{run_id} in the history ({store.path})")
        raw = store.raw_text(run_id)
    finally:
        store.close()
    if raw is None:
        raise InputError(f"run #{run_id}: its text was too big to keep (only the summary is)")
    return raw


def export_runs(fmt: str, out: IO[str], *, db: Db = None) -> int:
    """Write every run (and for JSON every calibration) to ``out``; the number of runs."""
    if fmt not in ("csv", "json"):
        raise InputError(f"--format: {fmt!r} is not csv or json")
    store = open_store(db, create=False)
    rows: list[dict[str, Any]] = []
    cals: list[dict[str, Any]] = []
    if store is not None:
        try:
            stored = store.calibrations()
            by_run: dict[int, list[dict[str, Any]]] = {}
            for c in stored:
                for rid in json.loads(c["run_ids"] or "[]"):
                    by_run.setdefault(rid, []).append(c)
            rows = [detailed(r, by_run.get(r["id"], [])) for r in store.runs()]
            cals = [calibration_brief(c) for c in stored]
        finally:
            store.close()
    if fmt == "json":
        doc = {"migtune_version": __version__, "runs": rows, "calibrations": cals}
        out.write(json.dumps(doc, indent=2, default=str) + "\n")
        return len(rows)
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow([*LIST_KEYS, "settings"])
    for r in rows:
        cells = [_cell(r[k]) for k in LIST_KEYS]
        writer.writerow([*cells, json.dumps(r["settings"], sort_keys=True)])
    return len(rows)


def _cell(v: Any) -> Any:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"  # as in the JSON export
    return v


def export_text(fmt: str, *, db: Db = None) -> str:
    buf = io.StringIO()
    export_runs(fmt, buf, db=db)
    return buf.getvalue()
