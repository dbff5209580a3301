"""Write migtune recordings (format described in :mod:`migtune.sources.recording`).

Each record is flushed as it is written, so a recording cut short by a crash or
Ctrl-C still holds every sample up to that moment and reads back as a partial run.

:class:`RecordingTee` is what a live migration writes to: a failing disk must never
take the supervision of a running migration down with it, so once the migration
has started a write error only stops the file (with one warning) while the copy
kept in memory goes on.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from migtune.errors import InputError
from migtune.sources.recording import header_record


class RecordingWriter:
    def __init__(self, path: str | Path | None, stream: IO[str] | None = None):
        self.path = Path(path) if path else None
        self._fh: IO[str] | None = stream
        if self.path is not None and stream is None:
            try:
                self._fh = self.path.open("w", encoding="utf-8")
            except OSError as exc:
                raise InputError(f"cannot write recording {path}: {exc.strerror or exc}") from None

    def write(self, record: dict[str, Any]) -> None:
        if self._fh is None:
            return
        self._fh.write(json.dumps(record, separators=(",", ":"), default=str) + "\n")
        self._fh.flush()

    def header(self, origin: str, settings: dict[str, Any], t0: float, **kw: Any) -> None:
        self.write(header_record(origin, settings, t0, **kw))

    def sample(self, t: float, query_migrate: dict[str, Any]) -> None:
        self.write({"kind": "sample", "t": round(t, 3), "query-migrate": query_migrate})

    def event(self, t: float, event: str, message: str, data: dict[str, Any] | None = None) -> None:
        self.write(
            {
                "kind": "event",
                "t": round(t, 3),
                "event": event,
                "message": message,
                "data": data or {},
            }
        )

    def qmp_event(self, t: float, name: str, data: dict[str, Any] | None) -> None:
        self.write({"kind": "qmp-event", "t": round(t, 3), "event": name, "data": data or {}})

    def result(self, outcome: dict[str, Any]) -> None:
        self.write({"kind": "result", **outcome})

    def close(self) -> None:
        if self._fh is not None and self.path is not None:
            self._fh.close()
        self._fh = None

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class RecordingTee(io.StringIO):
    """Keeps the recording in memory (for the Run) and mirrors it to ``path`` if given.

    The file is opened (and an existing one replaced) only when the first record is
    written, so a migration refused before it starts leaves an old recording intact.
    While ``strict`` (before the migration starts) a write error is an
    :class:`InputError`; afterwards the file is given up: ``stopped`` says why and
    ``on_stop(message)`` is called once.
    """

    def __init__(self, path: str | Path | None, on_stop: Callable[[str], None] | None = None):
        super().__init__()
        self.path = Path(path) if path is not None else None
        self.file: IO[str] | None = None
        self.strict = True
        self.stopped: str | None = None
        self.on_stop = on_stop
        if self.path is not None:
            target = self.path if self.path.exists() else self.path.parent
            if not target.exists():
                raise InputError(f"cannot write recording {path}: no such directory")
            if self.path.is_dir() or not os.access(target, os.W_OK):
                raise InputError(f"cannot write recording {path}: permission denied or not a file")
            self._probe()

    PROBE_BYTES = 16384  # a header and the first samples: a disk without this much is full

    def _probe(self) -> None:
        """Write (and remove) a scratch file next to the recording, so a full or read-only
        filesystem is an error before any QEMU is touched, not half-way through."""
        assert self.path is not None
        probe = self.path.with_name(f".{self.path.name}.migtune-probe-{os.getpid()}")
        try:
            with open(probe, "wb") as fh:
                fh.write(b"\0" * self.PROBE_BYTES)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise InputError(f"cannot write recording {self.path}: {exc.strerror or exc}") from None
        finally:
            with contextlib.suppress(OSError):
                probe.unlink()

    def write(self, s: str) -> int:
        n = super().write(s)
        if self.path is None or self.stopped is not None:
            return n
        try:
            if self.file is None:
                self.file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - close_file()
            self.file.write(s)
            self.file.flush()
        except OSError as exc:
            why = f"cannot write recording {self.path}: {exc.strerror or exc}"
            self.close_file()
            if self.strict:
                raise InputError(why) from None
            self.stopped = why
            if self.on_stop is not None:
                self.on_stop(why)
        return n

    def flush(self) -> None:  # every write is flushed already
        pass

    def close_file(self) -> None:
        file, self.file = self.file, None
        if file is not None:
            with contextlib.suppress(OSError):  # a full disk fails the final flush again
                file.close()
