"""The history database's schema, its versions and the migrations between them.

The file says what it is in two SQLite header fields: ``PRAGMA application_id`` is
:data:`APPLICATION_ID` (so another program's SQLite file is recognised as foreign and
left alone) and ``PRAGMA user_version`` is the schema version.  Opening a file of an
older version applies the missing steps of :data:`MIGRATIONS` in one transaction;
a newer version than this code knows is refused (an older migtune must not write
rows a newer one would misread).

Tables are created with ``sqlite-utils`` (column types from Python types), so the
schema reads as data here rather than as SQL strings.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlite_utils import Database

# "MGTH" as a big-endian 32-bit integer: what makes a file a migtune history.
APPLICATION_ID = 0x4D475448
SCHEMA_VERSION = 2

# Version 1: one row per migration (real, simulated or read from a log).
RUN_COLUMNS_V1: dict[str, type] = {
    "id": int,
    "at": str,  # ISO-8601 UTC: when the migration started, else when it was added
    "added_at": str,  # ISO-8601 UTC
    "started_at": str,  # ISO-8601 UTC, NULL when the log has no clock
    "origin": str,  # migrate | lab | simulate | add
    "vm": str,
    "source_host": str,
    "target_host": str,
    "qemu_version": str,
    "format": str,  # the log format load_run detected (proxmox, qmp, hmp, ...)
    "source": str,  # the file it came from (recording or log), NULL when none
    "status": str,
    "converged": int,
    "total_time_s": float,
    "downtime_ms": float,
    "transferred_bytes": int,
    "passes": int,
    "max_throttle_pct": float,
    "ram_bytes": int,
    "workload": str,  # the workload spec, for lab and simulated runs
    "summary": str,  # JSON: the outcome object (keys of `lab run --json`)
    "settings": str,  # JSON: the Settings in force
    "meta": str,  # JSON: what the source said besides (partial, warnings, lab machine, ...)
    "raw": bytes,  # the recording or log as it was, zlib-compressed; NULL when too big
    "raw_encoding": str,  # "zlib" or NULL
    "raw_bytes": int,  # size of the uncompressed text
    "raw_sha256": str,  # of the uncompressed text: the same log added twice is one run
    "migtune_version": str,
}

# Version 2: calibrations made from one or several runs of a VM.
CALIBRATION_COLUMNS_V2: dict[str, type] = {
    "id": int,
    "vm": str,
    "created_at": str,  # ISO-8601 UTC
    "run_ids": str,  # JSON list of the runs calibrated together
    "workload": str,  # the best joint fit's spec
    "plausible": str,  # JSON list of specs
    "reproduces_all": int,  # 1 when every plausible workload reproduces every run
    "drifted": int,  # 1 when the workload changed between the runs
    "low_confidence": int,
    "errors": str,  # JSON: per run, the best fit's errors against what was observed
    "result": str,  # JSON: the whole `history calibrate --json` object
    "migtune_version": str,
}


def _v1(db: Database) -> None:
    db["runs"].create(RUN_COLUMNS_V1, pk="id", not_null={"at", "added_at", "origin"})
    db["runs"].create_index(["raw_sha256"], index_name="runs_sha256")


def _v2(db: Database) -> None:
    db["calibrations"].create(CALIBRATION_COLUMNS_V2, pk="id", not_null={"vm", "created_at"})
    db["calibrations"].create_index(["vm"], index_name="calibrations_vm")
    db["runs"].create_index(["vm", "at"], index_name="runs_vm_at")


# MIGRATIONS[n] takes a database of version n to version n + 1.
MIGRATIONS: list[Callable[[Database], None]] = [_v1, _v2]
assert len(MIGRATIONS) == SCHEMA_VERSION


def upgrade(db: Database, version: int) -> int:
    """Apply the steps from ``version`` to :data:`SCHEMA_VERSION` (inside the caller's
    transaction) and stamp the header; returns the number of steps applied."""
    for step in MIGRATIONS[version:]:
        step(db)
    db.execute(f"PRAGMA application_id = {APPLICATION_ID}")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
    return SCHEMA_VERSION - version
