"""The parity checks' history, as the sensors follow it: each check's evaluations newer than a
sensor's cursor, per (table, check, hour), from Dagster's asset check execution records."""

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import cast

from dagster import AssetCheckEvaluation, AssetCheckKey, DagsterInstance, RunsFilter

from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.checks import CHECK_NAMES
from cold_assets.internals import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecord,
    AssetCheckExecutionRecordStatus,
)
from cold_assets.tables import TABLES


def check_keys() -> list[AssetCheckKey]:
    return [AssetCheckKey(cold_asset_key(t), name) for t in TABLES for name in CHECK_NAMES]


def evaluation_of(record: AssetCheckExecutionRecord) -> AssetCheckEvaluation | None:
    """The evaluation a check execution recorded; None for one only planned (its run failed first)."""
    event = record.event.dagster_event if record.event else None
    data = event.event_specific_data if event else None
    return data if isinstance(data, AssetCheckEvaluation) else None


def hours_of_evaluation(evaluation: AssetCheckEvaluation) -> tuple[list[str], dict[str, dict]]:
    metadata = evaluation.metadata
    hours = cast(list[str], metadata["hours"].value) if "hours" in metadata else []
    differing_hours = cast(list[dict], metadata["hours_differing"].value) if "hours_differing" in metadata else []
    return hours, {d["hour"]: d for d in differing_hours}


# A check's record is made when its run is created (PLANNED) and completed in place when the run
# evaluates the check: queued runs complete out of id order. A record may also become visible
# after a later id's (PostgreSQL assigns ids before commit): one created this close to the
# newest one read keeps the floor below it a while.
RECENT_S = 60.0
# A planned record holds the floor while its run goes, for at most this long after it was
# made: a run that never ends (its worker killed, no run monitoring) must not hold it forever,
# or every follow would re-read, and every cursor keep, all that came since.
HOLD_S = 6 * 3600.0
PAGE = 500


@dataclass
class CheckCursor:
    """Where a follower of one check's records stands: every record at or below `floor` was
    handed out or will never be evaluated (its run ended first); `handed` holds the ids above
    the floor handed out already (the floor waits for older records still planned)."""

    floor: int = 0
    handed: set[int] = field(default_factory=set)

    def to_json(self) -> dict:
        return {"floor": self.floor, "handed": sorted(self.handed)}

    @classmethod
    def from_json(cls, value: dict | int) -> "CheckCursor":
        if isinstance(value, int):  # the older form of the cursor: the newest id handed out
            return cls(floor=value)
        return cls(floor=int(value["floor"]), handed={int(i) for i in value["handed"]})


def follow_check(
    instance: DagsterInstance, key: AssetCheckKey, cursor: CheckCursor | None, first_page: int = 100
) -> tuple[list[tuple[AssetCheckExecutionRecord, AssetCheckEvaluation]], CheckCursor]:
    """A check's evaluations not handed out yet, oldest id first, and the cursor after them.
    With no cursor: the newest `first_page` records only (a new follower does not read years)."""
    storage = instance.event_log_storage
    if cursor is None:
        records = list(storage.get_asset_check_execution_history(key, limit=first_page))
        cursor = CheckCursor(floor=min(r.id for r in records) - 1 if len(records) == first_page else 0)
    else:
        # Newest first, in pages that grow while the records are above the floor: a tick after
        # a tick reads a few records, not a page of old ones.
        records, before, limit = [], None, 8
        while True:
            page = storage.get_asset_check_execution_history(key, limit=limit, cursor=before)
            records += [r for r in page if r.id > cursor.floor]
            if len(page) < limit or page[-1].id <= cursor.floor:
                break
            before, limit = page[-1].id, min(PAGE, limit * 4)
    records.sort(key=lambda r: r.id)
    planned = [r for r in records if r.status == AssetCheckExecutionRecordStatus.PLANNED]
    going = _runs_going(instance, {r.run_id for r in planned})
    evaluations, settled, waiting = [], set(cursor.handed), []
    newest_at = max((r.create_timestamp for r in records), default=0.0)
    for record in records:
        if record.id in cursor.handed:
            continue
        if record.status in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES:
            evaluation = evaluation_of(record)
            if evaluation is not None:
                evaluations.append((record, evaluation))
            settled.add(record.id)
        elif record.run_id in going and record.create_timestamp > newest_at - HOLD_S:
            waiting.append(record.id)
        else:
            settled.add(record.id)  # its run ended before evaluating it (or has held the floor too long)
    recent = [r.id for r in records if r.create_timestamp > newest_at - RECENT_S]
    held = waiting + recent
    floor = min(held) - 1 if held else max((r.id for r in records), default=cursor.floor)
    floor = max(floor, cursor.floor)
    return evaluations, CheckCursor(floor=floor, handed={i for i in settled if i > floor})


def _runs_going(instance: DagsterInstance, run_ids: set[str]) -> set[str]:
    if not run_ids:
        return set()
    runs = instance.get_run_records(filters=RunsFilter(run_ids=sorted(run_ids)))
    return {r.dagster_run.run_id for r in runs if not r.dagster_run.is_finished}


def new_evaluations(
    instance: DagsterInstance, key: AssetCheckKey, state: dict
) -> list[tuple[AssetCheckExecutionRecord, AssetCheckEvaluation]]:
    """A sensor's follow of one check: its cursor is `state["checks"][key]` (a CheckCursor),
    moved past what is handed out."""
    name = key.to_user_string()
    cursors = state.setdefault("checks", {})
    old = state.get("seen", {}).pop(name, None)  # the older form of the cursor
    if "seen" in state and not state["seen"]:
        del state["seen"]
    stored = cursors.get(name, old)
    evaluations, cursor = follow_check(instance, key, None if stored is None else CheckCursor.from_json(stored))
    cursors[name] = cursor.to_json()
    return evaluations


def follow_parity_checks(instance: DagsterInstance, state: dict) -> Iterator[tuple[str, str, dict | None, str]]:
    """The parity checks' evaluations newer than the cursor's, oldest first: per hour
    evaluated, ("table|check|hour", check name, what differed or None, run id)."""
    for key in check_keys():
        for record, evaluation in new_evaluations(instance, key, state):
            hours, differing = hours_of_evaluation(evaluation)
            for hour in hours:
                yield f"{key.asset_key.path[-1]}|{key.name}|{hour}", key.name, differing.get(hour), record.run_id
