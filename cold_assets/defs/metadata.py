"""Offload results in Dagster materialization metadata, and back.

A run that covers many hours (a backfill, the schedule's tick) records one materialization
per hour, each with that hour's own facts: Dagster would give a ranged run's single output
the same metadata for every partition (dagster-io/dagster#18123), so the asset's output is
skippable and the step logs one AssetMaterialization per partition instead.
"""

from datetime import datetime
from typing import cast

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, MetadataValue

from cold_assets.offload.bookkeeping import PartitionState, StateSource
from cold_assets.offload.protocol import OffloadResult
from cold_assets.parity.checksums import HourParity

OFFLOAD_KEY = "offload"
RECORDS_PAGE = 1000


def partition_entry(result: OffloadResult, parity: HourParity) -> dict:
    return {
        "mode": result.mode.value,
        "status": result.status.value,
        "cold_only": parity.cold_only,
        "parity_basis": parity.basis.value,
        "watermark": result.watermark.isoformat() if result.watermark else None,
        "fingerprint": result.fingerprint,
        "rows_written": result.rows_written,
        "warm_rows": parity.warm_rows,
        "cold_rows": parity.cold_rows,
        "snapshot_id": str(result.snapshot_id) if result.snapshot_id else None,
        "seconds": round(result.seconds, 3),
        "rows_per_s": round(result.rows_per_second, 1),
        "reconciled_from": result.reconciled_from.value,
    }


def partition_metadata(result: OffloadResult, parity: HourParity) -> dict:
    """One hour's facts as first-class, typed metadata of that hour's own materialization:
    the UI plots them whatever run wrote the hour (a single hour, a tick, a backfill). The
    same facts as JSON under `offload`, keyed by the hour, are what the next run reconciles
    from (`recorded_state`)."""
    return {
        OFFLOAD_KEY: MetadataValue.json({result.partition_key: partition_entry(result, parity)}),
        "mode": MetadataValue.text(result.mode.value),
        "status": MetadataValue.text(result.status.value),
        "cold_only": MetadataValue.bool(parity.cold_only),
        "watermark": MetadataValue.timestamp(result.watermark) if result.watermark else MetadataValue.null(),
        "rows_written": MetadataValue.int(result.rows_written),
        "warm_rows": MetadataValue.int(parity.warm_rows),
        "cold_rows": MetadataValue.int(parity.cold_rows),
        "snapshot_id": MetadataValue.text(str(result.snapshot_id or "")),
        "duration_s": MetadataValue.float(round(result.seconds, 3)),
        "rows_per_s": MetadataValue.float(round(result.rows_per_second, 1)),
        "dagster/row_count": MetadataValue.int(parity.cold_rows),
    }


def recorded_states(instance: DagsterInstance, asset_key: AssetKey, partition_keys: list[str]) -> dict[str, PartitionState]:
    """What Dagster recorded for each partition at its latest materialization: the event log
    read newest first, a page at a time, until every partition is found or the log ends."""
    wanted, found = set(partition_keys), dict[str, PartitionState | None]()
    cursor = None
    while wanted - found.keys():
        page = instance.fetch_materializations(
            AssetRecordsFilter(asset_key=asset_key, asset_partitions=sorted(wanted - found.keys())),
            limit=RECORDS_PAGE, cursor=cursor,
        )
        for record in page.records:
            key = record.partition_key
            if key is None or key in found or record.asset_materialization is None:
                continue
            found[key] = _state(record.asset_materialization.metadata.get(OFFLOAD_KEY), key, record.run_id)
        if not page.has_more:
            break
        cursor = page.cursor
    return {key: state for key, state in found.items() if state is not None}


def _state(value: MetadataValue | None, partition_key: str, run_id: str) -> PartitionState | None:
    # The offload's JSON metadata: {partition key: {"watermark": ISO instant, "fingerprint": ...}}
    entries = cast(dict[str, dict], value.value) if value is not None else {}
    entry = entries.get(partition_key)
    if not entry:
        return None
    return PartitionState(
        watermark=datetime.fromisoformat(entry["watermark"]) if entry.get("watermark") else None,
        fingerprint=entry.get("fingerprint"),
        snapshot_id=int(entry["snapshot_id"]) if entry.get("snapshot_id") else None,
        run_id=run_id,
        source=StateSource.DAGSTER,
    )
