"""Parity between the tiers, per (table, hour): row counts and a content checksum.

Both sides are computed by the same ClickHouse expression (sql/checksum.sql): the warm side
over the offload's own read query (so silver is read FINAL and gold as merged bars, exactly
as the asset reads them), the cold side over ClickHouse's Iceberg reader of the cold table.
The row's canonical form is built from the *cold* schema, column by column, so that both
sides hash the same bytes:
- timestamps: toUnixTimestamp64Micro (an integer: no time zone or formatting involved);
- decimals: toString of the same Decimal(P, S) type (both sides carry the Iceberg type);
- booleans: toUInt8; integers: toInt64; strings as they are;
- optional columns: ifNull(toString(...), '\\N'), so a NULL hashes as a marker, not as NULL.
"""

import os
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Iterator

from clickhouse_connect.driver.client import Client
from pyiceberg.table import Table
from pyiceberg.types import BooleanType, DecimalType, IntegerType, LongType, TimestampType, TimestamptzType

from cold_assets.cold_ranges import range_filter
from cold_assets.partitions import hour_of
from cold_assets.settings import s3_collection_name
from cold_assets.tables import MirroredTable
from cold_assets.warm_read import WarmQuery, identifier, read_columns, read_query, render


class ColdTierUnreadable(RuntimeError):
    """ClickHouse cannot read this cold table (warehouse location not supported yet)."""


@dataclass(frozen=True)
class HourParity:
    table: str
    partition_key: str
    warm_rows: int
    cold_rows: int
    warm_checksum: int | None = None
    cold_checksum: int | None = None

    @property
    def counts_match(self) -> bool:
        return self.warm_rows == self.cold_rows

    @property
    def content_checked(self) -> bool:
        return self.cold_checksum is not None

    @property
    def content_matches(self) -> bool:
        """Counts equal, and checksums equal where they could be computed on both tiers."""
        return self.counts_match and (not self.content_checked or self.warm_checksum == self.cold_checksum)


def canonical_row(table: Table) -> str:
    parts = []
    for field in table.schema().fields:
        name = identifier(field.name)
        t = field.field_type
        if isinstance(t, (TimestamptzType, TimestampType)):
            expr = f"toUnixTimestamp64Micro({name})"
        elif isinstance(t, DecimalType):
            expr = f"toString({name})"
        elif isinstance(t, BooleanType):
            expr = f"toUInt8({name})"
        elif isinstance(t, (LongType, IntegerType)):
            expr = f"toInt64({name})"
        else:
            expr = name
        parts.append(expr if field.required else f"ifNull(toString({expr}), '\\\\N')")
    return ", ".join(parts)


