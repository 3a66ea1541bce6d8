"""The offload job and the schedules: the offload every 15 minutes, the nightly maintenance and audit."""

from collections.abc import Iterator, Sequence
from datetime import timedelta

from dagster import (
    AssetChecksDefinition,
    AssetSelection,
    DefaultScheduleStatus,
    JobDefinition,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from cold_assets.defs.assets import COLD_GROUP
from cold_assets.internals import UnresolvedAssetJobDefinition
from cold_assets.partitions import partition_key_of

OffloadJob = UnresolvedAssetJobDefinition  # define_asset_job's result, resolved by Definitions

OFFLOAD_JOB = "offload_cold"


def offload_job(maintenance_checks: Sequence[AssetChecksDefinition] = ()) -> OffloadJob:
    # Partitioning is inferred from the selected assets (hourly, partitions.py). The checks
    # that verify maintenance are recorded by the maintenance jobs, not by every offload.
    return define_asset_job(
        OFFLOAD_JOB,
        selection=AssetSelection.groups(COLD_GROUP) - AssetSelection.checks(*maintenance_checks),
        description="Offload the ten cold tables for the selected hours.",
    )


def offload_schedule(job: OffloadJob) -> ScheduleDefinition:
    @schedule(
        name="offload_every_15_minutes",
        cron_schedule="*/15 * * * *",
        job=job,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description="Every 15 minutes: offload the previous and the current hour in one run, so cold trails warm "
        "by about an hour.",
    )
    def _schedule(context: ScheduleEvaluationContext) -> Iterator[RunRequest]:
        now = context.scheduled_execution_time
        current = now.replace(minute=0, second=0, microsecond=0)
        first, last = partition_key_of(current - timedelta(hours=1)), partition_key_of(current)
        # One run for both hours (a partition range): one step per table instead of two, and
        # each hour still gets its own materialization with its own facts.
        yield RunRequest(
            run_key=f"{first}..{last}@{now:%Y%m%dT%H%M}",
            tags={"dagster/asset_partition_range_start": first, "dagster/asset_partition_range_end": last},
        )

    return _schedule


def _nightly(name: str, cron: str, job: JobDefinition, description: str) -> ScheduleDefinition:
    return ScheduleDefinition(
        name=name,
        job=job,
        cron_schedule=cron,
        execution_timezone="UTC",
        default_status=DefaultScheduleStatus.RUNNING,
        description=description,
    )


# The nightly order (defs/nightly.py): compaction, then expiry and orphans, then the audit.
def compaction_schedule(job: JobDefinition) -> ScheduleDefinition:
    return _nightly("compaction_0200_utc", "0 2 * * *", job, "Compact the closed partitions of the ten cold tables (Spark).")


def expiry_schedule(job: JobDefinition) -> ScheduleDefinition:
    return _nightly(
        "snapshot_expiry_0220_utc", "20 2 * * *", job,
        "Expire snapshots older than 7 days and remove orphan files older than 3 days (Spark).",
    )


def daily_audit_schedule(job: JobDefinition) -> ScheduleDefinition:
    return _nightly(
        "daily_audit_0230_utc", "30 2 * * *", job,
        "Audit every cold table against the warm tier over the lookback (default 7 days), then federate.",
    )
