"""``--metrics-port`` / ``--metrics-addr`` for ``migrate`` and ``lab run``.

The endpoint is started before anything touches QEMU, so a port already in use is a
one-line error (exit 2) before the migration starts.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import click


def metrics_options(f: Callable[..., Any]) -> Callable[..., Any]:
    f = click.option(
        "--metrics-addr",
        default="127.0.0.1",
        show_default=True,
        metavar="ADDR",
        help="Address the --metrics-port endpoint listens on (0.0.0.0: every interface).",
    )(f)
    return click.option(
        "--metrics-port",
        type=click.IntRange(1, 65535),
        metavar="PORT",
        help="Serve the migration's figures for Prometheus on http://ADDR:PORT/metrics "
        "while it runs (transferred, remaining, throughput, dirty rate, passes, downtime "
        "limit, throttle, XBZRLE, status, migtune's prediction).",
    )(f)


@contextlib.contextmanager
def metrics_endpoint(kwargs: dict[str, Any]) -> Iterator[Any]:
    """Pops the two options; yields a serving ``MigrationMetrics`` or None; stops it."""
    port, addr = kwargs.pop("metrics_port", None), kwargs.pop("metrics_addr", "127.0.0.1")
    if port is None:
        yield None
        return
    from migtune.outputs.metrics import MigrationMetrics

    metrics = MigrationMetrics().serve(port, addr)
    try:
        yield metrics
    finally:
        metrics.close()
