"""The assets: the warm medallion as specs (ClickHouse fills it), and the ten cold tables as
hourly-partitioned assets materialized from it by the offload protocol (offload/protocol.py)."""

from collections.abc import Iterator
from datetime import timedelta

from clickhouse_connect.driver.client import Client
from dagster import (
    AssetCheckResult,
    AssetExecutionContext,
    AssetKey,
    AssetMaterialization,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    Failure,
    FreshnessPolicy,
    MetadataValue,
    PartitionsDefinition,
    multi_asset,
)
from pydantic import Field
from pyiceberg.table import Table

from cold_assets.defs.checks import CONTENT_PARITY, parity_check_results, parity_check_specs
from cold_assets.defs.metadata import partition_metadata
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.federation import follow_commits
from cold_assets.hours import HourPolicy
from cold_assets.offload.phases import ColdRowsWouldBeLost, Outcome
from cold_assets.offload.protocol import Checkpoint, offload_partitions
from cold_assets.parity.checksums import partitions_parity
from cold_assets.settings import Settings
from cold_assets.tables import TABLES, MirroredTable
from cold_assets.warm.read import warm_now

WARM_GROUP = "warm"
COLD_GROUP = "cold"
# A backfill run covers up to a week of hours: a 30-day backfill is 5 runs, not 720.
PARTITIONS_PER_BACKFILL_RUN = 168
# The schedule offloads every 15 minutes, so a cold table older than 90 minutes is late.
COLD_FRESHNESS = FreshnessPolicy.time_window(fail_window=timedelta(minutes=90), warn_window=timedelta(minutes=45))


def warm_asset_key(table: MirroredTable | str) -> AssetKey:
    return AssetKey(["warm", table if isinstance(table, str) else table.warm])


def cold_asset_key(table: MirroredTable) -> AssetKey:
    return AssetKey(["cold", table.cold])


warm_specs = [
    AssetSpec(
        key=warm_asset_key(t),
        deps=[warm_asset_key(t.upstream)] if t.upstream else [],
        group_name=WARM_GROUP,
        kinds={"clickhouse"},
        description=f"ClickHouse table {t.warm} ({t.layer.value} layer), filled by the feed and its materialized views.",
        metadata={"clickhouse/table": t.warm, "layer": t.layer.value},
    )
    for t in TABLES
]


class OffloadConfig(Config):
    replace_hour: bool = Field(
        default=False,
        description="Replace each hour wholesale, even for append layers: the repair of a damaged partition. "
        "Rows younger than the settle lag still wait for the next run.",
    )
    settle_lag_seconds: int | None = Field(
        default=None, ge=0, description="Override COLD_SETTLE_LAG_SECONDS: how far behind the warm clock appends stop."
    )
    append_overlap_seconds: int | None = Field(
        default=None,
        ge=0,
        description="Override COLD_APPEND_OVERLAP_SECONDS: how far before the watermark appends re-read (rows that "
        "became visible late), replacing that range in the same commit.",
    )
    allow_fewer_rows: bool = Field(
        default=False,
        description="Let an offload delete cold rows the warm tier no longer has (an operator correcting history). "
        "Without it, a commit that would leave an hour with fewer cold rows than it holds is refused.",
    )


