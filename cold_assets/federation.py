"""Warm + cold as one table in ClickHouse: a view `<warm table>_all` per mirrored table.

The view reads warm rows at or after a cutover hour and cold rows before it. The cutover is
the earliest hour such that every earlier hour (since the previous cutover) passed parity:
rows before it are proven identical in cold, rows from it on are still in warm (the warm
TTL keeps 30 days, the cutover trails the clock by about an hour), so the view has no gap
and no overlap. It only moves forward, and is recorded in `federation_cutover` and in the
view's comment.

The SQL comes from one place: the warm side is the offload's own read query (warm/read.py)
with the bound inlined, the cold side is parity.cold_source (icebergLocal on the embedded
default). chDB reads local files only under the working directory: query the views inside
parity.local_file_access, as `cold-assets federate` does.
"""

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from cold_assets.hours import HourPolicy
from cold_assets.offload.stream import count_rows
from cold_assets.parity.checksums import cold_source, local_file_access, partitions_parity
from cold_assets.partitions import partition_key_of
from cold_assets.tables import TABLES, MirroredTable
from cold_assets.warm.read import EPOCH, FAR_FUTURE, identifier, read_columns, read_query, render, time_bound, warm_now, warm_read_query

# An hour is a candidate once the offload is done with it: closed for this long.
SETTLED = timedelta(hours=1)


@dataclass(frozen=True)
class Federation:
    table: str
    view: str
    cutover: datetime
    previous: datetime | None
    hours_proven: int
    error: str | None = None  # why this table's view could not be federated (its cutover stays)


def view_name(spec: MirroredTable) -> str:
    return identifier(f"{spec.warm}_all")


def current_cutovers(client: Client) -> dict[str, datetime]:
    rows = client.query(render("federation_cutover")).result_rows
    return {name: (c if c.tzinfo else c.replace(tzinfo=UTC)) for name, c in rows}


WARM_BEGINNING = datetime(1900, 1, 1, tzinfo=UTC)  # DateTime64's first instant: every row is after it


def warm_first_row_since(client: Client, spec: MirroredTable, since: datetime = WARM_BEGINNING) -> datetime | None:
    """The time of the first row `spec`'s warm table holds at or after `since` (None: none)."""
    sql = render("warm_first_row_since", table=identifier(spec.warm), time_column=identifier(spec.time_column))
    rows = client.query(sql, parameters={"since": since}).result_rows
    if not rows:
        return None
    value = rows[0][0]
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def next_cutover(
    client: Client, catalog: Catalog, spec: MirroredTable, previous: datetime | None, now: datetime, policy: HourPolicy
) -> tuple[datetime, int]:
    """The new cutover and the number of hours (or days, for daily bars) proven on the way.

    An hour is passed when parity proves it, or when it is cold-only (older than the warm
    retention: the view can only serve it from cold) and cutting over hides nothing: cold
    holds rows for it, or warm holds none."""
    first_row = warm_first_row_since(client, spec)
    first = first_row.replace(minute=0, second=0, microsecond=0) if first_row else None  # the first hour warm still holds
    limit = now.astimezone(UTC).replace(minute=0, second=0, microsecond=0) - SETTLED
    if first is None:
        # Warm holds no row of this table. Where cold holds some (the TTL dropped warm's last
        # ones: gold_ohlcv_1d's single bar of a day), cold serves everything before the last
        # settled range, which hides nothing; where neither tier holds any, nothing moves.
        snapshot = catalog.load_table(spec.cold_identifier).current_snapshot()
        records = int(snapshot.summary.get("total-records") or 0) if snapshot and snapshot.summary else 0
        if not records:
            return previous or EPOCH, 0
        return max(previous or EPOCH, spec.offload_range(limit)[0]), 0
    # Before the warm horizon every range is cold-only (the view serves it from cold): the
    # first federation starts there at the earliest, whatever stray old row warm still holds.
    start = max(first, previous) if previous else max(first, spec.offload_range(policy.warm_horizon(now))[0])
    buckets: list[tuple[datetime, str]] = []
    hour = start
    while hour < limit:
        lo, hi = spec.offload_range(hour)
        if hi <= limit and (not buckets or buckets[-1][0] != lo):
            buckets.append((lo, partition_key_of(hour)))
        hour += timedelta(hours=1)
    if not buckets:
        return start, 0
    table = catalog.load_table(spec.cold_identifier)
    # Which hours are candidates is decided at `now`; parity is measured on the warm clock itself,
    # which stamped the rows' ingested_at. A late row still in flight keeps its hour on warm
    # (the checks let it settle; the view must not hide it).
    parity = partitions_parity(
        client, table, spec, [key for _, key in buckets], content=True, now=warm_now(client), policy=policy,
        rows_in_flight_count=True,
    )
    proven = 0
    for (lo, _), result in zip(buckets, parity, strict=True):
        if result.cold_only:
            if not result.cold_rows and _warm_rows(client, spec, lo):
                break  # cold lacks what warm still shows: cutting over would hide it
        elif not (result.content_matches and result.content_checked):
            break
        proven += 1
    if proven == len(buckets):
        cutover = spec.offload_range(buckets[-1][0])[1]
    else:
        cutover = buckets[proven][0]
    return max(cutover, start), proven


