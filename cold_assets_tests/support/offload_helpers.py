"""Shared steps of the offload tests: a small feed, a Dagster run, and tier comparisons."""

from datetime import UTC, datetime, timedelta

import pyarrow as pa
from dagster import AssetKey, AssetRecordsFilter

from cold_assets.cold.ranges import range_filter
from cold_assets.definitions import build_definitions
from cold_assets.defs.schedules import OFFLOAD_JOB
from cold_assets.partitions import partition_key_of
from cold_assets.tables import TABLES, MirroredTable
from cold_assets.tools.instance import embedded_instance
from cold_assets.tools.simulate import FeedConfig, simulate
from cold_assets.warm.read import read_columns, read_query

# Six days back, whatever the date the suite runs on: closed hours, well inside the warm
# tier's 30-day TTL (ClickHouse drops older rows), and inside the 7-day lookbacks.
START = (datetime.now(UTC) - timedelta(days=6)).replace(hour=0, minute=0, second=0, microsecond=0)
PARTITIONS_START = (START - timedelta(days=10)).strftime("%Y-%m-%d-%H:%M")
HOURS = 3
KEYS = [partition_key_of(START + timedelta(hours=h)) for h in range(HOURS)]
WARM_TABLES_WITH_INGESTION = ("trades_raw", "trades_rejects", "bronze_trades", "silver_trades")
RAW_COLUMNS = ["exchange", "symbol", "trade_id", "price", "quantity", "side", "exchange_ts", "received_at", "message"]


def op_config(**config) -> dict:
    """Run config giving every cold asset of the offload job the same OffloadConfig values."""
    return {"ops": {f"cold__{t.cold}": {"config": dict(config)} for t in TABLES}}


# Appends re-read an overlap before the watermark, which repairs a hole in cold as a side
# effect; tests of what the checks see in a damaged hour turn it off.
NO_OVERLAP = op_config(append_overlap_seconds=0)


def insert_late_raw(warm, hour: datetime, count: int, first_trade_id: int, exchange: str = "binance") -> None:
    """`count` trades of `hour` delivered hours late (ingested now), as a feed handler would."""
    symbol, price, side, message = (
        ("BTCUSDT", "91000.00000000", "false", "{}") if exchange == "binance" else ("XBT/USDT", "91000.00000", "b", "[]")
    )
    rows = [
        [exchange, symbol, str(first_trade_id + i), price, "0.01000000", side,
         hour + timedelta(minutes=20, seconds=i), hour + timedelta(hours=4), message]
        for i in range(count)
    ]
    with warm.connect() as client:
        client.insert("trades_raw", rows, column_names=RAW_COLUMNS)


def settle(warm, minutes: int = 10) -> None:
    """Moves the feed's ingestion `minutes` into the past, as if it had arrived then: the rows
    are then older than the settle lag and its overlap, as a closed hour's rows are."""
    with warm.connect() as client:
        for table in WARM_TABLES_WITH_INGESTION:
            client.command(
                f"ALTER TABLE {table} UPDATE ingested_at = ingested_at - INTERVAL {int(minutes)} MINUTE WHERE 1",
                settings={"mutations_sync": 2},
            )


def age_trades(warm, first_trade_id: int, count: int, minutes: int) -> None:
    """Moves the ingestion of trades `first_trade_id` .. + `count` (and what the views made of
    them) `minutes` into the past: rows that were still arriving have now settled."""
    with warm.connect() as client:
        for table in WARM_TABLES_WITH_INGESTION:
            client.command(
                f"ALTER TABLE {table} UPDATE ingested_at = ingested_at - INTERVAL {int(minutes)} MINUTE "
                "WHERE toUInt64OrZero(toString(trade_id)) BETWEEN {first:UInt64} AND {last:UInt64}",
                parameters={"first": first_trade_id, "last": first_trade_id + count - 1},
                settings={"mutations_sync": 2},
            )


def feed(warm, hours: int = HOURS, trades_per_hour: int = 3_000, **shares) -> None:
    with warm.connect() as client:
        simulate(client, FeedConfig(start=START, hours=hours, trades_per_hour=trades_per_hour, **shares))


def run_offload(settings, partition_keys: list[str], run_config: dict | None = None, raise_on_error: bool = True):
    """Materializes the nine cold assets for a partition range through a real Dagster instance."""
    defs = build_definitions(settings)
    job = defs.resolve_job_def(OFFLOAD_JOB)
    instance = embedded_instance(settings)
    tags = (
        {"dagster/asset_partition_range_start": partition_keys[0], "dagster/asset_partition_range_end": partition_keys[-1]}
        if len(partition_keys) > 1
        else {"dagster/partition": partition_keys[0]}
    )
    result = job.execute_in_process(instance=instance, tags=tags, run_config=run_config or {}, raise_on_error=raise_on_error)
    return result, instance


def latest_metadata(instance, table: MirroredTable, partition_key: str) -> dict:
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=AssetKey(["cold", table.cold]), asset_partitions=[partition_key]), limit=1
    ).records
    return {k: v.value for k, v in records[0].asset_materialization.metadata.items()}


def _normalized(table: pa.Table, order: list[str]) -> pa.Table:
    fields = [pa.field(f.name, pa.string() if f.type == pa.large_string() else f.type) for f in table.schema]
    return table.cast(pa.schema(fields)).sort_by([(c, "ascending") for c in order])


def warm_hour(client, table: MirroredTable, hour: datetime) -> pa.Table:
    start, end = table.offload_range(hour)
    query = read_query(table, read_columns(client, table), start, end)
    return client.query_arrow(query.sql, parameters=query.parameters)


def cold_hour(catalog, table: MirroredTable, hour: datetime) -> pa.Table:
    start, end = table.offload_range(hour)
    return catalog.load_table(table.cold_identifier).scan(row_filter=range_filter(table.time_column, start, end)).to_arrow()


def assert_tiers_equal(warm, cold, hours: list[datetime], tables=TABLES) -> None:
    """Cold equals warm for each hour, row for row (as multisets: duplicates count)."""
    catalog = cold.catalog()
    with warm.connect() as client:
        for table in tables:
            for hour in hours:
                w, c = warm_hour(client, table, hour), cold_hour(catalog, table, hour)
                order = list(w.schema.names)
                assert c.num_rows == w.num_rows, f"{table.cold} {hour}: cold {c.num_rows} rows, warm {w.num_rows}"
                assert _normalized(c.select(order), order).equals(_normalized(w, order)), f"{table.cold} {hour} differs"


def check_results(instance, run_id: str) -> dict[tuple[str, str], bool]:
    """(cold table, check name) -> passed, for the checks a run evaluated."""
    from dagster import DagsterEventType

    results = {}
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        results[(evaluation.asset_key.path[1], evaluation.check_name)] = evaluation.passed
    return results


def count_metadata_parses(monkeypatch) -> list[str]:
    """From now on, one entry per parse of a table's metadata file by pyiceberg (under any
    catalog's load, below cold-assets' own reading of it)."""
    from pyiceberg.serializers import FromByteStream

    parsed: list[str] = []
    real_parse = FromByteStream.table_metadata

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        parsed.append("parse")
        return real_parse(*args, **kwargs)

    monkeypatch.setattr(FromByteStream, "table_metadata", staticmethod(counted))
    return parsed
