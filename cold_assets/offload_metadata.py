"""Offload results in Dagster materialization metadata, and back.

Dagster records the same metadata for every partition of a ranged run (a backfill run that
covers many hours), so the per-partition facts are keyed by partition inside `offload`
(JSON). A run of a single partition also gets flat, typed values that the UI plots.
"""

from datetime import datetime

from dagster import AssetKey, AssetRecordsFilter, DagsterInstance, MetadataValue

from cold_assets.bookkeeping import PartitionState, StateSource
from cold_assets.offload import OffloadResult
from cold_assets.parity import HourParity

OFFLOAD_KEY = "offload"


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


def materialization_metadata(results: list[OffloadResult], parities: list[HourParity]) -> dict:
    """`parities` are the tiers' counts after the offload, one per result, same order."""
    written = sum(r.rows_written for r in results)
    seconds = sum(r.seconds for r in results)
    metadata: dict = {
        OFFLOAD_KEY: MetadataValue.json({r.partition_key: partition_entry(r, p) for r, p in zip(results, parities)}),
        "run_rows_written": MetadataValue.int(written),
        "run_partitions": MetadataValue.int(len(results)),
        "run_seconds": MetadataValue.float(round(seconds, 3)),
    }
    if len(results) == 1:
        (r,), (p,) = results, parities
        metadata.update(
            {
                "mode": MetadataValue.text(r.mode.value),
                "status": MetadataValue.text(r.status.value),
                "cold_only": MetadataValue.bool(p.cold_only),
                "watermark": MetadataValue.timestamp(r.watermark) if r.watermark else MetadataValue.null(),
                "rows_written": MetadataValue.int(r.rows_written),
                "warm_rows": MetadataValue.int(p.warm_rows),
                "cold_rows": MetadataValue.int(p.cold_rows),
                "snapshot_id": MetadataValue.text(str(r.snapshot_id or "")),
                "duration_s": MetadataValue.float(round(r.seconds, 3)),
                "rows_per_s": MetadataValue.float(round(r.rows_per_second, 1)),
                "dagster/row_count": MetadataValue.int(p.cold_rows),
            }
        )
    return metadata


def recorded_state(instance: DagsterInstance, asset_key: AssetKey, partition_key: str) -> PartitionState | None:
    """What Dagster recorded for this partition at its latest materialization."""
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=[partition_key]), limit=1
    ).records
    if not records or records[0].asset_materialization is None:
        return None
    value = records[0].asset_materialization.metadata.get(OFFLOAD_KEY)
    entry = (value.value if value is not None else {}).get(partition_key)
    if not entry:
        return None
    return PartitionState(
        watermark=datetime.fromisoformat(entry["watermark"]) if entry.get("watermark") else None,
        fingerprint=entry.get("fingerprint"),
        snapshot_id=int(entry["snapshot_id"]) if entry.get("snapshot_id") else None,
        run_id=records[0].run_id,
        source=StateSource.DAGSTER,
    )
