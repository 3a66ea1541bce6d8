"""The recovery jobs, launched by people from the webserver: restore warm from cold, and
reprocess the derived layers from cold raw (by day, backfillable)."""

from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from clickhouse_connect.driver.client import Client
from dagster import (
    AssetObservation,
    Config,
    Failure,
    JobDefinition,
    MetadataValue,
    OpExecutionContext,
    PartitionsDefinition,
    job,
    op,
)
from pydantic import Field
from pyiceberg.catalog import Catalog

from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.nightly import audit_observations
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.federation import follow_commits
from cold_assets.hours import HourPolicy
from cold_assets.recovery.reprocess import DERIVED, ReprocessRefused, format_reprocess, read_warm, reprocess
from cold_assets.recovery.restore import RestoreRefused, RestoreReport, format_restore, restore
from cold_assets.settings import Settings
from cold_assets.tables import table_by_cold_name
from cold_assets.warm.ddl import WarmLimits

RESTORE_JOB = "restore_warm"
REPROCESS_JOB = "reprocess_cold"


class RestoreConfig(Config):
    from_hour: str = Field(description="First hour restored, ISO 8601 on the hour (UTC without an offset), inside warm's retention.")
    to_hour: str = Field(description="End of the range (exclusive), on the hour.")
    tables: list[str] = Field(default=[], description="Cold table names (raw_trades, silver_trades, ...); empty: all ten.")
    dry_run: bool = Field(
        default=True,
        description="Count what would be written, per table and partition, and write nothing. Launch again with "
        "false to restore.",
    )


