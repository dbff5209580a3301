"""Lab scenarios: a workload becomes a kernel command line; named runs make the matrix.

The guest's ``/init`` passes every ``dirt_*`` kernel parameter to the dirtier
(``dirt_ws=268435456 dirt_rate=67108864 dirt_pat=random dirt_bpp=8``), so the
kernel command line is the whole interface between host and guest.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from migtune.errors import InputError
from migtune.model import Settings
from migtune.settings import apply_assignment
from migtune.units import MiB, format_bytes
from migtune.workload import Workload, parse_workload

BASE_CMDLINE = ("console=ttyS0", "quiet", "panic=-1")
# Kernel, initramfs and page tables of the busybox guest; the working set must fit beside them.
GUEST_OVERHEAD = 96 * MiB
MIN_RAM = 128 * MiB


def workload_params(w: Workload) -> list[str]:
    """The ``dirt_*`` kernel parameters for a workload (empty for an idle guest)."""
    if w.idle:
        return []
    rate = "max" if w.rate is None else str(round(w.rate))
    params = [f"dirt_ws={w.ws}", f"dirt_rate={rate}", f"dirt_pat={w.pattern}"]
    if w.pattern == "hotcold":
        params += [f"dirt_hot={w.hot:g}", f"dirt_hotw={w.hotw:g}"]
    params += [f"dirt_bpp={w.bytes_per_write}", f"dirt_catchup={1 if w.catchup else 0}"]
    return params


def kernel_cmdline(w: Workload, extra: tuple[str, ...] = ()) -> str:
    return " ".join([*BASE_CMDLINE, *workload_params(w), *extra])


def check_fits(ram: int, w: Workload) -> None:
    """Refuse a guest too small to boot or to hold its working set."""
    if ram < MIN_RAM:
        raise InputError(f"guest RAM must be at least {format_bytes(MIN_RAM)}")
    if ram % MiB:
        raise InputError("guest RAM must be a whole number of MiB")
    if w.ws and w.ws + GUEST_OVERHEAD > ram:
        raise InputError(
            f"working set {format_bytes(w.ws)} does not fit in a {format_bytes(ram)} guest "
            f"(the guest itself needs about {format_bytes(GUEST_OVERHEAD)})"
        )


@dataclass(frozen=True, slots=True)
class Scenario:
    """One named lab run: guest size, workload, migration settings, policy and limits."""

    name: str
    description: str
    ram: int
    workload: str
    settings: tuple[str, ...] = ()  # ``name=value`` assignments (migtune.settings)
    policy: str = "fixed"
    time_limit: float = 30.0
    expect: str = "completed"  # completed | cancelled: what QEMU should do here
    postcopy_after_passes: int | None = None
    tags: tuple[str, ...] = field(default=())

    def parsed_workload(self) -> Workload:
        return parse_workload(self.workload)

    def build_settings(self) -> Settings:
        s = Settings()
        for assignment in self.settings:
            s = apply_assignment(s, assignment)
        return s

    @property
    def allow_postcopy(self) -> bool:
        return "postcopy-ram=on" in self.settings


LINK = "max-bandwidth=32MiB/s"  # the matrix's capped link: slow enough to matter on loopback
RAM = 512 * MiB
BELOW = "ws=128MiB,rate=8MiB/s,pattern=random,bytes=8"
ABOVE = "ws=128MiB,rate=64MiB/s,pattern=random,bytes=8"

MATRIX: tuple[Scenario, ...] = (
    Scenario("idle", "idle guest: zero pages cost a few bytes each", RAM, "idle", (LINK,)),
    Scenario(
        "below-link",
        "writes 8 MiB/s on a 32 MiB/s link: converges in a few passes",
        RAM,
        BELOW,
        (LINK,),
    ),
    Scenario(
        "above-link",
        "writes 64 MiB/s on a 32 MiB/s link: never converges, cancelled at the limit",
        RAM,
        ABOVE,
        (LINK,),
        time_limit=25,
        expect="cancelled",
    ),
    Scenario(
        "above-link-autoconverge",
        "as above-link with auto-converge: the throttled writer loses its time and fits the link",
        RAM,
        ABOVE,
        (LINK, "auto-converge=on"),
        time_limit=60,
    ),
    Scenario(
        "above-link-downtime-3s",
        "as above-link with a 3 s downtime limit: QEMU switches over with much dirty",
        RAM,
        ABOVE,
        (LINK, "downtime-limit=3s"),
        time_limit=40,
    ),
    Scenario(
        "xbzrle-cache-large",
        "above-link writer changing 8 bytes a page, XBZRLE cache 256 MiB > working set: converges",
        RAM,
        ABOVE,
        (LINK, "xbzrle=on", "xbzrle-cache-size=256MiB"),
        time_limit=45,
    ),
    Scenario(
        "xbzrle-cache-small",
        "the same with an 8 MiB cache, far below the working set: mostly misses",
        RAM,
        ABOVE,
        (LINK, "xbzrle=on", "xbzrle-cache-size=8MiB"),
        time_limit=30,
        expect="cancelled",
    ),
    Scenario(
        "xbzrle-overflow",
        "whole-page writes with a large cache: every hit overflows, XBZRLE cannot help",
        RAM,
        "ws=128MiB,rate=64MiB/s,pattern=random,bytes=4096",
        (LINK, "xbzrle=on", "xbzrle-cache-size=256MiB"),
        time_limit=30,
        expect="cancelled",
    ),
    Scenario(
        "postcopy",
        "above-link writer, post-copy after 2 passes: completes with pages pulled on demand",
        RAM,
        ABOVE,
        (LINK, "postcopy-ram=on"),
        time_limit=60,
        postcopy_after_passes=2,
    ),
    Scenario(
        "multifd",
        "below-link writer over 2 multifd channels (the cap still applies to their sum)",
        RAM,
        BELOW,
        (LINK, "multifd=on", "multifd-channels=2"),
    ),
    Scenario(
        "autoconverge-cpubound",
        "CPU-bound writer under auto-converge: even 80-99 % throttle leaves it above the link",
        RAM,
        "ws=128MiB,rate=unlimited,pattern=random,bytes=8",
        (LINK, "auto-converge=on"),
        time_limit=45,
        expect="cancelled",
    ),
    Scenario(
        "autoconverge-catchup",
        "rate-limited writer that catches up after being throttled: keeps its rate while CPU lasts",
        RAM,
        ABOVE + ",catchup=yes",
        (LINK, "auto-converge=on"),
        time_limit=45,
        expect="cancelled",
    ),
    Scenario(
        "above-link-proxmox",
        "64 MiB/s over 32 MiB, proxmox policy: downtime limit doubles from 100 ms until it fits",
        RAM,
        "ws=32MiB,rate=64MiB/s,pattern=random,bytes=8",
        (LINK,),
        policy="proxmox",
        time_limit=45,
    ),
)


def scenario_names() -> list[str]:
    return [s.name for s in MATRIX]


def select(names: list[str] | tuple[str, ...] | None) -> list[Scenario]:
    """The scenarios named (all of them for none), in matrix order; unknown names are errors."""
    if not names:
        return list(MATRIX)
    known = {s.name: s for s in MATRIX}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(
            f"unknown scenario {', '.join(unknown)} (known: {', '.join(scenario_names())})"
        )
    wanted = set(names)
    return [s for s in MATRIX if s.name in wanted]
