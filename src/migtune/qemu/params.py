"""Translate between migtune's :class:`~migtune.model.Settings` and QMP's migration
parameters and capabilities (names and units of ``migrate-set-parameters``)."""

from __future__ import annotations

from typing import Any

from migtune.model import Settings


def qmp_parameters(s: Settings) -> dict[str, Any]:
    """``migrate-set-parameters`` arguments for the settings that are set."""
    out: dict[str, Any] = {}
    if s.downtime_limit is not None:
        out["downtime-limit"] = int(round(s.downtime_limit * 1000))
    for key, value in (
        ("max-bandwidth", s.max_bandwidth),
        ("avail-switchover-bandwidth", s.avail_switchover_bandwidth),
        ("xbzrle-cache-size", s.xbzrle_cache_size),
        ("max-postcopy-bandwidth", s.max_postcopy_bandwidth),
    ):
        if value is not None:
            out[key] = int(value)
    for key, value in (
        ("cpu-throttle-initial", s.cpu_throttle_initial),
        ("cpu-throttle-increment", s.cpu_throttle_increment),
        ("max-cpu-throttle", s.max_cpu_throttle),
        ("throttle-trigger-threshold", s.throttle_trigger_threshold),
        ("multifd-channels", s.multifd_channels),
    ):
        if value is not None:
            out[key] = int(value)
    return out


def settings_from_qemu(params: dict[str, Any], caps: list[dict[str, Any]], uri: str) -> Settings:
    """The settings QEMU reports as in force (``query-migrate-parameters`` + capabilities)."""

    def num(key: str) -> Any:
        return params.get(key)

    dl = num("downtime-limit")
    return Settings(
        downtime_limit=None if dl is None else dl / 1000.0,
        max_bandwidth=None if num("max-bandwidth") is None else float(num("max-bandwidth")),
        avail_switchover_bandwidth=(
            None
            if num("avail-switchover-bandwidth") is None
            else float(num("avail-switchover-bandwidth"))
        ),
        xbzrle_cache_size=num("xbzrle-cache-size"),
        capabilities={str(c["capability"]): bool(c["state"]) for c in caps},
        migration_type=uri.split(":", 1)[0] if ":" in uri else None,
        migration_uri=uri,
        multifd_channels=num("multifd-channels"),
        cpu_throttle_initial=num("cpu-throttle-initial"),
        cpu_throttle_increment=num("cpu-throttle-increment"),
        max_cpu_throttle=num("max-cpu-throttle"),
        throttle_trigger_threshold=num("throttle-trigger-threshold"),
        max_postcopy_bandwidth=(
            None if num("max-postcopy-bandwidth") is None else float(num("max-postcopy-bandwidth"))
        ),
    )
