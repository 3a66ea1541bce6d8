"""The warm medallion as Dagster asset specs: ClickHouse tables that ClickHouse itself fills
(materialized views), shown with their lineage raw -> bronze -> silver -> gold."""

from dagster import AssetKey, AssetSpec

from cold_assets.tables import TABLES, MirroredTable

WARM_GROUP = "warm"


def warm_asset_key(table: MirroredTable | str) -> AssetKey:
    return AssetKey(["warm", table if isinstance(table, str) else table.warm])


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
