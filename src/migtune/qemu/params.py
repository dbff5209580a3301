"""Translate between migtune's :class:`~migtune.model.Settings` and QMP's migration
parameters and capabilities (names and units of ``migrate-set-parameters``)."""

from __future__ import annotations

from typing import Any

from migtune.model import Settings
from migtune.settings import QMP_PARAMETERS, from_qmp_value, to_qmp_value


def qmp_parameters(s: Settings) -> dict[str, Any]:
    """``migrate-set-parameters`` arguments for the settings that are set."""
    out: dict[str, Any] = {}
    for name, (field, _unit) in QMP_PARAMETERS.items():
        value = getattr(s, field)
        if value is not None:
            out[name] = to_qmp_value(name, value)
    return out


def settings_from_qemu(params: dict[str, Any], caps: list[dict[str, Any]], uri: str) -> Settings:
    """The settings QEMU reports as in force (``query-migrate-parameters`` + capabilities)."""
    known = {
        field: from_qmp_value(name, params[name])
        for name, (field, _unit) in QMP_PARAMETERS.items()
        if params.get(name) is not None
    }
    return Settings(
        **known,
        capabilities={str(c["capability"]): bool(c["state"]) for c in caps},
        migration_type=uri.split(":", 1)[0] if ":" in uri else None,
        migration_uri=uri,
    )
