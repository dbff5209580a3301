"""A small synchronous facade over QEMU's own asyncio QMP library (``qemu.qmp``).

migtune drives QEMU from plain synchronous code (CLI, lab, tests), so each
:class:`QMP` runs its ``QMPClient`` on a private event loop shared by all
connections of the current thread.  Asynchronous events are collected by a
listener while the loop runs (during every command) and handed out by
:meth:`QMP.events`; each keeps QEMU's own timestamp, so polling late does not
blur when an event happened.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
from collections.abc import Iterable
from typing import Any

from migtune.errors import EXIT_FAILED, MigtuneError, UnavailableError

try:  # the import is cheap, but keep a clear message when the package is missing
    from qemu.qmp import EventListener, ExecuteError, QMPClient, QMPError
except ImportError:  # pragma: no cover - declared as a dependency
    QMPClient = None  # type: ignore[assignment,misc]

# qemu.qmp logs every disconnect at ERROR level; migtune reports errors itself.
logging.getLogger("qemu.qmp").setLevel(logging.CRITICAL)

_local = threading.local()


def _loop() -> asyncio.AbstractEventLoop:
    loop = getattr(_local, "loop", None)
    if loop is None or loop.is_closed():
        loop = asyncio.new_event_loop()
        _local.loop = loop
    return loop


def _run(awaitable: Any) -> Any:
    """Run ``awaitable`` on this thread's loop; then raise an interrupt deferred meanwhile."""
    try:
        return _loop().run_until_complete(awaitable)
    finally:
        _raise_deferred()


def _raise_deferred() -> None:
    deferred = getattr(_local, "deferred", None)
    if deferred is not None:
        _local.deferred = None
        raise deferred


def interrupt_safely(exc: BaseException) -> None:
    """Raise ``exc`` from a signal handler, but never inside the QMP event loop.

    An exception thrown into a running asyncio loop leaves qemu.qmp's reader tasks
    half-done (they later print "Task exception was never retrieved"), so while the
    loop runs the exception is kept and raised as soon as it returns (within a
    command's timeout at most).
    """
    loop = getattr(_local, "loop", None)
    if loop is not None and loop.is_running():
        _local.deferred = exc
        return
    raise exc


def _discard(client: Any) -> None:
    """Disconnect a client that will not be used (its tasks must not outlive it)."""
    with contextlib.suppress(Exception):
        _loop().run_until_complete(asyncio.wait_for(client.disconnect(), 5.0))
    _raise_deferred()


class QMPCommandError(MigtuneError):
    """QEMU answered a command with an error (``error.class`` / ``error.desc``)."""

    exit_code = EXIT_FAILED

    def __init__(self, command: str, error_class: str, desc: str):
        super().__init__(f"QEMU rejected {command}: {desc}")
        self.command = command
        self.error_class = error_class
        self.desc = desc


class QMPConnectionLost(UnavailableError):
    """The QMP connection went away (QEMU exited or closed the socket)."""


class QMPNoAnswer(QMPConnectionLost):
    """The peer is still connected but did not answer in time (stopped, overloaded)."""


class QMPReplyError(UnavailableError):
    """The peer answered a command with something QMP does not allow for it."""

    def __init__(self, command: str, problem: str):
        super().__init__(f"malformed QMP reply to {command}: {problem}")
        self.command = command


# What QEMU's QAPI schema promises each command the driver relies on returns: the
# top-level type, and for objects the members that must be there with their types.
REPLY_SHAPES: dict[str, tuple[type, dict[str, type]]] = {
    "query-migrate": (dict, {}),
    "query-status": (dict, {"status": str}),
    "query-version": (dict, {"qemu": dict}),
    "query-migrate-parameters": (dict, {}),
    "query-migrate-capabilities": (list, {}),
    "query-memory-size-summary": (dict, {}),
    "query-kvm": (dict, {}),
}


