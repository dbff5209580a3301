"""The lines of a log file, read as a stream and read again on demand.

A log can be bigger than the memory migtune may use (an hour of Proxmox progress lines
is a few hundred MB; nobody cuts a 1 GB log before asking why the migration crawled).
So nothing keeps the whole text: :class:`LineSource` decodes the file line by line each
time it is iterated, and ``Run.lines`` holds the source, not the lines.  ``explain``
walks it again to annotate every line; the parser walks it once.

Lines are split exactly as ``str.splitlines()`` splits the whole text (so line numbers
match what ``explain`` printed before), invalid UTF-8 becomes U+FFFD, and a single line
longer than :data:`MAX_LINE_CHARS` is cut there (a warning says so): a 1 GB file without
a newline must not become a 1 GB string.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

from migtune.errors import InputError

MAX_LINE_CHARS = 1 << 20  # a longer line is cut here: no real log line comes near it
_CHUNK = 1 << 20
_BINARY_PROBE = 65536
# What str.splitlines() splits on (after universal-newline decoding turned \r\n into \n).
_BREAKS = "\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"


class LineSource:
    """Re-iterable lines of a file (or of standard input, spooled to a temporary file).

    ``cut_lines`` maps the number of each line that was cut to its full length in
    characters; it is filled while iterating.
    """

    def __init__(self, path: str | Path, name: str | None = None):
        self.path = str(path)
        self.name = name or self.path
        self.cut_lines: dict[int, int] = {}
        self.line_count: int | None = None  # known once a walk reached the end
        self._spool: str | None = None

    @classmethod
    def from_stdin(cls, stream=None) -> LineSource:
        """Copy standard input to a temporary file and read that.

        Where the system lets an open file be opened again by its descriptor (Linux's
        ``/proc/self/fd``), the file's name is removed at once: the copy then goes away
        with the process however it ends (killed included).  Elsewhere it is deleted with
        the source.
        """
        stream = stream if stream is not None else sys.stdin.buffer
        fd, tmp = tempfile.mkstemp(prefix="migtune-stdin-")
        reopen = _unlinked_path(fd, tmp)
        try:
            with os.fdopen(os.dup(fd), "wb") as out:
                shutil.copyfileobj(stream, out, _CHUNK)
        except OSError as exc:
            os.close(fd)
            _unlink(tmp)
            raise InputError(f"-: cannot read standard input ({exc.strerror or exc})") from None
        if reopen is None:
            os.close(fd)
            source = cls(tmp, name="-")
            source._spool = tmp
            weakref.finalize(source, _unlink, tmp)
        else:
            source = cls(reopen, name="-")
            weakref.finalize(source, os.close, fd)
        return source

    def check(self) -> None:
        """InputError for a missing, unreadable, binary or empty file (before any parsing)."""
        path = self.name
        try:
            if Path(self.path).is_dir():
                raise InputError(f"{path}: is a directory, not a log file")
            with open(self.path, "rb") as f:
                head = f.read(_BINARY_PROBE)
                blank = not head.strip()
                while blank:
                    chunk = f.read(_CHUNK)
                    if not chunk:
                        break
                    blank = not chunk.strip()
        except FileNotFoundError:
            raise InputError(f"{path}: no such file") from None
        except PermissionError:
            raise InputError(f"{path}: permission denied") from None
        except OSError as exc:
            raise InputError(f"{path}: cannot read ({exc.strerror or exc})") from None
        if head.count(b"\x00") > max(8, len(head) // 100):
            raise InputError(f"{path}: looks like a binary file, not a migration log")
        if blank:
            raise InputError(f"{path}: file is empty")

    def __iter__(self) -> Iterator[str]:
        for batch in self.batches():
            yield from batch

    def batches(self, on_cut: Callable[[int, int], None] | None = None) -> Iterator[list[str]]:
        """The lines in consecutive lists (one per ~1 MiB read), without line breaks.

        Splitting a whole chunk at once keeps the per-line cost in C; ``on_cut(line_no,
        length)`` is called for each line cut at :data:`MAX_LINE_CHARS`.
        """
        no = 0
        carry = ""
        with self._open() as f:
            read = f.read
            while True:
                chunk = read(_CHUNK)
                if not chunk:
                    break
                text = carry + chunk if carry else chunk
                lines = text.splitlines()
                carry = "" if text[-1] in _BREAKS else lines.pop()
                if len(carry) > MAX_LINE_CHARS:
                    lines.append(carry[:MAX_LINE_CHARS])
                    length = len(carry) + _skip_rest(f)
                    carry = ""
                    self._cut(no + len(lines), length, on_cut)
                if lines and max(map(len, lines)) > MAX_LINE_CHARS:
                    for i, line in enumerate(lines):
                        if len(line) > MAX_LINE_CHARS:
                            lines[i] = line[:MAX_LINE_CHARS]
                            self._cut(no + i + 1, len(line), on_cut)
                no += len(lines)
                if lines:
                    yield lines
            if carry:
                no += 1
                yield [carry]
        self.line_count = no  # the parse walks the whole file: later walks need not count

    def _cut(self, no: int, length: int, on_cut: Callable[[int, int], None] | None) -> None:
        self.cut_lines[no] = length
        if on_cut is not None:
            on_cut(no, length)

    def _open(self):
        try:
            return open(self.path, encoding="utf-8", errors="replace", newline=None)
        except OSError as exc:
            raise InputError(f"{self.name}: cannot read ({exc.strerror or exc})") from None

    def __repr__(self) -> str:
        return f"LineSource({self.name!r})"


def _skip_rest(f) -> int:
    """Read past the rest of an overlong line; the number of characters skipped.

    Only a newline ends it here (a form feed inside the skipped part does not): an
    overlong line is a corrupt stretch of the file anyway.
    """
    skipped = 0
    while True:
        rest = f.readline(_CHUNK)
        if not rest:
            return skipped
        if rest[-1] == "\n":
            return skipped + len(rest) - 1
        skipped += len(rest)


def _unlinked_path(fd: int, path: str) -> str | None:
    """A path that opens ``fd``'s file anew (own offset) after ``path`` is unlinked, or None."""
    again = f"/proc/self/fd/{fd}"
    try:
        if not os.path.samefile(again, path):
            return None
        os.unlink(path)
    except OSError:
        return None
    return again


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)
