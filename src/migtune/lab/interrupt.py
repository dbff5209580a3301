"""Signals during a lab run: stop it, and let every ``finally`` clean up.

Outside the migration itself (booting, warming up, checking the guest) SIGINT,
SIGTERM and SIGHUP end the lab run with :class:`LabInterrupted` (exit 3, like a
cancelled migration); the QEMUs are stopped and their work directories removed.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

from migtune.errors import MigrationCancelled
from migtune.qemu.qmp import interrupt_safely
from migtune.qemu.supervisor import SIGNAL_REASONS, STOP_SIGNALS


class LabInterrupted(MigrationCancelled):
    """SIGINT/SIGTERM/SIGHUP outside the migration itself (booting, checking the guest)."""


@contextlib.contextmanager
def signals_stop_lab() -> Iterator[None]:
    """Turn SIGINT/SIGTERM/SIGHUP into :class:`LabInterrupted`, once, so that the
    ``finally`` blocks stop both QEMUs and remove their directories.  (During the
    migration :func:`migrate` installs its own handlers, which cancel it cleanly.)"""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    names = dict(zip(STOP_SIGNALS, SIGNAL_REASONS, strict=True))
    fired: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        if fired:  # already on the way out: let the clean-up finish
            return
        fired.append(signum)
        interrupt_safely(LabInterrupted(f"{names.get(signum, 'signal')}: the lab run was stopped"))

    old = {sig: signal.signal(sig, handler) for sig in names}
    try:
        yield
    finally:
        for sig, h in old.items():
            signal.signal(sig, h)