def check_reply(command: str, value: Any) -> Any:
    """``value`` if it has the shape QMP specifies for ``command``, else QMPReplyError."""
    shape = REPLY_SHAPES.get(command)
    if shape is None:
        return value
    kind, members = shape
    if not isinstance(value, kind):
        want = "an object" if kind is dict else "a list"
        raise QMPReplyError(command, f"expected {want}, got {_short(value)}")
    for key, typ in members.items():
        if not isinstance(value.get(key), typ):
            raise QMPReplyError(command, f"{key!r} is {_short(value.get(key))}")
    if command == "query-migrate-capabilities":
        for item in value:
            if not (
                isinstance(item, dict)
                and isinstance(item.get("capability"), str)
                and isinstance(item.get("state"), bool)
            ):
                raise QMPReplyError(command, f"bad capability entry {_short(item)}")
    if command == "query-version":
        q = value["qemu"]
        if not all(isinstance(q.get(k), int) for k in ("major", "minor", "micro")):
            raise QMPReplyError(command, f"bad version {_short(q)}")
    return value


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


class Pending:
    """A command sent without waiting for its answer (see :meth:`QMP.submit`).

    Its task advances whenever the thread's event loop runs, i.e. during any other
    command on any connection of this thread, so a stopped peer never blocks them.
    """

    def __init__(self, command: str, task: asyncio.Task[Any], sent: float):
        self.command = command
        self.task = task
        self.sent = sent  # time.monotonic() when sent

    def done(self) -> bool:
        return self.task.done()

    def result(self) -> Any:
        """The checked ``return`` value; QMPConnectionLost / QMPCommandError otherwise."""
        try:
            value = self.task.result()
        except ExecuteError as exc:
            raise QMPCommandError(self.command, exc.error_class, str(exc)) from None
        except (QMPError, OSError, EOFError, RuntimeError, asyncio.CancelledError) as exc:
            raise QMPConnectionLost(f"connection lost ({_why(exc)})") from None
        return check_reply(self.command, value)


