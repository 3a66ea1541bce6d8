"""The assets: the warm medallion as specs (ClickHouse fills it), and the nine cold tables as
hourly-partitioned assets materialized from it by the offload protocol (offload.py)."""

from datetime import timedelta

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSpec,
    BackfillPolicy,
    Config,
    FreshnessPolicy,
    MaterializeResult,
    PartitionsDefinition,
    asset,
)
from pydantic import Field

from cold_assets.offload import offload_partition
from cold_assets.offload_metadata import materialization_metadata, recorded_state
from cold_assets.partitions import hour_of
from cold_assets.resources import ClickHouseResource, IcebergResource
from cold_assets.tables import TABLES, MirroredTable

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
        description="Replace each hour wholesale, even for append layers: the repair of a damaged partition.",
    )
    settle_lag_seconds: int | None = Field(
        default=None, description="Override COLD_SETTLE_LAG_SECONDS: how far behind the warm clock appends stop."
    )


def cold_asset(table: MirroredTable, partitions_def: PartitionsDefinition, settle_lag_seconds: int) -> AssetsDefinition:
    @asset(
        key=cold_asset_key(table),
        deps=[warm_asset_key(table)],
        partitions_def=partitions_def,
        backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=PARTITIONS_PER_BACKFILL_RUN),
        group_name=COLD_GROUP,
        kinds={"iceberg"},
        freshness_policy=COLD_FRESHNESS,
        description=(
            f"Iceberg table cold.{table.cold}: the {table.layer.value} layer mirrored from ClickHouse "
            f"{table.warm} hour by hour ({table.mode.value} mode)."
        ),
        metadata={"iceberg/table": f"cold.{table.cold}", "clickhouse/table": table.warm, "offload/mode": table.mode.value},
    )
    def offload(
        context: AssetExecutionContext, config: OffloadConfig, clickhouse: ClickHouseResource, iceberg: IcebergResource
    ) -> MaterializeResult:
        lag = timedelta(seconds=config.settle_lag_seconds if config.settle_lag_seconds is not None else settle_lag_seconds)
        results = []
        cold_table = iceberg.catalog().load_table(table.cold_identifier)
        with clickhouse.connect() as client:
            for partition_key in context.partition_keys:
                result = offload_partition(
                    client,
                    cold_table,
                    table,
                    hour_of(partition_key),
                    partition_key,
                    context.run.run_id,
                    recorded=recorded_state(context.instance, context.asset_key, partition_key),
                    settle_lag=lag,
                    replace_hour=config.replace_hour,
                )
                context.log.info(
                    f"cold.{table.cold} {partition_key}: {result.mode}, {result.rows_written} rows written, "
                    f"warm {result.warm_rows} / cold {result.cold_rows}, watermark {result.watermark}, "
                    f"from {result.reconciled_from}"
                )
                results.append(result)
        return MaterializeResult(metadata=materialization_metadata(results))

    return offload