def _string_literal(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def s3_http_url(location: str, io_properties: dict[str, str]) -> str:
    """The HTTP(S) URL ClickHouse reads an s3:// location at: path style on the catalog's
    endpoint (MinIO, an emulator), else the bucket's AWS virtual-host URL."""
    bucket, _, key = location.split("://", 1)[1].partition("/")
    endpoint = io_properties.get("s3.endpoint")
    if endpoint:
        return f"{endpoint.rstrip('/')}/{bucket}/{key}"
    region = io_properties.get("s3.region") or "us-east-1"
    return f"https://{bucket}.s3.{region}.amazonaws.com/{key}"


def _s3_collection(client: Client, io_properties: dict[str, str]) -> str:
    """The ClickHouse named collection holding the warehouse's S3 credentials, so that no
    query or view definition carries them. A ClickHouse server has it made by its operator
    (README, Production); embedded chDB gets it here, from the catalog's own properties."""
    name = identifier(s3_collection_name())
    if type(client).__name__ == "ChdbClient":
        # Made again each time: the catalog's credentials may have been rotated.
        key, secret = io_properties.get("s3.access-key-id", ""), io_properties.get("s3.secret-access-key", "")
        client.command(f"DROP NAMED COLLECTION IF EXISTS {name}")
        client.command(
            f"CREATE NAMED COLLECTION {name} AS access_key_id = {_string_literal(key)}, "
            f"secret_access_key = {_string_literal(secret)}"
        )
    return name


def cold_source(table: Table, client: Client, literal: bool = False) -> tuple[str, dict]:
    """The ClickHouse table function that reads a cold table, and its bound parameters (or,
    with `literal`, the location inlined, for a view's DDL).

    - file:// warehouse: icebergLocal, for embedded chDB only (a ClickHouse server cannot see
      this machine's files: ColdTierUnreadable, and parity falls back to Iceberg's counts);
    - s3:// warehouse: icebergS3 over the named collection of the credentials."""
    location = table.location()
    if location.startswith("file://"):
        if type(client).__name__ != "ChdbClient":
            raise ColdTierUnreadable(f"a ClickHouse server cannot read the local cold table location {location}")
        path = location.removeprefix("file://")
        if literal:
            return f"icebergLocal({_string_literal(path)})", {}
        return "icebergLocal({cold_location:String})", {"cold_location": path}
    if location.startswith(("s3://", "s3a://")):
        properties = dict(table.io.properties)
        collection = _s3_collection(client, properties)
        url = s3_http_url(location, properties)
        if literal:
            return f"icebergS3({collection}, url = {_string_literal(url)})", {}
        return f"icebergS3({collection}, url = {{cold_url:String}})", {"cold_url": url}
    raise ColdTierUnreadable(f"ClickHouse cannot read cold table location {location}")


@contextmanager
def local_file_access(table: Table) -> Iterator[None]:
    """chDB lets queries read local files only under the process's working directory. Cold
    queries run with the working directory at / for their duration; callers hold the
    embedded warm tier's lock, which every chDB user in the process takes."""
    if not table.location().startswith("file://"):
        yield
        return
    previous = os.getcwd()
    os.chdir("/")
    try:
        yield
    finally:
        os.chdir(previous)


def _checksums(
    client: Client, source: str, canonical: str, spec: MirroredTable, parameters: dict, settings: dict | None = None
) -> dict[int, tuple[int, int]]:
    sql = render(
        "checksum",
        source=source,
        canonical=canonical,
        time_column=identifier(spec.time_column),
        bucket_function="toStartOfDay" if spec.gold_window == "1d" else "toStartOfHour",
    )
    rows = client.query(sql, parameters=parameters, settings=settings).result_rows
    return {int(b): (int(count), int(digest or 0)) for b, count, digest in rows}


def cold_checksums(
    client: Client, cold_table: Table, spec: MirroredTable, start: datetime, end: datetime, snapshot_id: int | None = None
) -> dict[int, tuple[int, int]]:
    """Per bucket of [start, end): rows and content checksum of the cold table, as of
    `snapshot_id` (default: the current snapshot). Raises ColdTierUnreadable."""
    source, parameters = cold_source(cold_table, client)
    settings = {"iceberg_snapshot_id": snapshot_id} if snapshot_id is not None else None
    with local_file_access(cold_table):
        return _checksums(
            client, source, canonical_row(cold_table), spec,
            {"range_start": start, "range_end": end, **parameters}, settings,
        )


def warm_fingerprint(client: Client, cold_table: Table, spec: MirroredTable, query: WarmQuery) -> str:
    """"rows:checksum" of a warm read (one hour, or one day for the daily bars): the replace
    layers' fingerprint, and the warm side of this run's content parity."""
    buckets = _checksums(client, f"({query.sql})", canonical_row(cold_table), spec, query.parameters)
    return f"{sum(r for r, _ in buckets.values())}:{sum(c for _, c in buckets.values()) % 2**64}"


def parse_fingerprint(fingerprint: str) -> tuple[int, int]:
    rows, checksum = fingerprint.split(":")
    return int(rows), int(checksum)


def partitions_parity(
    client: Client,
    cold_table: Table,
    spec: MirroredTable,
    partition_keys: list[str],
    content: bool,
    warm_fingerprints: dict[str, str] | None = None,
) -> list[HourParity]:
    """Parity of each partition, two queries in all (one per tier) however many partitions.

    `warm_fingerprints` (partition -> fingerprint this run just computed) spare the warm
    query when they cover every partition."""
    ranges = {key: spec.offload_range(hour_of(key)) for key in partition_keys}
    start, end = min(r[0] for r in ranges.values()), max(r[1] for r in ranges.values())
    bounds = {"range_start": start, "range_end": end}
    columns = read_columns(client, spec)
    warm_query = read_query(spec, columns, start, end)
    canonical = canonical_row(cold_table) if content else "1"
    known = warm_fingerprints or {}
    if partition_keys and all(key in known for key in partition_keys):
        warm = {int(ranges[key][0].timestamp()): parse_fingerprint(known[key]) for key in partition_keys}
    else:
        warm = _checksums(client, f"({warm_query.sql})", canonical, spec, warm_query.parameters)
    cold: dict[int, tuple[int, int | None]] = {}
    if cold_table.current_snapshot() is not None:
        try:
            source, source_parameters = cold_source(cold_table, client)
            with local_file_access(cold_table):
                cold = _checksums(client, source, canonical, spec, {**bounds, **source_parameters})
        except ColdTierUnreadable:
            # Counts from Iceberg's own metadata; the content is not checked (checksum None).
            cold = {
                int(lo.timestamp()): (
                    cold_table.scan(row_filter=range_filter(spec.time_column, lo, hi), selected_fields=(spec.time_column,)).count(),
                    None,
                )
                for lo, hi in set(ranges.values())
            }
            content = False
    parities = []
    for key, (bucket_start, _) in ranges.items():
        bucket = int(bucket_start.timestamp())
        (w_rows, w_sum), (c_rows, c_sum) = warm.get(bucket, (0, 0)), cold.get(bucket, (0, 0))
        parities.append(
            HourParity(spec.cold, key, w_rows, c_rows, w_sum if content else None, c_sum if content else None)
        )
    return parities
