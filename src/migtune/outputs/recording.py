"""Write migtune recordings (format described in :mod:`migtune.sources.recording`).

Each record is flushed as it is written, so a recording cut short by a crash or
Ctrl-C still holds every sample up to that moment and reads back as a partial run.
"""

from __future__ import annotations

import json
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