def _hour(name: str, value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise Failure(description=f"{name}={value!r} is not an ISO 8601 date-time") from None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


@op(description="Write cold's rows of the range back into the warm tables that lack them, then audit the range.")
def restore_from_cold(
    context: OpExecutionContext, config: RestoreConfig, clickhouse: ClickHouseResource, iceberg: IcebergResource
) -> None:
    start, end = _hour("from_hour", config.from_hour), _hour("to_hour", config.to_hour)
    try:
        tables = [table_by_cold_name(name) for name in config.tables] or None
    except ValueError as error:
        raise Failure(description=str(error)) from None
    with clickhouse.connect() as client:
        try:
            report = restore(
                client, iceberg.catalog(), start, end, tables,
                policy=HourPolicy.from_settings(Settings.from_env()), dry_run=config.dry_run,
            )
        except RestoreRefused as refused:  # before anything was written
            raise Failure(description=str(refused)) from None
        clickhouse_version = str(client.server_version)
    context.log.info(format_restore(report))
    if report.audit is not None:
        # The audit's verdicts, where the exporter and the status page read them.
        for observation in audit_observations(report.audit, start, end, clickhouse_version):
            context.log_event(observation)
    context.add_output_metadata(_metadata(report))
    if not report.ok:
        partial = sum(len(w) for w in report.partial_windows.values())
        done = f"a dry run: would restore {report.rows_added} rows" if report.dry_run else f"restored {report.rows_added} rows"
        why = []
        if partial:
            why.append(
                f"{partial} gold windows whose warm bar disagrees with cold's or the two tiers' silver "
                f"{'would not be' if report.dry_run else 'were not'} restored (named in the log and the metadata)"
            )
        if report.audit is not None and not report.audit.ok:
            why.append(f"the audit of the range found {len(report.audit.mismatches)} table-hours differing")
        raise Failure(description=f"{done}, but not whole: {'; '.join(why)}")


def _metadata(report: RestoreReport) -> dict:
    rows = "\n".join(
        f"| {p.table} | {p.partition} | {p.warm_rows} | {p.cold_rows} | {p.rows_added} |" for p in report.partitions
    )
    added = "rows to add" if report.dry_run else "rows added"
    header = f"| table | partition | warm rows | cold rows | {added} |\n|---|---|---|---|---|\n"
    return {
        "dry_run": MetadataValue.bool(report.dry_run),
        ("rows_to_add" if report.dry_run else "rows_added"): MetadataValue.int(report.rows_added),
        "partitions": MetadataValue.md(header + rows),
        "bars_keyed_by_window": MetadataValue.json(report.bars_keyed_by_window),
        "bars_keyed_uncertainly": MetadataValue.json(report.bars_keyed_uncertainly),
        "bars_merged_into_windows_held_in_part": MetadataValue.json(report.bars_merged),
        "partial_windows_not_restored": MetadataValue.json(report.partial_windows),
        "reprocessed_hours_left_out": MetadataValue.json({t: h for t, h in report.reprocessed.items() if h}),
        **({"audit_green": MetadataValue.bool(report.audit.ok)} if report.audit is not None else {}),
    }


@job(
    name=RESTORE_JOB,
    description="Restore warm from cold for hours inside warm's retention: only what warm lacks, each layer from its "
    "own cold table, no view runs; then the audit of the range. The launchpad's form defaults to a dry run.",
)
def restore_job() -> None:
    restore_from_cold()



class ReprocessConfig(Config):
    dry_run: bool = Field(
        default=True,
        description="Report per table the hours and rows the new logic changes, with a sample, and write nothing. "
        "Launch again with false to replace them.",
    )
    ddl_dir: str | None = Field(
        default=None, description="A folder of ClickHouse DDL to reprocess with (default: the project's ddl/clickhouse)."
    )


def open_scratch(path: Path) -> AbstractContextManager[Client]:
    """The reprocess's scratch medallion: an embedded chDB of its own at `path`."""
    return ClickHouseResource(chdb_path=str(path)).connect()


def follow_reprocessed_commits(clickhouse: ClickHouseResource, catalog: Catalog) -> None:
    """The `_all` views read the metadata file they were made over: after a reprocess's
    commits they follow them (as each offload's commit does), before older files are deleted."""
    with clickhouse.connect() as client:
        for spec in DERIVED:
            follow_commits(client, partial(catalog.load_table, spec.cold_identifier), spec)


def reprocess_job(partitions_def: PartitionsDefinition, settings: Settings) -> JobDefinition:
    @op(name="reprocess_day", description="Recompute bronze, silver and gold of the day from cold raw; replace the hours that change.")
    def reprocess_day(
        context: OpExecutionContext, config: ReprocessConfig, clickhouse: ClickHouseResource, iceberg: IcebergResource
    ) -> None:
        day = datetime.strptime(context.partition_key, "%Y-%m-%d").replace(tzinfo=UTC)
        policy, limits = HourPolicy.from_settings(settings), WarmLimits.from_settings(settings)
        # Each run (a day) has a scratch of its own: a backfill's days run in parallel where
        # the instance allows.
        scratch = settings.home / "scratch" / context.run.run_id
        try:
            with clickhouse.connect() as client:  # (closed before the scratch opens: one chDB at a time)
                reading = read_warm(client, iceberg.catalog(), day, day + timedelta(days=1), policy, limits)
            report = reprocess(
                iceberg.catalog(), open_scratch, scratch, day, day + timedelta(days=1), context.run.run_id,
                limits, reading.now, policy, ddl=Path(config.ddl_dir) if config.ddl_dir else None,
                dry_run=config.dry_run, reference=reading.reference, log=context.log.info, warm_held=reading.held,
            )
        except ReprocessRefused as refused:  # before anything was written
            raise Failure(description=str(refused)) from None
        if report.days_replaced:
            follow_reprocessed_commits(clickhouse, iceberg.catalog())
        context.log.info(format_reprocess(report))
        if not config.dry_run:
            for spec in DERIVED:
                change = report.changes[spec.cold]
                if change.hours_changed:
                    # The hours' own bookkeeping (the commits, marked source=reprocess) is in the
                    # table; this records in Dagster which hours a reprocess replaced.
                    context.log_event(AssetObservation(
                        asset_key=cold_asset_key(spec),
                        description=f"reprocessed from cold raw: {len(change.hours_changed)} hours replaced",
                        metadata={
                            "reprocess_hours": MetadataValue.json(change.hours_changed),
                            "rows_before": MetadataValue.int(change.rows_before),
                            "rows_after": MetadataValue.int(change.rows_after),
                        },
                    ))
        context.add_output_metadata({
            "dry_run": MetadataValue.bool(config.dry_run),
            "raw_rows": MetadataValue.int(report.raw_rows),
            "table_hours_changed": MetadataValue.int(report.hours_changed),
            "changes": MetadataValue.md("```\n" + format_reprocess(report) + "\n```"),
        })
        if report.stopped:
            raise Failure(description=f"reprocess stopped: {report.stopped}")

    @job(
        name=REPROCESS_JOB,
        partitions_def=partitions_def,
        description="Recompute bronze, silver and gold from cold raw with the medallion's DDL, a day per run "
        "(backfill a range of days), once no trade of the day can still arrive (feed_limits.max_lateness, or the most "
        "COLD_TTL_MARGIN_DAYS lets it be raised to). "
        "The launchpad's form defaults to a dry run.",
    )
    def _reprocess() -> None:
        reprocess_day()

    return _reprocess
