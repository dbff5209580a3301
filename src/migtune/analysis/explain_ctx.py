"""What the per-line explainers need to know about the whole run."""

from __future__ import annotations

from dataclasses import dataclass, field

from migtune.analysis.metrics import QEMU_DEFAULT_CAP, QEMU_OLD_DEFAULT_CAP, Metrics, link_match
from migtune.model import Event, Run, Sample
from migtune.units import format_bytes, format_rate


class Memo(dict):
    """``memo[value]`` is ``fn(value)``, remembered: a long log prints the same few values.

    Progress lines repeat their sizes and rates (``40.6 GiB`` for a few lines, the same
    handful of per-line rates), and formatting one costs more than the rest of its note.
    Bounded: cleared when it holds :data:`MEMO_SIZE` values.
    """

    __slots__ = ("fn",)

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def __missing__(self, key):
        if len(self) >= MEMO_SIZE:
            self.clear()
        value = self[key] = self.fn(key)
        return value


MEMO_SIZE = 4096
fmt_bytes = Memo(format_bytes)  # format_bytes(v) of the values of one (long) log
fmt_rate = Memo(format_rate)


@dataclass(slots=True)
class Ctx:
    run: Run
    m: Metrics
    fmt: str
    page_size: int | None = None
    prev: Sample | None = None  # previous progress sample (for deltas)
    history: list[Sample] = field(default_factory=list)  # timed progress samples so far
    window_start: int = 0  # index into history where the real-rate window begins
    pass_no: int = 1  # pass inferred so far (old Proxmox: from remaining jumps)
    limit_now: float | None = None  # downtime limit in force at this line
    events_by_line: dict[int, list[Event]] = field(default_factory=dict)
    last_overflow: int | None = None  # XBZRLE overflow count at the previous report
    said: set[str] = field(default_factory=set)  # general notes already given once
    phrases: dict = field(default_factory=dict)  # pass_phrase by transferred, once stable

    def said_once(self, key: str) -> bool:
        """True if the remark ``key`` was given; marks it given (for :meth:`once` callers
        that build a long note only when it is needed)."""
        if key in self.said:
            return True
        self.said.add(key)
        return False

    def once(self, key: str, note: str) -> list[str]:
        """A general remark is worth reading once, not on every progress line."""
        if key in self.said:
            return []
        self.said.add(key)
        return [note]

    def limit(self) -> tuple[float, bool]:
        if self.limit_now is not None:
            return self.limit_now, True
        if self.m.downtime_limit_final_s is not None:
            return self.m.downtime_limit_final_s, True
        return (0.1 if self.fmt == "proxmox" else 0.3), False

    def pass_phrase(self, transferred: float, passes: int | None = None) -> str:
        """How much of RAM ``transferred`` is; ``passes``: the line's own dirty-sync-count."""
        ram = self.m.ram_bytes
        if not ram:
            return "including any page sent more than once"
        if passes is None:
            # Once its once-only remark was given, the phrase depends on ``transferred``
            # alone (a progress line of a long log repeats the value of the line before).
            phrase = self.phrases.get(transferred)
            if phrase is not None:
                return phrase
            stable = ("pass1" if transferred / ram < 1 else "resend") in self.said
            phrase = self._pass_phrase(transferred, None, ram)
            if stable:
                if len(self.phrases) >= MEMO_SIZE:
                    self.phrases.clear()
                self.phrases[transferred] = phrase
            return phrase
        return self._pass_phrase(transferred, passes, ram)

    def _pass_phrase(self, transferred: float, passes: int | None, ram: float) -> str:
        ratio = transferred / ram
        if ratio < 1:
            why = (
                ""
                if "pass1" in self.said
                else ": zero pages cost almost nothing, so this can still be the first pass"
            )
            self.said.add("pass1")
            return f"{ratio * 100:.0f}% of the {fmt_bytes[ram]} RAM{why}"
        known = passes
        if known is None and len(self.run.samples) <= 1:
            # one snapshot: the run's pass count is this line's (with several, it is the last's)
            known = self.m.passes if self.m.passes_source == "dirty-sync-count" else None
        where = f"pass {int(ratio) + 1} or later" if known is None else f"pass {known} by now"
        if "resend" in self.said:
            return f"{ratio:.2f}x the {fmt_bytes[ram]} RAM ({where})"
        self.said.add("resend")
        return (
            f"{ratio:.2f}x the {format_bytes(ram)} RAM: everything beyond it is pages re-sent "
            f"after the guest wrote them again ({where})"
        )

    def cap_phrase(self, rate: float) -> list[str]:
        caps: list[tuple[float, str]] = []
        if self.fmt in ("qmp", "hmp") and self.m.max_bandwidth is None:
            caps += [
                (QEMU_OLD_DEFAULT_CAP, "QEMU's old 32 MiB/s default"),
                (QEMU_DEFAULT_CAP, "QEMU's 128 MiB/s default"),
            ]
        if self.m.max_bandwidth:
            caps.insert(0, (self.m.max_bandwidth, "the configured cap"))
        for cap, label in caps:
            if 0.85 * cap <= rate <= 1.03 * cap:
                return [f"that is {label} ({format_rate(cap)}): the migration is held at a limit"]
        link = link_match(rate)
        if link:
            return [f"that is the ceiling of {link[0]}"]
        return []
