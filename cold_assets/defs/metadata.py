"""Offload results in Dagster materialization metadata, and back.

A run that covers many hours (a backfill, the schedule's tick) records one materialization
per hour, each with that hour's own facts: Dagster would give a ranged run's single output
the same metadata for every partition (dagster-io/dagster#18123), so the asset's output is
skippable and the step logs one AssetMaterialization per partition instead.
"""

from dagster import MetadataValue

from cold_assets.offload.protocol import OffloadResult
from cold_assets.parity.checksums import HourParity

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
        "bytes_written": result.bytes_written,
        "warm_rows": parity.warm_rows,
        "cold_rows": parity.cold_rows,
        "snapshot_id": str(result.snapshot_id) if result.snapshot_id else None,
        "seconds": round(result.seconds, 3),
        "commit_s": round(result.commit_seconds, 3) if result.commit_seconds is not None else None,
        "rows_per_s": round(result.rows_per_second, 1),
        "reconciled_from": result.reconciled_from.value,
    }


def partition_metadata(result: OffloadResult, parity: HourParity) -> dict:
    """One hour's facts as first-class, typed metadata of that hour's own materialization:
    the UI plots them whatever run wrote the hour (a single hour, a tick, a backfill). The
    same facts as JSON under `offload`, keyed by the hour, serve whoever reads them whole (the
    CLI, the soak). No offload reads them back: each reconciles from the table
    (offload/plan.py `reconcile`)."""
    return {
        OFFLOAD_KEY: MetadataValue.json({result.partition_key: partition_entry(result, parity)}),
        "mode": MetadataValue.text(result.mode.value),
        "status": MetadataValue.text(result.status.value),
        "cold_only": MetadataValue.bool(parity.cold_only),
        "watermark": MetadataValue.timestamp(result.watermark) if result.watermark else MetadataValue.null(),
        "rows_written": MetadataValue.int(result.rows_written),
        "bytes_written": MetadataValue.int(result.bytes_written),
        "warm_rows": MetadataValue.int(parity.warm_rows),
        "cold_rows": MetadataValue.int(parity.cold_rows),
        "snapshot_id": MetadataValue.text(str(result.snapshot_id or "")),
        "duration_s": MetadataValue.float(round(result.seconds, 3)),
        # Its checkpoint's catalog commit alone (the same for every hour of the checkpoint).
        "commit_s": MetadataValue.float(round(result.commit_seconds, 3)) if result.commit_seconds is not None else MetadataValue.null(),
        "rows_per_s": MetadataValue.float(round(result.rows_per_second, 1)),
        "dagster/row_count": MetadataValue.int(parity.cold_rows),
    }
