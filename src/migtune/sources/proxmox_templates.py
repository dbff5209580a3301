"""The less frequent Proxmox task-log templates (docs/platforms.md §1.2, §1.6).

Each template is one entry of :data:`_TEMPLATES`: a cheap prefix (and optionally a
substring) checked before its one compiled regex, and a handler that turns the match
into events and run-level updates.  The progress and xbzrle lines, which make up
almost all of a long log, are handled inline in :mod:`migtune.sources.proxmox_lines`.
"""

from __future__ import annotations

import re

from migtune.model import Event, SourceRef
from migtune.sources import proxmox_handlers as h
from migtune.sources.proxmox_handlers import Context, Handler, Records, Update

__all__ = ["Context", "Update", "classify", "match_template"]

_SIZE = r"([0-9]+(?:\.[0-9]+)?) (B|KiB|MiB|GiB|TiB|PiB)"
# Lines a GUI copy-paste adds around the task log (as in the real log
# tests/fixtures/real/proxmox-github-pve8-ha-diskless-4GiB-completed.txt).
_CHROME = {"()", "OutputStatus", "Output", "Status", "Stop", "Download"}
_ELISIONS = {"...", "…", "[...]", "(...)", "[…]", ". . ."}

_S = h.simple
# (prefix, substring or "", regex, handler), tried in order: the first match wins.
# fmt: off
_TEMPLATE_SPECS: list[tuple[str, str, str, Handler]] = [
    ("starting migration of VM ", "", r"starting migration of VM (\S+) to node '([^']*)'(?: \(([^)]*)\))?", h.migration_start),
    ("use dedicated network address", "", r"use dedicated network address for sending migration traffic \(([^)]*)\)", h.network),
    ("starting VM ", "", r"starting VM (\S+) on remote node '([^']*)'", h.target_start),
    ("task started by HA resource agent", "", r".*", h.ha),
    ("Requesting HA migration", "", r".*", h.ha),
    ("found ", "disk", r"found (local|local, replicated|generated) disk '([^']*)'(?: \((.*)\))?", h.local_disk),
    ("copying local disk images", "", r".*", _S("disk-scan")),
    ("copying disk images", "", r".*", _S("disk-scan")),
    ("volume '", "", r"volume '[^']*' is '[^']*' on the target", _S("disk-scan")),
    ("drive '", "", r"drive '[^']*': .*", _S("disk-scan")),
    ("Allocating volume for drive", "", r".*", _S("disk-scan")),
    ("can't migrate local disk", "", r".*", _S("error")),
    ("Problem found while scanning volumes", "", r".*", _S("error")),
    ("replicating disk images", "", r".*", _S("replication")),
    ("start replication job", "", r".*", _S("replication")),
    ("end replication job with error", "", r".*", _S("error")),
    ("end replication job", "", r".*", _S("replication")),
    ("guest => VM", "", r".*", _S("replication")),
    ("volumes => ", "", r".*", _S("replication")),
    ("freeze guest filesystem", "", r".*", _S("replication")),
    ("thaw guest filesystem", "", r".*", _S("replication")),
    ("create snapshot '", "", r".*", _S("replication")),
    ("delete previous replication snapshot", "", r".*", _S("replication")),
    ("incremental sync '", "", r".*", _S("replication")),
    ("full sync '", "", r".*", _S("replication")),
    ("using secure transmission", "", r".*", _S("replication")),
    ("using insecure transmission", "", r".*", _S("replication")),
    ("", ": start tracking writes using block-dirty-bitmap", r"\S+: start tracking writes.*", _S("replication")),
    ("start remote tunnel", "", r".*", _S("tunnel")),
    ("ssh tunnel ver", "", r".*", _S("tunnel")),
    ("starting ssh migration tunnel", "", r".*", h.ssh_tunnel_old),
    ("websocket tunnel started", "", r".*", h.websocket),
    ("tunnel: ", "", r".*", h.websocket),
    ("Setting up tunnel for", "", r".*", h.websocket),
    ("local WS tunnel version", "", r".*", h.websocket),
    ("remote WS tunnel version", "", r".*", h.websocket),
    ("minimum required WS tunnel version", "", r".*", h.websocket),
    ("remote: started tunnel worker", "", r".*", h.websocket),
    ("starting storage migration", "", r".*", h.storage_start),
    ("", ": start migration to ", r"(\S+): start migration to (\S+)", h.drive_start),
    ("drive mirror is starting for ", "", r"drive mirror is starting for (\S+?)(?: with bandwidth limit: (\d+) KiB/s)?$", h.mirror_starting),
    ("drive mirror re-using dirty bitmap", "", r".*", _S("storage-start")),
    ("switching mirror jobs to actively synced mode", "", r".*", h.active_mode),
    ("", "successfully switched to actively synced mode", r".*", _S("storage-ready")),
    ("", ": switching to actively synced mode", r".*", _S("storage-start")),
    ("", ": transferred ", rf"(\S+): transferred {_SIZE} of {_SIZE} \(([0-9.]+)%\) in ([0-9wdhms ]+?)(?:, (ready|still busy))?$", h.mirror_progress),
    ("", ": transferred: ", r"(\S+): transferred: (\d+) bytes remaining: (\d+) bytes total: (\d+) bytes progression: ([0-9.]+) % busy: (\d+) ready: (\d+)", h.mirror_progress_old),
    ("all 'mirror' jobs are ready", "", r".*", _S("storage-ready")),
    ("all mirroring jobs are ready", "", r".*", _S("storage-ready")),
    ("", ": Completing block job", r".*", _S("cleanup")),
    ("", ": Completed successfully", r".*", _S("cleanup")),
    ("", ": mirror-job finished", r".*", _S("cleanup")),
    ("", ": Cancelling block job", r".*", _S("cleanup")),
    ("", "' has been cancelled", r".*", _S("cleanup")),
    ("", ": Done.", r"\S+: Done\.$", _S("cleanup")),
    ("", "block job cannot be completed", r".*", _S("warning")),
    ("block job (", "", r".*", _S("error")),
    ("Failed to complete", " storage migration", r".*", h.failed),
    ("starting online/live migration on ", "", r"starting online/live migration on (\S+)", h.ram_start),
    ("start migrate command to ", "", r"start migrate command to (\S+)", h.ram_start),
    ("migrate uri => ", "", r".*", h.failed),
    ("set migration capabilities", "", r".*", h.caps),
    ("set migration_caps", "", r".*", h.caps),
    ("migration speed limit: ", "", rf"migration speed limit: {_SIZE}/s", h.speed_limit),
    ("migration downtime limit: ", "", r"migration downtime limit: ([0-9.]+) ms", h.downtime_limit),
    ("capping downtime limit", "", r"capping downtime limit to maximum possible: ([0-9.]+) ms", h.cap_downtime),
    ("migration cachesize: ", "", rf"migration cachesize: {_SIZE}", h.cachesize),
    ("set cachesize: ", "", r"set cachesize: (\d+)", h.cachesize),
    ("set migration parameters", "", r".*", h.set_params),
    ("migrate_set_speed: ", "", r"migrate_set_speed: (\d+)", h.set_speed),
    ("migrate_set_downtime: ", "", r"migrate_set_downtime: ([0-9.]+)", h.set_downtime),
    ("spice client_migrate_info", "", r".*", _S("settings")),
    ("migrate-set-parameters error", "", r".*", _S("warning")),
    ("migrate_set_downtime error", "", r".*", _S("warning")),
    ("migrate-set-cache-size error", "", r".*", _S("warning")),
    ("client_migrate_info error", "", r".*", _S("warning")),
    ("migration in status '", "", r"migration in status '([\w-]+)' - waiting for transition", h.waiting),
    ("query migrate failed", "", r".*", _S("warning")),
    ("auto-increased downtime", "", r"auto-increased downtime to continue migration: ([0-9.]+) ms", h.auto_downtime),
    ("average migration speed: ", "", rf"average migration speed: {_SIZE}/s - downtime (\d+) ms", h.average),
    ("migration speed: ", "", r"migration speed: ([0-9.]+) MB/s - downtime (\d+) ms", h.old_speed),
    ("migration completed, ", "", rf"migration completed, transferred {_SIZE} VM-state(?: \(\+ {_SIZE} VFIO-state\))?", h.completed_summary),
    ("migration status error: ", "", r"migration status error: ([\w-]+)(?: - (.*))?", h.status_error),
    ("migration status: ", "", r"migration status: ([\w-]+)\s*$", h.status),
    ("unable to parse migration status", "", r".*", h.failed),
    ("online migrate failure - ", "", r"online migrate failure - (.*)", h.online_failure),
    ("received interrupt", "", r".*", h.interrupt),
    ("aborting phase ", "", r".*", _S("cleanup")),
    ("migrate_cancel error", "", r".*", _S("warning")),
    ("migrate_cancel", "", r"migrate_cancel\s*$", h.migrate_cancel),
    ("query-status error", "", r".*", _S("error")),
    ("resuming VM failed", "", r".*", _S("error")),
    ("VM was paused, but ended in postmigrate", "", r".*", _S("error")),
    ("stopping NBD storage migration server", "", r".*", _S("cleanup")),
    ("issuing guest fstrim", "", r".*", _S("cleanup")),
    ("skipping guest fstrim", "", r".*", _S("cleanup")),
    ("fstrim failed", "", r".*", _S("warning")),
    ("stopping migration dbus-vmstate helpers", "", r".*", _S("cleanup")),
    ("migrated ", "conntrack state entr", r".*", _S("cleanup")),
    ("flushing conntrack state", "", r".*", _S("cleanup")),
    ("Waiting for spice server migration", "", r".*", _S("cleanup")),
    ("stopping vm failed", "", r".*", _S("error")),
    ("Cleanup after stopping VM failed", "", r".*", _S("error")),
    ("removing local copy of", "", r".*", _S("error")),
    ("failed to clear migrate lock", "", r".*", _S("error")),
    ("migration finished ", "(duration ", r"migration finished (successfully|successfuly) \(duration (\d+:\d\d:\d\d)\)", h.finished_ok),
    ("migration finished with problems", "", r"migration finished with problems \(duration (\d+:\d\d:\d\d)\)", h.finished_problems),
    ("migration aborted (duration ", "", r"migration aborted \(duration (\d+:\d\d:\d\d)\): ?(.*)", h.aborted),
    ("TASK OK", "", r"TASK OK\s*$", h.task_ok),
    ("TASK ERROR: ", "", r"TASK ERROR: (.*)", h.task_error),
    ("conntrack state migration not supported", "", r".*", h.warning),
    ("stopped left-over dbus-vmstate helper", "", r".*", h.warning),
    ("attempt to clean up left-over fleecing", "", r".*", h.warning),
    ("WARNING: ", "", r".*", h.warning),
    ("migrating VM which uses", "", r".*", _S("info")),
    ("mapped: ", "", r".*", _S("info")),
    ("[", "] ", r"\[([^\]\s]+)\] (.*)", h.target_output),
    ("Task viewer: ", "", r".*", h.chrome),
]
# fmt: on
_TEMPLATES = [
    (prefix, needle, re.compile(pattern).match, handler)
    for prefix, needle, pattern, handler in _TEMPLATE_SPECS
]