class QMP:
    """One QMP connection.  ``with QMP(path) as q: q.cmd("query-status")``."""

    def __init__(self, path: str | os.PathLike[str], *, timeout: float = 10.0, name: str = ""):
        self.path = os.fspath(path)
        self.timeout = timeout
        self.name = name or os.path.basename(self.path)
        self._client: Any = None
        self._listener: Any = None
        self._pending: list[Pending] = []

    # -- connection -------------------------------------------------------------------
    def connect(self, *, retry_for: float = 0.0) -> QMP:
        """Connect and negotiate; retry for ``retry_for`` seconds while the socket appears."""
        if QMPClient is None:
            raise UnavailableError("the Python package qemu.qmp is missing: pip install qemu.qmp")
        loop = _loop()
        deadline = loop.time() + retry_for
        while True:
            problem = self._missing_reason()
            if problem is None:
                client = QMPClient(self.name)
                try:
                    _run(asyncio.wait_for(client.connect(self.path), self.timeout))
                except (TimeoutError, QMPError, OSError, EOFError, ValueError) as exc:
                    _discard(client)
                    problem = f"cannot connect to QMP socket {self.path}: {_why(exc)}"
                    if isinstance(exc, TimeoutError):
                        problem += " (no greeting: is another client using this socket?)"
                except BaseException:
                    _discard(client)
                    raise
                else:
                    self._client = client
                    self._listener = EventListener()
                    client.register_listener(self._listener)
                    return self
            if loop.time() >= deadline:
                raise UnavailableError(problem)
            _run(asyncio.sleep(0.05))

    def _missing_reason(self) -> str | None:
        if not os.path.exists(self.path):
            return f"QMP socket {self.path} does not exist (is QEMU running with -qmp unix:...?)"
        import stat

        if not stat.S_ISSOCK(os.stat(self.path).st_mode):
            return f"{self.path} is not a socket"
        return None

    @property
    def connected(self) -> bool:
        return self._client is not None and str(self._client.runstate.name) == "RUNNING"

    def close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        loop = _loop()
        for pending in self._pending:  # never leave a task for the garbage collector
            if not pending.task.done():
                pending.task.cancel()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                loop.run_until_complete(pending.task)
        self._pending = []
        try:
            if self._listener is not None:
                client.remove_listener(self._listener)
            _loop().run_until_complete(asyncio.wait_for(client.disconnect(), 5.0))
        except (TimeoutError, QMPError, OSError, EOFError, RuntimeError):
            pass  # after "quit" the server hangs up first; nothing left to do
        _raise_deferred()  # a signal that came while disconnecting

    def __enter__(self) -> QMP:
        if self._client is None:
            self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- commands ---------------------------------------------------------------------
    def cmd(self, command: str, timeout: float | None = None, **arguments: Any) -> Any:
        """Run one command and return its ``return`` value.

        Raises :class:`QMPCommandError` when QEMU refuses and
        :class:`QMPConnectionLost` when the connection is gone.
        """
        if self._client is None:
            raise QMPConnectionLost(f"QMP {self.path}: not connected")
        args = {k.replace("_", "-"): v for k, v in arguments.items()} or None
        try:
            value = _run(
                asyncio.wait_for(self._client.execute(command, args), timeout or self.timeout)
            )
        except ExecuteError as exc:
            raise QMPCommandError(command, exc.error_class, str(exc)) from None
        except TimeoutError:
            raise QMPNoAnswer(
                f"QMP {self.path}: no answer to {command} within {timeout or self.timeout:g} s"
            ) from None
        except (QMPError, OSError, EOFError, RuntimeError) as exc:
            raise QMPConnectionLost(f"QMP {self.path}: connection lost ({_why(exc)})") from None
        return check_reply(command, value)

    def submit(self, command: str, **arguments: Any) -> Pending:
        """Send ``command`` and return at once; see :class:`Pending`."""
        if self._client is None:
            raise QMPConnectionLost(f"QMP {self.path}: not connected")
        args = {k.replace("_", "-"): v for k, v in arguments.items()} or None
        self._pending = [p for p in self._pending if not p.done()]
        task = _loop().create_task(self._client.execute(command, args))
        pending = Pending(command, task, time.monotonic())
        self._pending.append(pending)
        return pending

    def pump(self) -> None:
        """Let the reader tasks handle whatever arrived (events, submitted answers)."""
        if self._client is not None:
            with contextlib.suppress(RuntimeError):
                _run(asyncio.sleep(0.01))

    def events(self, names: Iterable[str] | None = None) -> list[dict[str, Any]]:
        """Events received so far (and not yet returned), as plain dicts, oldest first.

        Each has ``event``, ``data`` and ``timestamp`` (epoch seconds, float).
        """
        if self._client is None or self._listener is None:
            return []
        # let the reader task pick up whatever arrived since the last command
        with contextlib.suppress(RuntimeError):
            _run(asyncio.sleep(0))
        wanted = set(names) if names is not None else None
        out = []
        for msg in self._listener.clear():
            name = str(msg.get("event", ""))
            if wanted is not None and name not in wanted:
                continue
            ts = msg.get("timestamp")
            try:
                stamp = float(ts["seconds"]) + float(ts["microseconds"]) / 1e6
            except (TypeError, KeyError, ValueError):
                stamp = time.time()  # a peer that stamps badly: when we saw it is close enough
            data = msg.get("data")
            out.append(
                {
                    "event": name,
                    "data": dict(data) if isinstance(data, dict) else {},
                    "timestamp": stamp,
                }
            )
        return out

    # -- conveniences used by the migration driver and the lab -------------------------
    def version(self) -> str:
        q = self.cmd("query-version")["qemu"]
        return f"{q['major']}.{q['minor']}.{q['micro']}"

    def migration_status(self) -> str | None:
        """``status`` of ``query-migrate`` (None before any migration)."""
        status = self.cmd("query-migrate").get("status")
        if status is not None and not isinstance(status, str):
            raise QMPReplyError("query-migrate", f"'status' is {_short(status)}")
        return status

    def status(self) -> str:
        return str(self.cmd("query-status")["status"])


def _why(exc: BaseException) -> str:
    text = str(exc).strip()
    if isinstance(exc, EOFError) or not text:
        return text if text else type(exc).__name__
    return text.splitlines()[0]
