"""The pre-copy simulator (docs/qemu-migration.md §14) and the XBZRLE codec (§4).

``simulate(ram_bytes, workload, settings, ...)`` is the entry point; see
:mod:`migtune.sim.api` and ``docs/simulator.md``.
"""

from __future__ import annotations

from migtune.sim.api import SimResult, simulate
from migtune.sim.machine import Machine

__all__ = ["Machine", "SimResult", "simulate"]
