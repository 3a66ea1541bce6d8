"""Asset checks on every cold asset: the tiers agree, hour by hour, for the hours a run
materialized (or the hours selected when a check is run on its own)."""

from dagster import (
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    AssetChecksDefinition,
    MetadataValue,
    PartitionsDefinition,
    asset_check,
)

from cold_assets.assets import cold_asset_key
from cold_assets.parity import HourParity, partitions_parity
from cold_assets.resources import ClickHouseResource, IcebergResource
from cold_assets.tables import MirroredTable


def _parities(context, table: MirroredTable, clickhouse, iceberg, content: bool) -> list[HourParity]:
    cold_table = iceberg.catalog().load_table(table.cold_identifier)
    with clickhouse.connect() as client:
        return partitions_parity(client, cold_table, table, list(context.partition_keys), content)


def _result(parities: list[HourParity], failed: list[HourParity], what: str) -> AssetCheckResult:
    metadata = {
        "warm_rows": MetadataValue.int(sum(p.warm_rows for p in parities)),
        "cold_rows": MetadataValue.int(sum(p.cold_rows for p in parities)),
        "hours_checked": MetadataValue.int(len(parities)),
        "hours": MetadataValue.json([p.partition_key for p in parities]),
        "hours_differing": MetadataValue.json(
            [{"hour": p.partition_key, "warm_rows": p.warm_rows, "cold_rows": p.cold_rows} for p in failed]
        ),
    }
    description = (
        f"{what}: {len(failed)} of {len(parities)} hours differ: " + ", ".join(p.partition_key for p in failed[:10])
        if failed
        else f"{what}: {len(parities)} hours equal"
    )
    return AssetCheckResult(passed=not failed, severity=AssetCheckSeverity.ERROR, metadata=metadata, description=description)


def parity_checks(table: MirroredTable, partitions_def: PartitionsDefinition) -> list[AssetChecksDefinition]:
    key = cold_asset_key(table)

    @asset_check(
        asset=key,
        name="row_count_parity",
        blocking=True,
        partitions_def=partitions_def,
        description=f"Warm rows = cold rows per hour ({table.warm} read as the offload reads it).",
    )
    def row_count_parity(
        context: AssetCheckExecutionContext, clickhouse: ClickHouseResource, iceberg: IcebergResource
    ) -> AssetCheckResult:
        parities = _parities(context, table, clickhouse, iceberg, content=False)
        return _result(parities, [p for p in parities if not p.counts_match], "row counts")

    @asset_check(
        asset=key,
        name="content_parity",
        partitions_def=partitions_def,
        description="An order-independent checksum of every column of every row, per hour, equal on both tiers.",
    )
    def content_parity(
        context: AssetCheckExecutionContext, clickhouse: ClickHouseResource, iceberg: IcebergResource
    ) -> AssetCheckResult:
        parities = _parities(context, table, clickhouse, iceberg, content=True)
        return _result(parities, [p for p in parities if not p.content_matches], "content checksums")

    return [row_count_parity, content_parity]
