"""Jobs that are not materializations: the nightly maintenance and the daily audit.

The three nightly jobs (02:00 compaction, 02:20 expiry and orphans, 02:30 audit) carry the
tag NIGHTLY_TAG; the run queue runs such runs one at a time, in order (docker/dagster.yaml), so the
audit sees what the maintenance did.
"""

from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    AssetObservation,
    Config,
    Failure,
    MetadataValue,
    OpExecutionContext,
    Out,
    in_process_executor,
    job,
    op,
)
from pydantic import Field

from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.checks import COMPACTION_PRESERVED_CONTENT, rewrite_proof_evaluation, verdicts_metadata
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.federation import federate
from cold_assets.hours import HourPolicy
from cold_assets.maintenance.operations import (
    CompactionResult,
    ExpiryResult,
    FileStats,
    OrphanResult,
    compact,
    expire_snapshots,
    file_stats,
    prove_rewrite,
    remove_orphan_files,
)
from cold_assets.maintenance.spark import SparkResource
from cold_assets.parity.audit import AuditReport, format_report, run_audit
from cold_assets.parity.checksums import ColdTierUnreadable
from cold_assets.settings import Settings
from cold_assets.tables import TABLES, MirroredTable, table_by_cold_name

T = TypeVar("T")
DAILY_AUDIT_JOB = "daily_audit"
COMPACTION_JOB = "compact_cold"
EXPIRY_JOB = "expire_cold_snapshots"
NIGHTLY_TAG = "cold-assets/nightly"
AUDIT_RANGE = "audit_range"  # marks the daily audit's observation of a table's hours


def _selected(tables: list[str]) -> list[MirroredTable]:
    return [table_by_cold_name(name) for name in tables] if tables else list(TABLES)


def _per_table(
    tables: list[MirroredTable], work: Callable[[MirroredTable], T], parallel: int, iceberg: IcebergResource
) -> Iterator[tuple[MirroredTable, T]]:
    """`work` for each table, `parallel` at a time, results in table order. One Spark session
    serves them all: a maintenance procedure is mostly planning and small jobs, so a few
    tables at once keep the cores busy. Not on a SQLite catalog (the embedded default): the
    file takes one writer at a time, and on the 2 cores it is meant for, 3 tables at once
    measured no faster (bench maintenance: 74-86 s against 77 s one at a time)."""
    if iceberg.one_writer_at_a_time:
        parallel = 1
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="maintenance") as pool:
        yield from zip(tables, pool.map(work, tables), strict=True)


PARALLEL_TABLES = Field(
    default=3, ge=1, le=9, description="Tables maintained at the same time, in one Spark session (1 on a SQLite catalog)."
)


class CompactionConfig(Config):
    tables: list[str] = Field(default=[], description="Cold tables to compact, e.g. silver_trades; empty: all ten.")
    lookback_days: int = Field(default=7, ge=1, description="Closed partitions compacted: this many days before today (UTC).")
    target_file_size_mb: int = Field(default=512, ge=16, description="Files are merged up to this size.")
    parallel_tables: int = PARALLEL_TABLES


