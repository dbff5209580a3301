"""Exceptions and exit codes.

Every error a user can cause (bad input, a missing QEMU, a QMP socket that is gone)
is a :class:`MigtuneError` with a one-line message; the CLI prints that line and
exits with the error's ``exit_code``.  Anything else is a bug.
"""

from __future__ import annotations

# Exit codes, shared by all commands (documented in the README).
EXIT_OK = 0  # command did its job (for diagnose: the log was analysed, whatever it found)
EXIT_INTERNAL = 1  # a bug in migtune
EXIT_BAD_INPUT = 2  # unreadable or unrecognised input, bad option value
EXIT_CANCELLED = 3  # migration cancelled (time limit, Ctrl-C, policy abort) - source still running
EXIT_FAILED = 4  # migration failed (QEMU error, destination vanished)
EXIT_UNAVAILABLE = 5  # something needed is missing: QEMU, a package, a QMP socket
EXIT_NOT_CONVERGED = 6  # tune/simulate: no setting met the limits


class MigtuneError(Exception):
    """Base class: a problem to report to the user in one line."""

    exit_code = EXIT_INTERNAL

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message

    def __str__(self) -> str:
        return self.message


class InputError(MigtuneError):
    """Input that cannot be read: an unknown format, garbage, a bad option value."""

    exit_code = EXIT_BAD_INPUT


class UnavailableError(MigtuneError):
    """A required program, package, device or socket is not available."""

    exit_code = EXIT_UNAVAILABLE


class MigrationFailed(MigtuneError):
    """A migration that migtune drove failed."""

    exit_code = EXIT_FAILED


class MigrationCancelled(MigtuneError):
    """A migration that migtune drove was cancelled; the source VM keeps running."""

    exit_code = EXIT_CANCELLED
