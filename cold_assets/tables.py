"""The table catalog: the ten warm tables and the cold tables that mirror them.

This is the one place that says which tables exist, how they relate and how each one is
offloaded. Schemas live in ddl/ (ClickHouse in ddl/clickhouse, Iceberg in ddl/iceberg).
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum

COLD_NAMESPACE = "cold"

# Gold window suffix -> ClickHouse interval. Drives the gold DDL template and the catalog.
GOLD_WINDOWS: dict[str, str] = {
    "1m": "1 MINUTE",
    "5m": "5 MINUTE",
    "15m": "15 MINUTE",
    "30m": "30 MINUTE",
    "1h": "1 HOUR",
    "1d": "1 DAY",
}


class Layer(str, Enum):
    RAW = "raw"
    # The messages raw holds that cannot become trades (unparseable, or stamped outside the
    # feed's limits: 1970, a month late), kept by their ingestion time.
    REJECTS = "rejects"
    BRONZE = "bronze"
    SILVER = "silver"
    GOLD = "gold"


class OffloadMode(str, Enum):
    """How an hour reaches the cold table."""

    # Rows are only ever inserted: load rows newer than the watermark (ingested_at).
    APPEND = "append"
    # Rows change in place (dedup, bar updates): replace the hour with an overwrite.
    REPLACE = "replace"


@dataclass(frozen=True)
class FinalKey:
    """The sorting key of a warm table deduplicated at merge time (a ReplacingMergeTree, read
    FINAL): the `groups` columns, then `id`, which grows with time inside each group (a trade
    id per instrument). A FINAL read is pruned to each group's id range (warm/read.py)."""

    groups: tuple[str, ...]  # string columns (their values are bound as String)
    id: str
    id_type: str  # the ClickHouse type the id's bounds are bound as


@dataclass(frozen=True)
class MirroredTable:
    """One warm table and the cold table that mirrors it."""

    warm: str  # ClickHouse table
    cold: str  # Iceberg table name inside COLD_NAMESPACE
    layer: Layer
    upstream: str | None  # warm table this one is derived from (the medallion lineage)
    time_column: str  # event time that decides an hour's rows
    # Order of rows in the cold files: the identity partition column first (one file per
    # value, written once), then what makes neighbouring rows alike (compression), in the
    # warm table's own sort order where possible (ClickHouse reads in order, no sort).
    cold_order: tuple[str, ...]
    gold_window: str | None = None
    # Set where the warm table deduplicates at merge time: its reads are FINAL.
    final_key: FinalKey | None = None

    @property
    def mode(self) -> OffloadMode:
        return OffloadMode.APPEND if self.layer in (Layer.RAW, Layer.REJECTS, Layer.BRONZE) else OffloadMode.REPLACE

    @property
    def partitioned_by_ingestion(self) -> bool:
        """Its hours are ingestion hours (the rejects'), not the trades' event hours."""
        return self.time_column == "ingested_at"

    @property
    def cold_identifier(self) -> tuple[str, str]:
        return (COLD_NAMESPACE, self.cold)

    @property
    def split_column(self) -> str:
        """The identity partition column: the stream is cut into one file per value of it."""
        return self.cold_order[0]

    def offload_range(self, hour: datetime) -> tuple[datetime, datetime]:
        """The event-time range that materializing hourly partition `hour` offloads.

        Every window of the sub-daily gold tables starts inside the hour; the daily bar of
        the day containing the hour is refreshed by each of that day's partitions."""
        if self.gold_window == "1d":
            day = hour.replace(hour=0, minute=0, second=0, microsecond=0)
            return day, day + timedelta(days=1)
        return hour, hour + timedelta(hours=1)

    @property
    def range_function(self) -> str:
        """The ClickHouse function that maps an event time to the start of its offload range."""
        return "toStartOfDay" if self.gold_window == "1d" else "toStartOfHour"


_TRADE_ORDER = ("exchange", "symbol", "exchange_ts")
_BAR_ORDER = ("exchange", "symbol", "window_start")

TABLES: tuple[MirroredTable, ...] = (
    MirroredTable("trades_raw", "raw_trades", Layer.RAW, None, "exchange_ts", _TRADE_ORDER),
    # Partitioned by ingestion: a reject's exchange_ts may be the bogus value that made it one,
    # and whatever it says, every message warm accepted reaches cold (its warm TTL is keyed on
    # ingested_at too).
    MirroredTable("trades_rejects", "trades_rejects", Layer.REJECTS, "trades_raw", "ingested_at", ("exchange", "symbol", "ingested_at")),
    MirroredTable("bronze_trades", "bronze_trades", Layer.BRONZE, "trades_raw", "exchange_ts", _TRADE_ORDER),
    MirroredTable(
        "silver_trades", "silver_trades", Layer.SILVER, "bronze_trades", "exchange_ts",
        ("exchange", "exchange_symbol", "trade_id"),
        final_key=FinalKey(("exchange", "exchange_symbol"), "trade_id", "UInt64"),
    ),
    *(
        MirroredTable(f"gold_ohlcv_{w}", f"gold_ohlcv_{w}", Layer.GOLD, "silver_trades", "window_start", _BAR_ORDER, w)
        for w in GOLD_WINDOWS
    ),
)

TABLES_BY_COLD: dict[str, MirroredTable] = {t.cold: t for t in TABLES}
# The tables whose hours are the trades' event hours: all but the rejects (kept by ingestion).
EVENT_TABLES: tuple[MirroredTable, ...] = tuple(t for t in TABLES if not t.partitioned_by_ingestion)


def table_by_cold_name(name: str) -> MirroredTable:
    try:
        return TABLES_BY_COLD[name]
    except KeyError:
        raise ValueError(f"unknown cold table {name!r}; known: {', '.join(TABLES_BY_COLD)}") from None
