"""The history database: where it lives, how it is opened safely, rows in and out.

Safety rules, in the order they are applied when a file is opened:

* a file that is not SQLite, another program's SQLite file, a corrupted one or one of
  a newer schema is refused with a one-line :class:`InputError` after looking at it
  read-only: it is never written, so its bytes stay exactly as they were;
* only then is it opened for writing: WAL journal (readers never block the writer),
  a busy timeout (a second writer waits instead of failing), and the schema migrated
  in one ``BEGIN IMMEDIATE`` transaction that re-reads the version first, so two
  processes opening an old file at once migrate it once.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
import urllib.parse
import zlib
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlite_utils import Database

from migtune.errors import InputError
from migtune.history.schema import APPLICATION_ID, SCHEMA_VERSION, upgrade

BUSY_TIMEOUT_S = 30.0  # a second writer waits this long for the first one's transaction
SQLITE_MAGIC = b"SQLite format 3\x00"


def default_path() -> Path:
    """``$MIGTUNE_DB``, else ``$XDG_DATA_HOME/migtune/history.db``, else
    ``~/.local/share/migtune/history.db`` (the XDG base directory convention)."""
    env = os.environ.get("MIGTUNE_DB")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg) if xdg and Path(xdg).is_absolute() else Path.home() / ".local" / "share"
    return base / "migtune" / "history.db"


def resolve(path: str | os.PathLike[str] | None) -> tuple[Path, bool]:
    """(the database path, whether it is the default one: only that one's directory is
    created on demand; a ``--db`` in a missing directory is a typo to report)."""
    if path is None or str(path) == "":
        return default_path(), not os.environ.get("MIGTUNE_DB")
    return Path(path).expanduser(), False


def now_iso() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def iso_from_epoch(t: float | None) -> str | None:
    if t is None:
        return None
    try:
        return datetime.fromtimestamp(float(t), UTC).isoformat(timespec="seconds")
    except (OverflowError, OSError, ValueError):
        return None  # a clock far outside what datetime holds: not a time worth keeping


def _ro_uri(path: Path) -> str:
    """Read-only, and without a WAL file next to it also ``immutable``: SQLite then
    creates no ``-wal``/``-shm`` files either (a read-only open of a WAL-mode file
    otherwise leaves them behind, next to a file that may not even be ours)."""
    uri = "file:" + urllib.parse.quote(str(path.resolve())) + "?mode=ro"
    if not Path(f"{path}-wal").exists():
        uri += "&immutable=1"
    return uri


def inspect(path: Path) -> int | None:
    """The schema version of an existing migtune history at ``path``, or None when there
    is nothing there yet (no file, an empty file, an empty SQLite database).

    Raises InputError, without writing anything, for a file that is not SQLite, a
    foreign or corrupted SQLite file, or a newer schema."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(100)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise InputError(f"{path}: is a directory, not a history database") from None
    except OSError as exc:
        raise InputError(f"{path}: cannot read the history database ({exc.strerror})") from None
    if not head:
        return None
    if not head.startswith(SQLITE_MAGIC):
        raise InputError(f"{path}: not a migtune history database (not an SQLite file); left as is")
    for attempt in range(3):
        try:
            return _identify(path)
        except InputError:
            # A writer that checkpointed while the file was read without locks
            # (immutable) can make a sound file look torn; it leaves its WAL file
            # behind while it works, and with one there the next read takes locks.
            if attempt == 2 or not Path(f"{path}-wal").exists():
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")