@op(description="Merge the small files of the closed partitions, rewrite manifests, and prove nothing changed.")
def compact_cold_tables(
    context: OpExecutionContext, config: CompactionConfig, spark: SparkResource,
    iceberg: IcebergResource, clickhouse: ClickHouseResource,
) -> None:
    now = datetime.now(UTC)
    failed = []

    def compact_table(spec: MirroredTable) -> CompactionResult:
        return compact(
            spark.spark_session, iceberg.load_table(spec.cold_identifier), spec, spark.catalog_name, now,
            lookback_days=config.lookback_days,
            target_file_size_bytes=config.target_file_size_mb * 1024 * 1024,
        )

    for spec, result in _per_table(_selected(config.tables), compact_table, config.parallel_tables, iceberg):
        table = iceberg.load_table(spec.cold_identifier)
        key = cold_asset_key(spec)
        try:
            with clickhouse.connect() as client:
                proofs = [prove_rewrite(client, table, spec, snapshot_id) for snapshot_id in result.rewrite_snapshot_ids]
            evaluation = AssetCheckEvaluation(**rewrite_proof_evaluation(key, proofs))
        except ColdTierUnreadable as unreadable:
            # Rows are still counted by Iceberg, but the content cannot be hashed: say so.
            evaluation = AssetCheckEvaluation(
                asset_key=key, check_name=COMPACTION_PRESERVED_CONTENT, passed=False,
                severity=AssetCheckSeverity.WARN, description=f"not verified: {unreadable}",
                metadata={"rows_before": result.before.rows, "rows_after": result.after.rows},
            )
        context.log_event(
            AssetObservation(
                asset_key=key,
                description=f"compaction of [{result.lower:%Y-%m-%d}, {result.upper:%Y-%m-%d})",
                metadata={
                    "maintenance": MetadataValue.text("compaction"),
                    "data_files_before": MetadataValue.int(result.before.data_files),
                    "data_files_after": MetadataValue.int(result.after.data_files),
                    "bytes_before": MetadataValue.int(result.before.bytes),
                    "bytes_after": MetadataValue.int(result.after.bytes),
                    "max_files_per_partition_after": MetadataValue.int(result.after.max_files_per_partition),
                    "files_rewritten": MetadataValue.int(result.rewritten_files),
                    "files_added": MetadataValue.int(result.added_files),
                    "manifests_rewritten": MetadataValue.int(result.manifests_rewritten),
                    "conflicts_retried": MetadataValue.int(result.conflicts_retried),
                    "duration_s": MetadataValue.float(round(result.seconds, 3)),
                },
            )
        )
        context.log_event(evaluation)  # type: ignore[arg-type]  # Dagster logs check evaluations from an op
        context.log.info(
            f"{spec.cold}: {result.before.data_files} -> {result.after.data_files} files in "
            f"[{result.lower:%Y-%m-%d}, {result.upper:%Y-%m-%d}), {result.seconds:.1f} s; {evaluation.description}"
        )
        if not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR:
            failed.append(spec.cold)
    if failed:
        raise Failure(description=f"compaction changed the content of {', '.join(failed)} (see compaction_preserved_content)")


class ExpiryConfig(Config):
    tables: list[str] = Field(default=[], description="Cold tables to clean, e.g. silver_trades; empty: all ten.")
    retain_days: int = Field(default=7, ge=1, description="Snapshots committed earlier than this many days ago are expired.")
    older_than: str | None = Field(
        default=None, description="ISO instant (UTC) overriding retain_days: expire snapshots committed before it."
    )
    every_commit_hours: int = Field(
        default=24, ge=1,
        description="Every snapshot of this many last hours is kept; before that, one per then_one_per_minutes "
        "(and each compaction with its parent) until retain_days.",
    )
    then_one_per_minutes: int = Field(
        default=1440, ge=1,
        description="Before every_commit_hours, the last snapshot of each such period is kept: 1440 one a (UTC) day, 60 one an hour.",
    )
    every_commit_after: str | None = Field(
        default=None, description="ISO instant (UTC) overriding every_commit_hours: every snapshot committed after it is kept."
    )
    orphan_age_days: int = Field(default=3, ge=1, description="Unreferenced files older than this are removed.")
    orphans_dry_run: bool = Field(default=False, description="List orphan files without deleting them.")
    parallel_tables: int = PARALLEL_TABLES


