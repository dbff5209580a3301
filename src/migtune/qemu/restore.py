"""Put a QEMU's migration settings back the way migtune found them.

QEMU keeps migration parameters and capabilities for the life of the process, so
whatever migtune sets (a 1 MiB/s cap, a 5 s downtime limit, XBZRLE) would be
inherited by the next migration Proxmox or libvirt starts on the same VM.  A
:class:`SettingsSnapshot` is taken before anything is changed and restored after a
run that did not complete (and on the source after one that did, since the source
QEMU keeps running).  Only what differs from the snapshot is set back, so values
QEMU reports but does not accept (TLS credentials, block-bitmap mappings) are never
touched unless they were changed.

The snapshot is also saved to a small file keyed by the QMP socket, so that
``migtune migrate --attach`` or ``--cancel`` can restore it after the migtune that
took it was killed.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from migtune.qemu.qmp import QMP, QMPCommandError


@dataclass
class SettingsSnapshot:
    parameters: dict[str, Any]
    capabilities: dict[str, bool]

    @classmethod
    def take(cls, q: QMP) -> SettingsSnapshot:
        caps = q.cmd("query-migrate-capabilities")
        return cls(
            parameters=dict(q.cmd("query-migrate-parameters")),
            capabilities={str(c["capability"]): bool(c["state"]) for c in caps},
        )

    def changes(self, q: QMP) -> tuple[dict[str, Any], dict[str, bool]]:
        """Parameters and capabilities whose current value differs from the snapshot."""
        now = SettingsSnapshot.take(q)
        params = {
            k: v
            for k, v in self.parameters.items()
            if k in now.parameters and now.parameters[k] != v
        }
        caps = {
            k: v
            for k, v in self.capabilities.items()
            if k in now.capabilities and now.capabilities[k] != v
        }
        return params, caps

    def restore(self, q: QMP) -> list[str]:
        """Set back what changed; returns one warning per value QEMU would not take back."""
        params, caps = self.changes(q)
        problems: list[str] = []
        if caps:
            arg = [{"capability": k, "state": v} for k, v in caps.items()]
            try:
                q.cmd("migrate-set-capabilities", capabilities=arg)
            except QMPCommandError:
                # one combination may be refused where single steps are not (multifd+xbzrle)
                for item in sorted(arg, key=lambda a: a["state"]):  # switch off first
                    try:
                        q.cmd("migrate-set-capabilities", capabilities=[item])
                    except QMPCommandError as exc:
                        problems.append(f"could not restore capability {item['capability']}: {exc}")
        if params:
            try:
                q.cmd("migrate-set-parameters", **params)
            except QMPCommandError:
                for key, value in params.items():
                    try:
                        q.cmd("migrate-set-parameters", **{key: value})
                    except QMPCommandError as exc:
                        problems.append(f"could not restore parameter {key}: {exc}")
        return problems

    def to_dict(self) -> dict[str, Any]:
        return {"parameters": self.parameters, "capabilities": self.capabilities}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SettingsSnapshot:
        params, caps = d.get("parameters"), d.get("capabilities")
        if not isinstance(params, dict) or not isinstance(caps, dict):
            raise ValueError("not a settings snapshot")
        return cls(dict(params), {str(k): bool(v) for k, v in caps.items()})


# -- saved snapshots, for --attach / --cancel after migtune was killed ------------------


def _saved_dir() -> Path:
    base = os.environ.get("MIGTUNE_STATE_DIR") or tempfile.gettempdir()
    return Path(base) / f"migtune-saved-settings-{os.getuid()}"


def saved_path(qmp_path: str) -> Path:
    key = hashlib.sha256(os.path.realpath(qmp_path).encode()).hexdigest()[:16]
    return _saved_dir() / f"{key}.json"


def save(qmp_path: str, side: str, snapshot: SettingsSnapshot, pid: int | None = None) -> None:
    """Remember ``snapshot`` for the QEMU behind ``qmp_path`` (best effort: never fails)."""
    path = saved_path(qmp_path)
    with contextlib.suppress(OSError):
        path.parent.mkdir(mode=0o700, exist_ok=True)
        record = {
            "qmp": os.path.realpath(qmp_path),
            "side": side,
            "owner_pid": pid or os.getpid(),
            **snapshot.to_dict(),
        }
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(record), encoding="utf-8")
        os.replace(tmp, path)


def load_saved(qmp_path: str) -> SettingsSnapshot | None:
    """The snapshot a (possibly killed) migtune saved for this socket, if any."""
    try:
        return SettingsSnapshot.from_dict(json.loads(saved_path(qmp_path).read_text("utf-8")))
    except (OSError, ValueError, AttributeError):
        return None


def forget(qmp_path: str) -> None:
    with contextlib.suppress(OSError):
        saved_path(qmp_path).unlink()


def mark_paused(qmp_path: str) -> None:
    """Note that migtune paused this guest (so ``--cancel`` knows to resume it)."""
    path = saved_path(qmp_path)
    with contextlib.suppress(OSError, ValueError):
        record = json.loads(path.read_text("utf-8"))
        record["paused_by_migtune"] = True
        path.write_text(json.dumps(record), encoding="utf-8")


def paused_by_migtune(qmp_path: str) -> bool:
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return bool(json.loads(saved_path(qmp_path).read_text("utf-8")).get("paused_by_migtune"))
    return False


def live_owner(qmp_path: str) -> int | None:
    """PID of another migtune that saved settings for this socket and still runs, if any."""
    try:
        pid = int(json.loads(saved_path(qmp_path).read_text("utf-8"))["owner_pid"])
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return pid if pid != os.getpid() and b"migtune" in cmdline else None
