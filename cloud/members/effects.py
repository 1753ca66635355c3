"""Event planners this area defines (event type -> planner); merged into tenpo.cloud.effects.PLANNERS."""

from __future__ import annotations

from tenpo.cloud.plan import Planner

PLANNERS: dict[str, Planner] = {}
