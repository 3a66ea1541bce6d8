"""The state of each (table, hour), from the verdicts Dagster already holds: the parity checks'
evaluations (every offload) and the daily audit's observations, newest verdict winning.
Nothing here queries a tier; the jobs did, and recorded what they found (defs/checks.py
`verdicts_metadata`)."""

from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any

from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.partitions import hour_of
from cold_assets.tables import MirroredTable


class HourState(str, Enum):
    PROVEN = "proven"  # closed, and both tiers equal at the newest verdict
    OPEN = "open"  # still taking rows (settle lag, late grace); equal so far
    COLD_ONLY = "cold_only"  # older than warm's retention: cold is the only copy
    MISMATCHED = "mismatched"  # the tiers differ
    REFUSED = "refused"  # the offload refused it: warm lost rows cold keeps
    UNVERIFIED = "unverified"  # offloaded, but no verdict on its content (yet)
    NEVER_OFFLOADED = "never_offloaded"  # no materialization of the hour


def verdicts_of(metadata: Mapping[str, Any], content_checked: bool = True) -> dict[str, HourState]:
    """Each hour's state by one verdict (its metadata values, unwrapped). A content check that
    could not compute checksums (`content_checked` False) proves nothing of the hours it
    did not find differing."""
    differing = {d["hour"]: d for d in metadata.get("hours_differing") or []}
    cold_only = set(metadata.get("hours_cold_only") or [])
    still_open = set(metadata.get("hours_open") or [])
    states = {}
    for hour in metadata.get("hours") or []:
        if hour in differing:
            states[hour] = HourState.REFUSED if differing[hour].get("refused") else HourState.MISMATCHED
        elif hour in cold_only:
            states[hour] = HourState.COLD_ONLY
        elif hour in still_open:
            states[hour] = HourState.OPEN
        else:
            states[hour] = HourState.PROVEN if content_checked else HourState.UNVERIFIED
    return states


def state_now(
    verdict: HourState | None, materialized: bool, spec: MirroredTable, hour: str, now: datetime, policy: HourPolicy
) -> HourState:
    """What an hour is at `now`: its newest verdict, moved on by time alone where warm has
    forgotten the hour since (cold-only, as the audit would say) or the hour has closed since
    it was found open (unverified until a verdict on the closed hour)."""
    status = policy.status(spec, hour_of(hour), now)
    if status is HourStatus.COLD_ONLY:
        return HourState.COLD_ONLY if materialized or verdict is not None else HourState.NEVER_OFFLOADED
    if verdict is None:
        return HourState.UNVERIFIED if materialized else HourState.NEVER_OFFLOADED
    if verdict is HourState.OPEN and status is HourStatus.CLOSED:
        return HourState.UNVERIFIED
    return verdict