def _instant(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Failure(description=f"{name}={value!r} is not an ISO date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


@op(description="Expire snapshots older than the retention, then remove orphan files.")
def expire_snapshots_and_orphans(
    context: OpExecutionContext, config: ExpiryConfig, spark: SparkResource, iceberg: IcebergResource
) -> None:
    now = datetime.now(UTC)
    horizon = _instant("older_than", config.older_than) if config.older_than else now - timedelta(days=config.retain_days)
    if config.every_commit_after:
        every_commit_after = _instant("every_commit_after", config.every_commit_after)
    else:
        every_commit_after = now - timedelta(hours=config.every_commit_hours)
    one_per = timedelta(minutes=config.then_one_per_minutes)

    def clean_table(spec: MirroredTable) -> tuple[FileStats, ExpiryResult, OrphanResult, FileStats]:
        table = iceberg.load_table(spec.cold_identifier)
        before = file_stats(table, spec)
        expiry = expire_snapshots(
            spark.spark_session, table, spec, spark.catalog_name, horizon, every_commit_after, one_per
        )
        orphans = remove_orphan_files(
            spark.spark_session, spec, spark.catalog_name, now - timedelta(days=config.orphan_age_days), now, config.orphans_dry_run
        )
        return before, expiry, orphans, file_stats(table.refresh(), spec)

    for spec, (before, expiry, orphans, after) in _per_table(_selected(config.tables), clean_table, config.parallel_tables, iceberg):
        context.log_event(
            AssetObservation(
                asset_key=cold_asset_key(spec),
                description=f"snapshots before {horizon:%Y-%m-%d %H:%M} UTC expired, "
                f"one per {config.then_one_per_minutes} min kept before {every_commit_after:%Y-%m-%d %H:%M} UTC; orphans"
                + (" listed (dry run)" if orphans.dry_run else " removed"),
                metadata={
                    "maintenance": MetadataValue.text("expiry"),
                    "snapshots_before": MetadataValue.int(expiry.snapshots_before),
                    "snapshots_after": MetadataValue.int(expiry.snapshots_after),
                    "snapshots_expired": MetadataValue.int(expiry.snapshots_expired),
                    "snapshots_thinned": MetadataValue.int(expiry.snapshots_thinned),
                    "expired_data_files_deleted": MetadataValue.int(expiry.data_files_deleted),
                    "manifests_deleted": MetadataValue.int(expiry.manifests_deleted + expiry.manifest_lists_deleted),
                    "orphans_found": MetadataValue.int(len(orphans.orphans)),
                    "orphans_removed": MetadataValue.int(0 if orphans.dry_run else len(orphans.orphans)),
                    "orphan_files": MetadataValue.json(orphans.orphans[:50]),
                    "data_files": MetadataValue.int(after.data_files),
                    "bytes_before": MetadataValue.int(before.bytes),
                    "bytes_after": MetadataValue.int(after.bytes),
                    "duration_s": MetadataValue.float(round(expiry.seconds + orphans.seconds, 3)),
                },
            )
        )
        context.log.info(
            f"{spec.cold}: {expiry.snapshots_expired} snapshots expired ({expiry.snapshots_thinned} thinned), "
            f"{expiry.data_files_deleted} data files deleted, "
            f"{len(orphans.orphans)} orphans {'found (dry run)' if orphans.dry_run else 'removed'} "
            f"({expiry.seconds:.1f} s + {orphans.seconds:.1f} s)"
        )


@job(
    name=COMPACTION_JOB,
    executor_def=in_process_executor,  # one Spark session per run; Spark parallelizes itself
    tags={NIGHTLY_TAG: "compaction"},
    description="Nightly: compact the closed partitions of the ten cold tables on Spark.",
)
def compaction_job() -> None:
    compact_cold_tables()


@job(
    name=EXPIRY_JOB,
    executor_def=in_process_executor,
    tags={NIGHTLY_TAG: "expiry"},
    description="Nightly: expire old snapshots and remove orphan files of the ten cold tables on Spark.",
)
def expiry_job() -> None:
    expire_snapshots_and_orphans()


class AuditConfig(Config):
    lookback_days: int = Field(default=7, ge=1, description="Days audited, ending at the start of `until`.")
    until: str | None = Field(default=None, description="ISO date (UTC) the audit ends at; default: today.")


def audit_observations(report: AuditReport, start: datetime, end: datetime, clickhouse_version: str) -> list[AssetObservation]:
    """Each audited table's verdicts, hour by hour, as an observation of its asset: where the
    exporter and the status page read them (monitoring/), since they never query a tier."""
    observations = []
    for spec in TABLES:
        if spec.cold not in report.compared_at:
            continue  # not audited by this run
        parities = [p for p in report.parity if p.table == spec.cold]
        observations.append(
            AssetObservation(
                asset_key=cold_asset_key(spec),
                description=f"audit of [{start:%Y-%m-%d %H:%M}, {end:%Y-%m-%d %H:%M}): "
                f"{sum(not p.content_matches for p in parities)} of {len(parities)} hours differ",
                metadata={
                    AUDIT_RANGE: MetadataValue.text(f"{start.isoformat()}/{end.isoformat()}"),
                    "clickhouse_version": MetadataValue.text(clickhouse_version),
                    **verdicts_metadata(parities, [p for p in parities if not p.content_matches]),
                },
            )
        )
    return observations


@op(out=Out(dict), description="Every cold table against its warm table, hour by hour, and the warm medallion's consistency.")
def audit_cold_tier(
    context: OpExecutionContext, config: AuditConfig, clickhouse: ClickHouseResource, iceberg: IcebergResource
) -> dict:
    """Audits and records; the verdict comes after the federation, so that a mismatch in one
    table does not keep the other views' cutovers from moving."""
    end = (_instant("until", config.until) if config.until else datetime.now(UTC)).replace(hour=0, minute=0, second=0, microsecond=0)
    start = end - timedelta(days=config.lookback_days)
    with clickhouse.connect() as client:
        report = run_audit(client, iceberg.catalog(), start, end, policy=HourPolicy.from_settings(Settings.from_env()))
        clickhouse_version = str(client.server_version)
    for observation in audit_observations(report, start, end, clickhouse_version):
        context.log_event(observation)
    mismatches = [{"table": p.table, "hour": p.partition_key, "warm": p.warm_rows, "cold": p.cold_rows} for p in report.mismatches]
    context.log.info(format_report(report))
    context.add_output_metadata(
        {
            "table_hours_checked": MetadataValue.int(len(report.parity)),
            "table_hours_mismatched": MetadataValue.int(len(report.mismatches)),
            "table_hours_cold_only": MetadataValue.int(sum(p.cold_only for p in report.parity)),
            "medallion_checks_failed": MetadataValue.int(len(report.medallion_failures)),
            "mismatches": MetadataValue.json(mismatches),
        }
    )
    return {
        "range": f"{start:%Y-%m-%d} .. {end:%Y-%m-%d}",
        "mismatches": mismatches,
        "medallion_failures": [f"{m.check} {m.hour}" for m in report.medallion_failures],
    }


@op(description="Move each federated view's cutover as far as parity allows and recreate the `<warm>_all` views.")
def federate_views(context: OpExecutionContext, audit: dict, clickhouse: ClickHouseResource, iceberg: IcebergResource) -> dict:
    with clickhouse.connect() as client:
        federated = federate(client, iceberg.catalog(), HourPolicy.from_settings(Settings.from_env()))
    results = [r for r in federated if r.error is None]
    failures = {r.table: r.error for r in federated if r.error is not None}
    for result in results:
        spec = table_by_cold_name(result.table)
        context.log_event(
            AssetObservation(
                asset_key=cold_asset_key(spec),
                description=f"{result.view}: warm from {result.cutover:%Y-%m-%d %H:%M} UTC, cold before",
                metadata={
                    "federation_cutover": MetadataValue.timestamp(result.cutover),
                    "federated_view": MetadataValue.text(result.view),
                    "hours_proven": MetadataValue.int(result.hours_proven),
                },
            )
        )
    for table, error in failures.items():
        context.log.error(f"federation of {table} failed: {error}")
    context.add_output_metadata({"cutovers": MetadataValue.json({r.view: r.cutover.isoformat() for r in results})})
    return {**audit, "federation_failures": failures}


@op(description="Fail the run if the audit found a mismatch or a view could not be federated (after every view moved).")
def audit_verdict(findings: dict) -> None:
    problems = []
    if findings["mismatches"]:
        tables = sorted({m["table"] for m in findings["mismatches"]})
        problems.append(f"{len(findings['mismatches'])} table-hours differ ({', '.join(tables)})")
    if findings["medallion_failures"]:
        problems.append(f"{len(findings['medallion_failures'])} medallion checks failed")
    if findings["federation_failures"]:
        problems.append("federation failed for " + ", ".join(sorted(findings["federation_failures"])))
    if problems:
        raise Failure(description=f"audit {findings['range']}: " + "; ".join(problems))


@job(
    name=DAILY_AUDIT_JOB,
    tags={NIGHTLY_TAG: "audit"},
    description="The daily audit of the cold tier against the warm tier, then the federated views.",
)
def daily_audit_job() -> None:
    audit_verdict(federate_views(audit_cold_tier()))
