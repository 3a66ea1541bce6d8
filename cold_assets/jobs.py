"""Jobs that are not materializations: the daily audit."""

from datetime import datetime, timedelta, timezone

from dagster import Config, Failure, MetadataValue, OpExecutionContext, job, op
from pydantic import Field

from cold_assets.audit import format_report, run_audit
from cold_assets.resources import ClickHouseResource, IcebergResource

DAILY_AUDIT_JOB = "daily_audit"


class AuditConfig(Config):
    lookback_days: int = Field(default=7, ge=1, description="Days audited, ending at the start of today (UTC).")


@op(description="Every cold table against its warm table, hour by hour, and the warm medallion's consistency.")
def audit_cold_tier(
    context: OpExecutionContext, config: AuditConfig, clickhouse: ClickHouseResource, iceberg: IcebergResource
) -> None:
    end = datetime.now(timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=config.lookback_days)
    with clickhouse.connect() as client:
        report = run_audit(client, iceberg.catalog(), start, end)
    metadata = {
        "table_hours_checked": MetadataValue.int(len(report.parity)),
        "table_hours_mismatched": MetadataValue.int(len(report.mismatches)),
        "medallion_checks_failed": MetadataValue.int(len(report.medallion_failures)),
        "mismatches": MetadataValue.json(
            [{"table": p.table, "hour": p.partition_key, "warm": p.warm_rows, "cold": p.cold_rows} for p in report.mismatches]
        ),
    }
    context.log.info(format_report(report))
    if not report.ok:
        raise Failure(
            description=f"audit {start:%Y-%m-%d} .. {end:%Y-%m-%d}: {len(report.mismatches)} table-hours differ, "
            f"{len(report.medallion_failures)} medallion checks failed",
            metadata=metadata,
        )
    context.add_output_metadata(metadata)


@job(name=DAILY_AUDIT_JOB, description="The daily audit of the cold tier against the warm tier.")
def daily_audit_job():
    audit_cold_tier()
