"""The parity checks' history, as the sensors follow it: each check's evaluations newer than a
sensor's cursor, per (table, check, hour), from Dagster's asset check execution records."""

from collections.abc import Iterator
from typing import cast

from dagster import AssetCheckEvaluation, AssetCheckKey

from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.checks import CHECK_NAMES
from cold_assets.internals import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecord,
    EventLogStorage,
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


def new_evaluations(
    storage: EventLogStorage, key: AssetCheckKey, state: dict, limit: int = 100
) -> Iterator[tuple[AssetCheckExecutionRecord, AssetCheckEvaluation]]:
    """A check's completed evaluations newer than the cursor's (`state["seen"]`), oldest first;
    the cursor moves past each one as it is handed out."""
    name = key.to_user_string()
    last = state["seen"].get(name, 0)
    records = [
        r for r in storage.get_asset_check_execution_history(key, limit=limit)
        if r.id > last and r.status in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
    ]
    for record in sorted(records, key=lambda r: r.id):
        evaluation = evaluation_of(record)
        if evaluation is not None:
            yield record, evaluation
        state["seen"][name] = max(state["seen"].get(name, 0), record.id)


def follow_parity_checks(storage: EventLogStorage, state: dict) -> Iterator[tuple[str, str, dict | None, str]]:
    """The parity checks' evaluations newer than the cursor's, oldest first: per hour
    evaluated, ("table|check|hour", check name, what differed or None, run id)."""
    for key in check_keys():
        for record, evaluation in new_evaluations(storage, key, state):
            hours, differing = hours_of_evaluation(evaluation)
            for hour in hours:
                yield f"{key.asset_key.path[-1]}|{key.name}|{hour}", key.name, differing.get(hour), record.run_id