def cold_asset(table: MirroredTable, partitions_def: PartitionsDefinition, settings: Settings) -> AssetsDefinition:
    key = cold_asset_key(table)
    spec = AssetSpec(
        key=key,
        deps=[warm_asset_key(table)],
        group_name=COLD_GROUP,
        kinds={"iceberg"},
        freshness_policy=COLD_FRESHNESS,
        description=(
            f"Iceberg table cold.{table.cold}: the {table.layer.value} layer mirrored from ClickHouse "
            f"{table.warm} hour by hour ({table.mode.value} mode)."
        ),
        metadata={"iceberg/table": f"cold.{table.cold}", "clickhouse/table": table.warm, "offload/mode": table.mode.value},
        # Materialized by the step's own per-hour AssetMaterialization events (defs/metadata.py).
        skippable=True,
    )
    defaults = HourPolicy.from_settings(settings)

    # A multi_asset of one asset, so that its checks can also run on their own (from the UI:
    # "execute check" computes parity without offloading anything).
    @multi_asset(
        name=f"cold__{table.cold}",
        specs=[spec],
        check_specs=parity_check_specs(key, table.warm),
        can_subset=True,
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_BACKFILL_RUN),
    )
    def offload(
        context: AssetExecutionContext, config: OffloadConfig, clickhouse: ClickHouseResource, iceberg: IcebergResource
    ) -> Iterator[AssetMaterialization | AssetCheckResult]:
        lag = timedelta(seconds=config.settle_lag_seconds) if config.settle_lag_seconds is not None else defaults.settle_lag
        overlap = timedelta(
            seconds=config.append_overlap_seconds
            if config.append_overlap_seconds is not None
            else max(settings.append_overlap_seconds, int(lag.total_seconds()))
        )
        policy = HourPolicy(settle_lag=lag, late_grace=defaults.late_grace, warm_retention=defaults.warm_retention)
        keys = list(context.partition_keys)
        checks = set(context.selected_asset_check_keys)
        content = any(c.name == CONTENT_PARITY for c in checks)
        parities, refused = [], []
        with clickhouse.connect() as client:
            # Loaded once the warm tier is ours (the embedded one is taken in turns, a wait of
            # up to its lock timeout): the first checkpoint plans from this table as it is.
            cold_table = iceberg.load_table(table.cold_identifier)
            now = warm_now(client)  # one clock reading decides the whole run: offloads and checks
            if key in context.selected_asset_keys:
                checkpoints = offload_partitions(
                    client,
                    cold_table,
                    table,
                    keys,
                    context.run.run_id,
                    settle_lag=lag,
                    replace_hour=config.replace_hour,
                    overlap=overlap,
                    allow_fewer_rows=config.allow_fewer_rows,
                    warm_retention=policy.warm_retention,
                    now=now,
                    checkpoint_hours=settings.checkpoint_hours,
                )
                try:
                    for checkpoint in checkpoints:
                        for refusal in checkpoint.refused:
                            context.log.error(str(refusal))
                        refused += checkpoint.refused
                        context.log.info(_describe(table, checkpoint))
                        # One count of both tiers per checkpoint serves the metadata and the checks
                        # alike; each hour's materialization is recorded as soon as it committed.
                        # A refused hour is checked too (it fails): its run fails after every
                        # check result is recorded, so that the sensors and alerts see them all.
                        refused_keys = [k for r in checkpoint.refused for k in r.partition_keys]
                        cold_table = cold_table.refresh()  # (another writer's commit since is seen too)
                        if checkpoint.snapshot_id is not None:
                            # The table's `_all` view reads the metadata file it was made over: it
                            # follows each commit, before older metadata files are deleted (a
                            # long backfill commits more often than the table keeps them). Right
                            # after the refresh: a writer committing during the parity below
                            # follows its own commit, and must not be overwritten by this one.
                            _follow_commits(context, client, cold_table, table)
                        found = partitions_parity(
                            client, cold_table, table,
                            [r.partition_key for r in checkpoint.results] + refused_keys, content,
                            now=now, policy=policy, offloaded={r.partition_key: r.state() for r in checkpoint.results},
                        )
                        by_hour = {p.partition_key: p for p in found}
                        for result in checkpoint.results:
                            yield AssetMaterialization(
                                asset_key=key,
                                partition=result.partition_key,
                                metadata=partition_metadata(result, by_hour[result.partition_key]),
                            )
                        parities += found
                except Exception:
                    # A later checkpoint failed (conflicts exhausted, the catalog down): the hours
                    # already committed still get their checks, then the step fails.
                    yield from parity_check_results(parities, checks, _refused_keys(refused))
                    raise
            else:
                parities = partitions_parity(client, cold_table, table, keys, content, now=now, policy=policy)
        # The checks are recorded first: one refused hour must not hide the others' results.
        yield from parity_check_results(parities, checks, _refused_keys(refused))
        if refused:
            raise Failure(
                description="; ".join(str(r) for r in refused),
                metadata={
                    "refused_hours": MetadataValue.json(
                        [{"hour": r.partition_key, "warm_rows": r.warm_rows, "cold_rows": r.cold_rows} for r in refused]
                    )
                },
            )

    return offload


def _refused_keys(refused: list[ColdRowsWouldBeLost]) -> frozenset[str]:
    return frozenset(k for r in refused for k in r.partition_keys)


def _follow_commits(context: AssetExecutionContext, client: Client, cold_table: Table, table: MirroredTable) -> None:
    """A view that could not follow is no reason to fail the offload (or to hide why it failed):
    it says so, and the daily audit's federation re-creates every view. It follows the table
    as just refreshed (a second load of its metadata file would only parse it again)."""
    try:
        follow_commits(client, lambda: cold_table, table)
    except Exception as error:  # noqa: BLE001 - reported, the offload's outcome stands
        context.log.warning(f"{table.warm}_all could not follow the commits of cold.{table.cold}: {type(error).__name__}: {error}")


def _describe(table: MirroredTable, checkpoint: Checkpoint) -> str:
    """One log line per checkpoint: what its commit did, then each hour's outcome."""
    results = checkpoint.results
    rows = sum(r.rows_written for r in results if r.mode in (Outcome.APPEND, Outcome.REPLACE))
    head = (
        f"cold.{table.cold}: {len(results)} hours in {checkpoint.seconds:.2f} s, {rows} rows written"
        + (f" in snapshot {checkpoint.snapshot_id}" if checkpoint.snapshot_id else ", no commit")
    )
    lines = [
        f"{r.partition_key} ({r.status.value}): {r.mode.value}, {r.rows_written} rows, watermark {r.watermark}, "
        f"from {r.reconciled_from.value}"
        for r in results
    ]
    return head + ("\n" + "\n".join(lines) if lines else "")
