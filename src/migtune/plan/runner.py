"""Run the plan's independent pieces of work serially or as Dask tasks.

Every task is a pure function of its (picklable) argument, and answers are put back in
the order the tasks were given, whichever worker finished first: the plan is the same
on one worker, on several, or without Dask at all (``--serial``).

Dask is imported only when it is used, so the other commands do not pay for it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from migtune.errors import InputError, UnavailableError

Progress = Callable[[str, int, int], None]  # (what, done, total)


class Runner:
    """Where the tasks run: ``serial``, a ``LocalCluster`` of ``workers`` processes
    (the default), or an existing cluster at ``scheduler`` (``tcp://HOST:8786``)."""

    def __init__(
        self,
        *,
        serial: bool = False,
        workers: int | None = None,
        scheduler: str | None = None,
        progress: Progress | None = None,
    ):
        if workers is not None and workers < 1:
            raise InputError("--workers: must be at least 1")
        self.serial = serial
        self.workers = workers
        self.scheduler = scheduler
        self.progress = progress
        self.client: Any = None
        self.cluster: Any = None

    @property
    def description(self) -> str:
        if self.serial:
            return "serial"
        if self.scheduler:
            return f"dask scheduler {self.scheduler}"
        return f"dask LocalCluster, {self.n_workers} worker process(es)"

    @property
    def n_workers(self) -> int:
        if self.serial:
            return 1
        if self.client is not None:
            return len(self.client.scheduler_info().get("workers", {})) or 1
        return self.workers or 2

    def __enter__(self) -> Runner:
        if self.serial:
            return self
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise UnavailableError(
                "dask.distributed is not installed (pip install 'dask[distributed]'), "
                "or plan with --serial"
            ) from None
        try:
            if self.scheduler:
                self.client = Client(self.scheduler, timeout=10)
            else:
                self.cluster = LocalCluster(
                    n_workers=self.workers or 2,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
                self.client = Client(self.cluster)
        except (OSError, TimeoutError) as exc:
            where = self.scheduler or "a local cluster"
            self.close()
            raise UnavailableError(f"cannot reach dask at {where}: {exc}") from None
        except RuntimeError as exc:  # a worker process that would not start
            self.close()
            raise UnavailableError(
                f"cannot start local dask workers ({exc}); plan with --serial"
            ) from None
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.cluster is not None:
            self.cluster.close()
            self.cluster = None

    def map(self, fn: Callable[..., Any], items: Sequence[Any], what: str, *shared: Any) -> list:
        """``[fn(item, *shared) for item in items]``, in that order, wherever it runs.
        ``shared`` arguments are sent to the workers once, not with every task."""
        total = len(items)
        if self.progress:
            self.progress(what, 0, total)
        if self.serial or self.client is None:
            out = []
            for i, item in enumerate(items):
                out.append(fn(item, *shared))
                if self.progress:
                    self.progress(what, i + 1, total)
            return out
        from dask.distributed import as_completed

        sent = [self.client.scatter(s, broadcast=True) for s in shared]
        futures = self.client.map(fn, items, *[[s] * total for s in sent], pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        out: list[Any] = [None] * total
        for done, fut in enumerate(as_completed(futures), 1):
            out[index[fut.key]] = fut.result()
            if self.progress:
                self.progress(what, done, total)
        return out
