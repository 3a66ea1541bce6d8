"""The SQL that reads the warm tier, in one place.

Queries live in cold_assets/sql/*.sql. Values are always bound as ClickHouse query
parameters ({name:Type}); the few identifiers a query needs ($table, $columns, ...) are
substituted with string.Template after validation against a strict pattern.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from string import Template

from clickhouse_connect.driver.client import Client
from pyiceberg.schema import Schema
from pyiceberg.types import DecimalType, IcebergType

from cold_assets.tables import FinalKey, Layer, MirroredTable

SQL_DIR = Path(__file__).resolve().parents[1] / "sql"
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(2200, 1, 1, tzinfo=UTC)
# The column of per-row hashes a replace layer's read carries beside its rows (never stored).
ROW_HASH = "_cold_assets_row_hash"
# Beyond this many key groups (instruments) in one range a FINAL read is not pruned: the key
# condition would outgrow what ClickHouse analyses quickly. (The demo has 8.)
MAX_PRUNED_KEY_GROUPS = 1000
# A view's FINAL read is pruned to blocks of this many consecutive ids (sql/final_key_blocks.sql).
FINAL_KEY_BLOCK_IDS = 4096


class UnsupportedWarmColumn(ValueError):
    pass


def identifier(name: str) -> str:
    if not _IDENTIFIER.match(name):
        raise ValueError(f"not a valid SQL identifier: {name!r}")
    return name


@cache
def sql_template(name: str) -> Template:
    # Full-line comments are for readers of the .sql file; they are dropped so that a
    # placeholder mentioned in a comment is never substituted there.
    lines = (SQL_DIR / f"{name}.sql").read_text().splitlines()
    return Template("\n".join(line for line in lines if not line.lstrip().startswith("--")))


def render(name: str, **identifiers: str) -> str:
    return sql_template(name).substitute(identifiers)


@dataclass(frozen=True)
class WarmColumn:
    name: str
    type: str
    # A column the cold table still has (optional) and warm no longer does: read as NULL of
    # its type, so that the parity checksum, the fingerprint and the views keep their columns.
    absent: bool = False
    # The expression of a plain DEFAULT: what warm shows for rows written before the column
    # was added, where cold's older files read NULL (parity/checksums.canonical_row).
    default: str | None = None

    def select_expression(self) -> str:
        """How the column is read so that Arrow carries the type Iceberg stores: one stable
        Iceberg type per ClickHouse width (a column never flips between int8 and int)."""
        name = identifier(self.name)
        if self.absent:
            return f"CAST(NULL AS Nullable({self.type})) AS {name}"
        base = self.type
        for wrapper in ("LowCardinality(", "Nullable("):
            if base.startswith(wrapper):
                base = base[len(wrapper) : -1]
        if base in ("UInt64", "UInt32"):
            # Iceberg has no unsigned types; trade ids and counts fit a signed long.
            return f"toInt64({name}) AS {name}"
        if base in ("UInt8", "UInt16", "Int8", "Int16"):
            # Iceberg's smallest integer is int (32 bits): cast here, so Arrow carries it too.
            return f"toInt32({name}) AS {name}"
        if base == "DateTime" or base.startswith("DateTime("):
            # ClickHouse sends DateTime to Arrow as uint32 seconds; Iceberg wants timestamptz.
            return f"toDateTime64({name}, 6, 'UTC') AS {name}"
        if base.startswith("DateTime64("):
            if base.replace(" ", "") != "DateTime64(6,'UTC')":
                return f"toDateTime64({name}, 6, 'UTC') AS {name}"
            return name
        if base in ("String", "Bool", "Int32", "Int64", "Float32", "Float64", "Date", "Date32") or base.startswith(
            ("Decimal(", "FixedString(")
        ):
            return name
        raise UnsupportedWarmColumn(f"column {self.name} has type {self.type}, which the offload cannot map to Iceberg")


def warm_columns(client: Client, table: str) -> list[WarmColumn]:
    rows = client.query(render("warm_columns"), parameters={"table": identifier(table)}).result_rows
    if not rows:
        raise ValueError(f"warm table {table} does not exist in ClickHouse")
    return [WarmColumn(name, type_, default=default or None) for name, type_, default in rows]


# The ClickHouse type that reads back as each Iceberg type (for columns warm no longer has).
_CLICKHOUSE_TYPE = {
    "string": "String", "long": "Int64", "int": "Int32", "double": "Float64", "float": "Float32",
    "boolean": "Bool", "timestamptz": "DateTime64(6, 'UTC')", "timestamp": "DateTime64(6)", "date": "Date32",
}


def _clickhouse_type(iceberg_type: IcebergType) -> str:
    if isinstance(iceberg_type, DecimalType):
        return f"Decimal({iceberg_type.precision}, {iceberg_type.scale})"
    try:
        return _CLICKHOUSE_TYPE[str(iceberg_type)]
    except KeyError:
        raise UnsupportedWarmColumn(f"cold type {iceberg_type} has no ClickHouse type to read NULL as") from None


def read_columns(client: Client, table: MirroredTable, cold: Schema | None = None) -> list[WarmColumn] | None:
    """The columns `read_query` needs for `table`: the warm table's own, or None for gold,
    whose read is a fixed aggregation (sql/read_gold.sql). With the cold schema, optional cold
    columns warm has dropped are read as NULL (a required one is left out: the offload then
    refuses the difference)."""
    if table.layer is Layer.GOLD:
        return None
    columns = warm_columns(client, table.warm)
    if cold is not None:
        present = {c.name for c in columns}
        columns += [
            WarmColumn(f.name, _clickhouse_type(f.field_type), absent=True)
            for f in cold.fields
            if f.name not in present and not f.required
        ]
    return columns


@dataclass(frozen=True)
class WarmQuery:
    sql: str
    parameters: dict


def time_bound(name: str, value: datetime, literal: bool) -> str:
    """A DateTime64(6, 'UTC') bound in a query: the placeholder of a bound parameter, or,
    where parameters cannot be bound (a view's DDL), a literal rendered from the datetime."""
    if not literal:
        return f"{{{identifier(name)}:DateTime64(6, 'UTC')}}"
    utc = value.astimezone(UTC)
    return f"toDateTime64('{utc:%Y-%m-%d %H:%M:%S.%f}', 6, 'UTC')"


@dataclass(frozen=True)
class KeyRange:
    """One group of a FinalKey (its columns' values) and the least and greatest id in it."""

    groups: tuple[str, ...]
    low: int
    high: int


@dataclass(frozen=True)
class FinalScope:
    """Where a FINAL read of one window's rows has to look: the sorting-key ranges of the
    window's rows (sql/final_key_ranges.sql), and the partitions holding any row in those
    ranges (sql/final_key_partitions.sql). Both say why the rows read are the same."""

    ranges: list[KeyRange]
    partitions: list[str]


def final_scope(client: Client, table: MirroredTable, range_start: datetime, range_end: datetime) -> FinalScope | None:
    """The FinalScope of `table`'s rows in [range_start, range_end); None where the table is
    not read FINAL or has more than MAX_PRUNED_KEY_GROUPS groups in the range."""
    key = table.final_key
    if key is None:
        return None
    sql = render(
        "final_key_ranges",
        groups=", ".join(identifier(c) for c in key.groups),
        id=identifier(key.id),
        table=identifier(table.warm),
        time_column=identifier(table.time_column),
    )
    rows = client.query(sql, parameters={"range_start": range_start, "range_end": range_end}).result_rows
    if len(rows) > MAX_PRUNED_KEY_GROUPS:
        return None
    ranges = [KeyRange(tuple(str(v) for v in row[:-2]), int(row[-2]), int(row[-1])) for row in rows]
    if not ranges:
        return FinalScope([], [])
    condition, parameters = _key_ranges_condition(key, ranges)
    found = client.query(render("final_key_partitions", table=identifier(table.warm), key_ranges=condition), parameters=parameters)
    return FinalScope(ranges, sorted(str(row[0]) for row in found.result_rows))


def _key_ranges_condition(key: FinalKey, ranges: Sequence[KeyRange]) -> tuple[str, dict]:
    """`(...)`: rows inside one of `ranges` (none: no row), with every value bound."""
    terms: list[str] = []
    parameters: dict[str, object] = {}
    for i, r in enumerate(ranges):
        parts = []
        for j, (column, value) in enumerate(zip(key.groups, r.groups, strict=True)):
            parts.append(f"{identifier(column)} = {{key_{i}_{j}:String}}")
            parameters[f"key_{i}_{j}"] = value
        id_type = identifier(key.id_type)
        parts.append(f"{identifier(key.id)} BETWEEN {{key_{i}_low:{id_type}}} AND {{key_{i}_high:{id_type}}}")
        parameters |= {f"key_{i}_low": r.low, f"key_{i}_high": r.high}
        terms.append("(" + " AND ".join(parts) + ")")
    return "(" + (" OR ".join(terms) or "0") + ")", parameters


def _scope_condition(key: FinalKey, scope: FinalScope) -> tuple[str, dict]:
    """Rows of `scope`'s partitions inside one of its key ranges, every value bound. No
    partition found (the ranges' rows gone between the two queries, a TTL merge): the key
    ranges alone, never a read of no partition."""
    condition, parameters = _key_ranges_condition(key, scope.ranges)
    if not scope.ranges or not scope.partitions:
        return condition, parameters
    return f"_partition_id IN {{final_partitions:Array(String)}} AND {condition}", parameters | {"final_partitions": scope.partitions}


def final_key_filter(client: Client, table: MirroredTable, range_start: datetime, range_end: datetime) -> tuple[str, dict]:
    """For a query of its own that reads `table` FINAL over [range_start, range_end) (the
    audit's): the `AND ...` that restricts that read to the range's FinalScope, and its
    parameters; empty where the table is not read FINAL or the range is not pruned."""
    scope = final_scope(client, table, range_start, range_end)
    if table.final_key is None or scope is None:
        return "", {}
    condition, parameters = _scope_condition(table.final_key, scope)
    return f"AND {condition}", parameters


def read_query(
    table: MirroredTable,
    columns: list[WarmColumn] | None,
    range_start: datetime,
    range_end: datetime,
    after: datetime = EPOCH,
    until: datetime = FAR_FUTURE,
    literal: bool = False,
    row_hash: str = "",
    by_range: bool = False,
    deduplicated: bool = True,
    scope: FinalScope | None = None,
) -> WarmQuery:
    """The rows of `table` whose event time is in [range_start, range_end), ingested in
    (after, until]. `literal` inlines the bounds (for DDL) instead of binding them.
    `row_hash`, a canonical row expression (parity.canonical_row), adds the column ROW_HASH:
    each row's hash, read with the row itself. `by_range` orders the rows by offload range
    first (a read of several hours at once: each hour's rows arrive together).
    `deduplicated=False` leaves out silver's FINAL: an upper bound of its rows, for sizing
    reads only. FINAL cannot push the time filter below the merge (exchange_ts is not in the
    sort key), so alone it merges every part warm keeps; `scope` (final_scope) restricts it to
    the sorting-key ranges of the range's rows, which the primary index prunes to, in the
    partitions that hold them. `warm_read_query` reads that scope first. A literal read (a view's, which cannot bind
    them) is pruned by a subquery of its own instead (sql/final_key_blocks.sql)."""
    hash_select = f", cityHash64({row_hash}) AS {ROW_HASH}" if row_hash else ""
    values = {"range_start": range_start, "range_end": range_end}
    if table.layer is not Layer.GOLD:
        values |= {"after": after, "until": until}
    bounds = {name: time_bound(name, value, literal) for name, value in values.items()}
    parameters = {} if literal else values
    order = [identifier(c) for c in table.cold_order]
    if by_range:
        order.insert(0, f"{table.range_function}({identifier(table.time_column)}, 'UTC')")
    if table.layer is Layer.GOLD:
        return WarmQuery(
            render("read_gold", table=identifier(table.warm), row_hash=hash_select, order_by=", ".join(order), **bounds),
            parameters,
        )
    if not columns:
        raise ValueError(f"reading {table.warm} needs its column list")
    final_key = table.final_key if deduplicated else None  # read FINAL by this key
    key_prewhere = ""
    if scope is not None and final_key is not None:
        if literal:
            raise ValueError("a FinalScope is bound parameters: a literal query (a view's DDL) cannot prune to it")
        condition, key_parameters = _scope_condition(final_key, scope)
        key_prewhere = f"PREWHERE {condition}"
        parameters = parameters | key_parameters
    elif literal and final_key is not None:
        key_prewhere = "PREWHERE " + render(
            "final_key_blocks",
            groups=", ".join(identifier(c) for c in final_key.groups),
            id=identifier(final_key.id),
            block=str(FINAL_KEY_BLOCK_IDS),
            table=identifier(table.warm),
            time_column=identifier(table.time_column),
            range_start=bounds["range_start"],
            range_end=bounds["range_end"],
        )
    sql = render(
        "read_trades",
        columns=", ".join(c.select_expression() for c in columns),
        row_hash=hash_select,
        table=identifier(table.warm),
        final="FINAL" if final_key is not None else "",
        time_column=identifier(table.time_column),
        order_by=", ".join(order),
        key_prewhere=key_prewhere,
        **bounds,
    )
    return WarmQuery(sql, parameters)


def warm_read_query(
    client: Client,
    table: MirroredTable,
    columns: list[WarmColumn] | None,
    range_start: datetime,
    range_end: datetime,
    after: datetime = EPOCH,
    until: datetime = FAR_FUTURE,
    row_hash: str = "",
    by_range: bool = False,
) -> WarmQuery:
    """`read_query` for a read about to run on `client`: a table read FINAL is first asked for
    the FinalScope of [range_start, range_end) (two small queries), so that its FINAL merges
    those granules of those partitions only, not every part warm keeps."""
    scope = final_scope(client, table, range_start, range_end)
    return read_query(
        table, columns, range_start, range_end, after=after, until=until, row_hash=row_hash, by_range=by_range, scope=scope
    )


def warm_now(client: Client) -> datetime:
    """The warm tier's clock: every decision of a run is taken by it, not by this host's."""
    value = client.query(render("warm_now")).result_rows[0][0]
    return value if value.tzinfo else value.replace(tzinfo=UTC)
