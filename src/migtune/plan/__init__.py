"""Host evacuation plans: which VMs to migrate in which order, how many at once, with
which settings, over one shared link (``migtune plan evacuate``; docs/plan.md).

``plan_evacuation(fleet, link_rate=...)`` is the entry point.
"""

from __future__ import annotations

from migtune.plan.fleet import VmSpec, load_fleet
from migtune.plan.link import share_link
from migtune.plan.planner import EvacuationPlan, plan_evacuation

__all__ = ["EvacuationPlan", "VmSpec", "load_fleet", "plan_evacuation", "share_link"]
