"""The cold-assets code location."""

from dagster import Definitions

from cold_assets.resources import ClickHouseResource, IcebergResource
from cold_assets.settings import Settings
from cold_assets.warm_assets import warm_specs

settings = Settings.from_env()

defs = Definitions(
    assets=[*warm_specs],
    resources={
        "clickhouse": ClickHouseResource.from_settings(settings),
        "iceberg": IcebergResource.from_settings(settings),
    },
)