def _identify(path: Path) -> int | None:
    try:
        conn = sqlite3.connect(_ro_uri(path), uri=True, timeout=BUSY_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise InputError(f"{path}: cannot open the history database ({exc})") from None
    try:
        app_id = conn.execute("PRAGMA application_id").fetchone()[0]
        version = conn.execute("PRAGMA user_version").fetchone()[0]
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        raise InputError(
            f"{path}: corrupted SQLite file ({exc}); left as is (move it away to start a "
            "new history)"
        ) from None
    finally:
        conn.close()
    if check != "ok":
        raise InputError(
            f"{path}: corrupted SQLite file (integrity check: {check}); left as is (move it "
            "away to start a new history)"
        )
    if app_id != APPLICATION_ID:
        if not tables and version == 0:
            return None  # an empty SQLite database (e.g. made by `sqlite3 FILE ''`)
        what = ", ".join(tables[:5]) or "no tables"
        raise InputError(
            f"{path}: not a migtune history database (an SQLite file of another program: "
            f"{what}); left as is"
        )
    if version > SCHEMA_VERSION:
        raise InputError(
            f"{path}: history schema version {version} is newer than this migtune knows "
            f"({SCHEMA_VERSION}): use a newer migtune; the file is left as is"
        )
    return version


class HistoryStore:
    """An open history database (use :func:`open_store`)."""

    def __init__(self, db: Database, path: Path):
        self.db = db
        self.path = path

    def close(self) -> None:
        self.db.close()

    @contextlib.contextmanager
    def write(self) -> Iterator[Database]:
        """One write transaction, taking the write lock at once (``BEGIN IMMEDIATE``): a
        deferred one that read first could not wait for another writer and would fail."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.conn.rollback()
            raise
        self.db.execute("COMMIT")

    # -- runs ------------------------------------------------------------------------

    def add_run(self, row: dict[str, Any]) -> tuple[int, bool]:
        """Insert a run; (its id, True) or, when the same text is already stored for the
        same VM, (that run's id, False)."""
        with self.write() as db:
            sha, vm = row.get("raw_sha256"), row.get("vm")
            if sha:
                same = db.execute(
                    "SELECT id FROM runs WHERE raw_sha256 = ? AND vm IS ? ORDER BY id LIMIT 1",
                    [sha, vm],
                ).fetchone()
                if same:
                    return int(same[0]), False
            table = db["runs"]
            table.insert(row)
            return int(table.last_pk), True

    def runs(
        self, *, vm: str | None = None, since: str | None = None, last: int | None = None
    ) -> list[dict[str, Any]]:
        """Runs without their raw text, oldest first (``last``: only the N most recent)."""
        where, args = [], []
        if vm is not None:
            where.append("vm = ?")
            args.append(vm)
        if since is not None:
            where.append("at >= ?")
            args.append(since)
        sql = f"SELECT {self._columns()} FROM runs"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY at DESC, id DESC"
        if last is not None:
            sql += f" LIMIT {int(last)}"
        rows = [dict(r) for r in self._query(sql, args)]
        return list(reversed(rows))

    def run(self, run_id: int) -> dict[str, Any] | None:
        rows = list(self._query(f"SELECT {self._columns()} FROM runs WHERE id = ?", [run_id]))
        return dict(rows[0]) if rows else None

    def _columns(self) -> str:
        """Every column but the text itself (it can be megabytes), and whether it is kept."""
        cols = [c.name for c in self.db["runs"].columns if c.name != "raw"]
        return ", ".join(cols) + ", raw IS NOT NULL AS raw_stored"

    def raw_text(self, run_id: int) -> bytes | None:
        found = self.db.execute(
            "SELECT raw, raw_encoding FROM runs WHERE id = ?", [run_id]
        ).fetchone()
        if not found or found[0] is None:
            return None
        raw, encoding = found
        return zlib.decompress(raw) if encoding == "zlib" else bytes(raw)

    # -- calibrations ----------------------------------------------------------------

    def add_calibration(self, row: dict[str, Any]) -> int:
        with self.write() as db:
            table = db["calibrations"]
            table.insert(row)
            return int(table.last_pk)

    def calibrations(self, *, vm: str | None = None, run_id: int | None = None) -> list[dict]:
        rows = [dict(r) for r in self._query("SELECT * FROM calibrations ORDER BY id", [])]
        if vm is not None:
            rows = [r for r in rows if r["vm"] == vm]
        if run_id is not None:
            rows = [r for r in rows if run_id in json.loads(r["run_ids"] or "[]")]
        return rows

    def _query(self, sql: str, args: list[Any]) -> Iterator[sqlite3.Row]:
        cur = self.db.conn.cursor()
        cur.row_factory = sqlite3.Row
        yield from cur.execute(sql, args)


def open_store(path: str | os.PathLike[str] | None = None, *, create: bool = True):
    """Open (and create or migrate) the history; None when ``create`` is false and there
    is no history yet (reading commands never create a file)."""
    where, default = resolve(path)
    version = inspect(where)
    if version is None and not create:
        return None
    if version is None:
        if default:
            try:
                where.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise InputError(f"{where.parent}: cannot create ({exc.strerror})") from None
        elif not where.parent.is_dir():
            raise InputError(f"{where}: no such directory for the history database")
    try:
        conn = sqlite3.connect(str(where), timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except sqlite3.Error as exc:
        raise InputError(f"{where}: cannot open the history database ({exc})") from None
    db = Database(conn, execute_plugins=False)
    try:
        _prepare(db, where)
    except sqlite3.Error as exc:
        db.close()
        raise InputError(f"{where}: cannot use the history database ({exc})") from None
    except BaseException:
        db.close()
        raise
    return HistoryStore(db, where)


def _prepare(db: Database, where: Path) -> None:
    db.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
    if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
        db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")  # durable at checkpoints; WAL keeps it safe
    db.execute("BEGIN IMMEDIATE")
    try:
        # Read again under the write lock: another process may have created or
        # migrated the file since inspect() looked.
        app_id = db.execute("PRAGMA application_id").fetchone()[0]
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if app_id not in (0, APPLICATION_ID) or (app_id == 0 and db.table_names()):
            raise InputError(f"{where}: not a migtune history database; left as is")
        if version > SCHEMA_VERSION:
            raise InputError(
                f"{where}: history schema version {version} is newer than this migtune "
                f"knows ({SCHEMA_VERSION}): use a newer migtune"
            )
        if version < SCHEMA_VERSION or app_id != APPLICATION_ID:
            upgrade(db, version)
    except BaseException:
        db.conn.rollback()
        raise
    db.execute("COMMIT")
