"""The history: every migration migtune ran, simulated or read, in one SQLite file.

``migrate``, ``lab run`` (and every run of ``lab matrix``) and ``simulate --record``
add their run automatically; ``history add`` adds logs.  Each run keeps its raw text
(compressed), its outcome, settings, VM, hosts and QEMU version; calibrations made
from several runs of a VM are kept too.  Where the file lives and how it stays safe:
:mod:`migtune.history.store`; its schema: :mod:`migtune.history.schema`.

For other commands: :func:`calibration_for_vm` (``tune --vm``, ``preflight --vm``,
``history:NAME`` in fleet plans) and :func:`workload_for_vm`.
"""

from __future__ import annotations

from migtune.history.commands import (
    AddResult,
    add_logs,
    export_runs,
    list_runs,
    raw_text,
    record_run,
    show_run,
)
from migtune.history.multical import (
    VmCalibration,
    calibrate_vm,
    calibration_for_vm,
    workload_for_vm,
)
from migtune.history.store import default_path, open_store

__all__ = [
    "AddResult",
    "VmCalibration",
    "add_logs",
    "calibrate_vm",
    "calibration_for_vm",
    "default_path",
    "export_runs",
    "list_runs",
    "open_store",
    "raw_text",
    "record_run",
    "show_run",
    "workload_for_vm",
]