def _by_first_char(templates: list) -> tuple[dict[str, list], list]:
    """The templates a message can start with, by its first character, in list order.

    Garbage read as a Proxmox log is all unknown lines, each tried against every prefix
    (120 ``startswith`` a line); a message can only start with prefixes that start with
    its own first character (or the empty prefix, tried for every message).
    """
    anywhere = [t for t in templates if not t[0]]
    table: dict[str, list] = {}
    for t in templates:
        if t[0]:
            table.setdefault(t[0][0], [])
    for first, bucket in table.items():
        bucket.extend(t for t in templates if not t[0] or t[0][0] == first)
    return table, anywhere


_BY_FIRST, _ANY_FIRST = _by_first_char(_TEMPLATES)


def match_template(msg: str, stamped: bool) -> tuple[Handler, re.Match[str]] | None:
    for prefix, needle, match, handler in _BY_FIRST.get(msg[:1], _ANY_FIRST):
        # "[node] ..." is target output only after a stamp; bare "[...]" is an elision.
        if msg.startswith(prefix) and needle in msg and (stamped or handler is not h.target_output):
            m = match(msg)
            if m is not None:
                return handler, m
    return None


def classify(
    ctx: Context,
    msg: str,
    t: float | None,
    no: int,
    line: str,
    stamped: bool,
    err: bool,
    probe: bool = False,
) -> Records:
    """Records for one line that is not a progress/xbzrle line.

    With ``probe`` only tell whether the line is a known template (non-empty list),
    without touching ``ctx``: used to decide whether a bare line continues the last one.
    """
    text = msg.strip()
    if not stamped and (text in _CHROME or text in _ELISIONS):
        if probe:
            return [True]
        handler = h.elision if text in _ELISIONS else h.chrome
        return handler(ctx, re.match(r".*", text), t, SourceRef(no, line), err)
    found = match_template(msg, stamped)
    if probe:
        return [True] if found else []
    ref = SourceRef(no, line)
    if found is not None:
        handler, m = found
        try:
            return handler(ctx, m, t, ref, err)
        except (ValueError, OverflowError, ArithmeticError):
            pass  # a template's shape with unreadable numbers ("1.2.3 ms"): report it as unknown
    return [Event(t, "error" if err else "info", msg, {"unrecognised": True}, ref)]