def _warm_rows(client: Client, spec: MirroredTable, start: datetime) -> int:
    lo, hi = spec.offload_range(start)
    return count_rows(client, warm_read_query(client, spec, read_columns(client, spec), lo, hi))


def view_sql(client: Client, table: Table, spec: MirroredTable, cutover: datetime) -> str:
    """The view's DDL over `table`'s current metadata file (the table as the catalog loaded it)."""
    columns = ", ".join(identifier(f.name) for f in table.schema().fields)
    warm = read_query(spec, read_columns(client, spec, table.schema()), cutover, FAR_FUTURE, literal=True)
    source, _ = cold_source(table, client, literal=True)
    return render(
        "federated_view",
        view=view_name(spec),
        columns=columns,
        warm_read=warm.sql,
        cold_source=source,
        time_column=identifier(spec.time_column),
        cutover=time_bound("cutover", cutover, literal=True),
        comment=f"cold-assets: {spec.warm} from {cutover:%Y-%m-%d %H:%M} UTC, cold.{spec.cold} before",
    )


def follow_commits(client: Client, current_table: Callable[[], Table], spec: MirroredTable) -> bool:
    """Re-creates `spec`'s view, where one exists, at its recorded cutover over the metadata
    file of the table `current_table` gives (called only then): one just loaded, or refreshed
    by its writer a moment ago. A view reads the metadata file the catalog named when it was
    made; the offload calls this after its commits, before the table deletes older metadata
    files (write.metadata.previous-versions-max). Returns whether a view was re-created."""
    if not client.query(render("federation_cutover_exists")).result_rows[0][0]:
        return False
    cutover = current_cutovers(client).get(spec.warm)
    exists = client.query(render("view_exists"), parameters={"view": view_name(spec)}).result_rows[0][0]
    if cutover is None or not exists:
        return False
    table = current_table()
    with local_file_access(table):  # the DDL resolves the location
        client.command(view_sql(client, table, spec, cutover))
    return True


def federate(
    client: Client,
    catalog: Catalog,
    policy: HourPolicy | None = None,
    now: datetime | None = None,
    tables: Sequence[MirroredTable] = TABLES,
) -> list[Federation]:
    """Moves each table's cutover as far as parity allows and (re)creates its view. Each view
    has its own cutover: a table that fails keeps its cutover and view, says why in `error`,
    and the others still move."""
    policy = policy or HourPolicy()
    now = now or warm_now(client)
    known = current_cutovers(client)
    done = []
    for spec in tables:
        previous = known.get(spec.warm)
        try:
            cutover, proven = next_cutover(client, catalog, spec, previous, now, policy)
            table = catalog.load_table(spec.cold_identifier)
            with local_file_access(table):  # the DDL resolves the location
                client.command(view_sql(client, table, spec, cutover))
            if cutover != previous:
                client.insert("federation_cutover", [[spec.warm, cutover]], column_names=["table_name", "cutover"])
            done.append(Federation(spec.cold, view_name(spec), cutover, previous, proven))
        except Exception as error:  # noqa: BLE001 - reported per table; the other views go on
            done.append(Federation(spec.cold, view_name(spec), previous or EPOCH, previous, 0, f"{type(error).__name__}: {error}"))
    return done
