"""The error-like lines of a log, picked up while the parser reads it.

The failure rules (machine type too old, device state, cancelled by a signal) search
what the log *says* went wrong, including lines no parser understood.  Reading a 1 GB
log a second time just for that would double the time, so :func:`tap` collects them as
the lines stream past the parser: each line holding a keyword, joined with the next
line (messages are sometimes wrapped), at most :data:`MAX_ERROR_LINES` of them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

# Plain substring tests: a regex alternation per line is ~30x slower on big logs.
KEYWORDS = (
    "error",
    "fail",
    "too old",
    "machine",
    "section",
    "vmstate",
    "load",
    "interrupt",
    "cancel",
)
MAX_ERROR_LINES = 5_000  # the first errors are the ones that matter; garbage has millions
_BATCH = 256


class ErrorLines:
    """Accumulates error-like lines from batches of consecutive lines."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self._pending: str | None = None

    def feed(self, batch: list[str]) -> None:
        if len(self.lines) >= MAX_ERROR_LINES:
            return
        start = 0
        if self._pending is not None and batch:
            self._add(f"{self._pending.strip()} {batch[0].strip()}")
            self._pending = None
        # Most batches of a long log hold no keyword at all: one test for the batch.
        text = "\n".join(batch).lower()
        if not any(k in text for k in KEYWORDS):
            return
        for i in range(start, len(batch)):
            line = batch[i]
            low = line.lower()
            if line.startswith("#") or not any(k in low for k in KEYWORDS):
                continue
            if i + 1 < len(batch):
                self._add(f"{line.strip()} {batch[i + 1].strip()}")
            else:
                self._pending = line

    def _add(self, text: str) -> None:
        if len(self.lines) < MAX_ERROR_LINES:
            self.lines.append(text)

    def close(self) -> list[str]:
        if self._pending is not None:
            self._add(self._pending.strip())
            self._pending = None
        return self.lines


def tap(lines: Iterator[str], sink: ErrorLines) -> Iterator[str]:
    """Pass ``lines`` through unchanged, feeding them to ``sink`` in batches."""
    batch: list[str] = []
    for line in lines:
        batch.append(line)
        if len(batch) == _BATCH:
            sink.feed(batch)
            yield from batch
            batch = []
    sink.feed(batch)
    yield from batch


def error_lines(lines: Iterable[str]) -> list[str]:
    """The error-like lines of a whole source (for runs not read through :func:`tap`)."""
    sink = ErrorLines()
    for _ in tap(iter(lines), sink):
        pass
    return sink.close()
