"""The state of each (table, hour), from the verdicts Dagster already holds: the parity checks'
evaluations (every offload) and the daily audit's observations, newest verdict winning.
Nothing here queries a tier; the jobs did, and recorded what they found (defs/checks.py
`verdicts_metadata`)."""

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Any

from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.tables import MirroredTable


class HourState(str, Enum):
    PROVEN = "proven"  # closed, and both tiers equal at the newest verdict
    # closed, reprocessed while warm holds it: cold holds what the reprocess wrote, and warm
    # keeps the earlier logic's rows, unequal by design (offload/reprocessed.py)
    REPROCESSED = "reprocessed"
    OPEN = "open"  # still taking rows (settle lag, late grace); equal so far
    COLD_ONLY = "cold_only"  # older than warm's retention: cold is the only copy
    MISMATCHED = "mismatched"  # the tiers differ
    REFUSED = "refused"  # the offload refused it: warm lost rows cold keeps
    UNVERIFIED = "unverified"  # offloaded, but no verdict on its content (yet)
    NEVER_OFFLOADED = "never_offloaded"  # no materialization of the hour


ALARMING = (HourState.MISMATCHED, HourState.REFUSED)


def verdicts_of(metadata: Mapping[str, Any], content_checked: bool = True) -> dict[str, HourState]:
    """Each hour's state by one verdict (its metadata values, unwrapped). An hour whose
    checksums could not be computed (`hours_unchecked`; for a verdict recorded before that
    field, every hour of a check that only warned, `content_checked` False) proves nothing."""
    differing = {d["hour"]: d for d in metadata.get("hours_differing") or []}
    cold_only = set(metadata.get("hours_cold_only") or [])
    still_open = set(metadata.get("hours_open") or [])
    reprocessed = set(metadata.get("hours_reprocessed") or [])
    unchecked = set(metadata["hours_unchecked"] or []) if "hours_unchecked" in metadata else None
    states = {}
    for hour in metadata.get("hours") or []:
        if hour in differing:
            states[hour] = HourState.REFUSED if differing[hour].get("refused") else HourState.MISMATCHED
        elif hour in cold_only:
            states[hour] = HourState.COLD_ONLY
        elif (hour in unchecked) if unchecked is not None else not content_checked:
            states[hour] = HourState.UNVERIFIED
        elif hour in still_open:
            states[hour] = HourState.OPEN
        elif hour in reprocessed:
            states[hour] = HourState.REPROCESSED
        else:
            states[hour] = HourState.PROVEN
    return states


def keys_of_range(spec: MirroredTable, partition_key: str) -> list[str]:
    """The partition keys one verdict on `partition_key` speaks of: its offload range's (the
    daily bars' day is compared whole, whichever of its hours was asked)."""
    start, end = spec.offload_range(hour_of(partition_key))
    return [partition_key_of(start + timedelta(hours=h)) for h in range(int((end - start) / timedelta(hours=1)))]


# A verdict recorded before verdicts carried `compared_at` is timed when its step logged it,
# up to a step's length after it compared (a backfill's step spans several commits). Two
# verdicts on one hour closer than this, one of them timed so, are of uncertain order, and
# the alarming one is kept.
UNCERTAIN_ORDER_S = 300.0


@dataclass
class _Hour:
    newest_at: float
    newest: HourState
    newest_exact: bool  # `newest_at` is when the tiers were compared
    refused_at: float | None = None  # the newest refusal
    cleared_at: float | None = None  # the newest verdict that found the hour whole (or open)


class VerdictBook:
    """One table's verdicts per hour, reduced to what its state needs; whatever order they are
    recorded in, the same state results."""

    def __init__(self, spec: MirroredTable):
        self.spec = spec
        self._hours: dict[str, _Hour] = {}

    def record(self, at: float, states: Mapping[str, HourState], exact: bool = True) -> None:
        """A verdict made at `at` (Unix seconds; `exact`: when the tiers were compared, else
        when it was recorded). A mismatch does not hide a refusal: the audit, which knows
        nothing of the offload's refusals, sees a refused hour as mismatched; a newer verdict
        that finds the hour whole clears it."""
        for key, state in states.items():
            for hour in keys_of_range(self.spec, key):
                known = self._hours.get(hour)
                if known is None:
                    known = self._hours[hour] = _Hour(at, state, exact)
                elif _newer(at, state, exact, known):
                    known.newest_at, known.newest, known.newest_exact = at, state, exact
                if state is HourState.REFUSED:
                    known.refused_at = max(at, known.refused_at or at)
                elif state not in ALARMING:
                    known.cleared_at = max(at, known.cleared_at or at)

    def state(self, hour: str) -> HourState | None:
        known = self._hours.get(hour)
        if known is None:
            return None
        refused = known.refused_at is not None and (known.cleared_at is None or known.cleared_at < known.refused_at)
        return HourState.REFUSED if refused and known.newest in ALARMING else known.newest

    def forget_before(self, hour: str) -> None:
        """Hours older than `hour` are shown no more: their verdicts go (the book stays the size of the window)."""
        for old in [h for h in self._hours if h < hour]:
            del self._hours[old]


def _newer(at: float, state: HourState, exact: bool, known: _Hour) -> bool:
    uncertain = not (exact and known.newest_exact) and abs(at - known.newest_at) < UNCERTAIN_ORDER_S
    if uncertain and (state in ALARMING) != (known.newest in ALARMING):
        return state in ALARMING
    return at >= known.newest_at


def state_now(
    verdict: HourState | None, materialized: bool, spec: MirroredTable, hour: str, now: datetime, policy: HourPolicy
) -> HourState:
    """What an hour is at `now` (`materialized`: Dagster recorded a materialization of it that
    succeeded, ever): its newest verdict, moved on by time alone where warm has
    forgotten the hour since (cold-only, as the audit would say, but for an hour last found
    mismatched or refused: what cold lacked is lost, and it stays alarming) or the hour has
    closed since it was found open (unverified until a verdict on the closed hour)."""
    status = policy.status(spec, hour_of(hour), now)
    if status is HourStatus.COLD_ONLY:
        if verdict in ALARMING:
            return verdict
        if verdict is None and not materialized:
            return HourState.NEVER_OFFLOADED
        return HourState.COLD_ONLY
    if verdict is None:
        return HourState.UNVERIFIED if materialized else HourState.NEVER_OFFLOADED
    if verdict is HourState.OPEN and status is HourStatus.CLOSED:
        return HourState.UNVERIFIED
    return verdict
