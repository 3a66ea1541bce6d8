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

import contextlib
import ctypes
import os
import sys
import threading
from collections import defaultdict
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import Enum
from urllib.parse import urlparse

from clickhouse_connect.driver.binding import format_str  # a quoted, escaped string literal
from clickhouse_connect.driver.client import Client
from pyiceberg.expressions import And, LessThanOrEqual
from pyiceberg.table import Table
from pyiceberg.types import BooleanType, DecimalType, IntegerType, LongType, TimestampType, TimestamptzType

from cold_assets.cold.counts import counts_by_hour
from cold_assets.cold.holdings import ColdFiles
from cold_assets.cold.ranges import range_filter
from cold_assets.cold.read_metadata import metadata_for_read, new_read_path
from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.offload.bookkeeping import Ancestry, PartitionState, StateSource
from cold_assets.offload.reprocessed import Mark, reprocessed_marks
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.settings import s3_collection_name
from cold_assets.tables import Layer, MirroredTable, OffloadMode
from cold_assets.warm.capabilities import capabilities_of
from cold_assets.warm.read import EPOCH, FAR_FUTURE, WarmColumn, WarmQuery, identifier, read_columns, render, warm_read_query

COUNT_ONLY = "1"  # the canonical row of a count-only comparison: no content hashed


class ColdTierUnreadable(RuntimeError):
    """ClickHouse cannot read this cold table (warehouse location not supported yet)."""


class ParityBasis(str, Enum):
    """What an hour's cold rows are compared with (hours.py says when each applies)."""

    WARM_HOUR = "warm hour"  # closed: the whole warm hour (an append layer's: its settled rows)
    WARM_TO_WATERMARK = "warm to watermark"  # open append hour: warm rows ingested up to its watermark
    AS_OFFLOADED = "as offloaded"  # open replace hour: the fingerprint of the rows last written
    COLD_ONLY = "cold only"  # older than the warm retention: cold is the copy of record
    # Reprocessed while warm holds it (offload/reprocessed.py): the fingerprint of the rows the
    # reprocess wrote; warm keeps the earlier logic's rows, unequal by design.
    REPROCESSED = "reprocessed"


@dataclass(frozen=True)
class HourParity:
    table: str
    partition_key: str
    warm_rows: int  # rows of the reference the basis names (0 for a cold-only hour: not read)
    cold_rows: int
    warm_checksum: int | None = None
    cold_checksum: int | None = None
    basis: ParityBasis = ParityBasis.WARM_HOUR
    # AS_OFFLOADED: the warm hour's rows now. It only grows while the hour is open, so fewer
    # than cold holds means warm lost rows.
    warm_rows_now: int | None = None
    # When the tiers were read for this verdict (before either was): of two verdicts on an
    # hour, the one compared later is the newer, whenever each was recorded.
    compared_at: datetime | None = None
    # REPROCESSED: warm's hour is no longer what it was when the hour was reprocessed (a late
    # trade the reprocessed rows lack, lost rows): the hour fails whatever cold holds.
    warm_moved: bool = False

    @property
    def cold_only(self) -> bool:
        return self.basis is ParityBasis.COLD_ONLY

    @property
    def counts_match(self) -> bool:
        if self.cold_only:
            return True
        if self.warm_moved:
            return False
        if self.warm_rows_now is not None and self.warm_rows_now < self.cold_rows:
            return False
        return self.warm_rows == self.cold_rows

    @property
    def warm_has_fewer(self) -> bool:
        """Warm holds fewer rows than cold: replacing cold from warm would lose rows."""
        warm = self.warm_rows_now if self.warm_rows_now is not None else self.warm_rows
        return not self.cold_only and warm < self.cold_rows

    @property
    def content_checked(self) -> bool:
        return self.cold_checksum is not None and not self.cold_only

    @property
    def content_matches(self) -> bool:
        """Counts equal, and checksums equal where they could be computed on both tiers."""
        return self.counts_match and (not self.content_checked or self.warm_checksum == self.cold_checksum)


def canonical_row(table: Table, columns: list[WarmColumn] | None = None, schema_id: int | None = None) -> str:
    """The row's canonical form over the cold schema (`schema_id`: one of its earlier ones). With
    the warm columns: a cold column warm no longer has is not compared (cold keeps its old
    values), and an optional column warm fills with a DEFAULT hashes its default like NULL on
    both tiers (nullIf): rows written before the column was added read NULL in cold and the
    default in warm, and are the same rows. (A real value equal to the default is then not
    told apart from NULL.)"""
    skip = {c.name for c in columns or () if c.absent}
    defaults = {c.name: c.default for c in columns or () if c.default is not None and not c.absent}
    schema = table.schema()
    if schema_id is not None:
        if schema_id not in table.schemas():
            raise ValueError(f"{'.'.join(table.name())} has no schema {schema_id} (it has {sorted(table.schemas())})")
        schema = table.schemas()[schema_id]
    parts = []
    for field in schema.fields:
        if field.name in skip:
            continue
        name = identifier(field.name)
        if not field.required and field.name in defaults:
            name = f"nullIf({name}, {defaults[field.name]})"
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
    (docs/deploy.md); embedded chDB gets it here, from the catalog's own properties."""
    name = identifier(s3_collection_name())
    if capabilities_of(client).makes_its_s3_collection:
        # Made again each time: the catalog's credentials may have been rotated.
        key, secret = io_properties.get("s3.access-key-id", ""), io_properties.get("s3.secret-access-key", "")
        client.command(f"DROP NAMED COLLECTION IF EXISTS {name}")
        client.command(
            f"CREATE NAMED COLLECTION {name} AS access_key_id = {format_str(key)}, "
            f"secret_access_key = {format_str(secret)}"
        )
    return name


def catalog_metadata_file(table: Table) -> str:
    """The table's current metadata file, as the catalog says, relative to the table's location
    (how ClickHouse's iceberg_metadata_file_path takes it). Left to itself, ClickHouse reads
    the highest-numbered metadata file in storage, which need not be the catalog's: a losing
    writer's file written before its compare-and-swap, a catalog restored from a backup."""
    location, metadata = _storage_path(table.location()).rstrip("/") + "/", _storage_path(table.metadata_location)
    if not metadata.startswith(location):
        raise ColdTierUnreadable(f"the metadata file {table.metadata_location} is not under the table location {table.location()}")
    return metadata.removeprefix(location)


def _storage_path(uri: str) -> str:
    """A location without its scheme's spelling: Spark's Iceberg writes `file:/x` where
    pyiceberg writes `file:///x`, and `s3a://` where pyiceberg writes `s3://`."""
    parsed = urlparse(uri)
    return parsed.path if parsed.scheme in ("file", "") else f"{parsed.netloc}{parsed.path}"


def cold_source(table: Table, client: Client, literal: bool = False, metadata_file: str | None = None) -> tuple[str, dict]:
    """The ClickHouse table function that reads a cold table at the catalog's current metadata
    file (or `metadata_file`, relative to the table's location), and its bound parameters (or,
    with `literal`, everything inlined, for a view's DDL).

    - file:// warehouse: icebergLocal, for embedded chDB only (a ClickHouse server cannot see
      this machine's files: ColdTierUnreadable, and parity falls back to Iceberg's counts);
    - s3:// warehouse: icebergS3 over the named collection of the credentials."""
    location, metadata = table.location(), metadata_file or catalog_metadata_file(table)
    if location.startswith("file://"):
        if not capabilities_of(client).reads_local_files:
            raise ColdTierUnreadable(f"a ClickHouse server cannot read the local cold table location {location}")
        path = location.removeprefix("file://")
        if literal:
            return f"icebergLocal({format_str(path)}, SETTINGS iceberg_metadata_file_path = {format_str(metadata)})", {}
        return (
            "icebergLocal({cold_location:String}, SETTINGS iceberg_metadata_file_path = {cold_metadata:String})",
            {"cold_location": path, "cold_metadata": metadata},
        )
    if location.startswith(("s3://", "s3a://")):
        properties = dict(table.io.properties)
        collection = _s3_collection(client, properties)
        url = s3_http_url(location, properties)
        if literal:
            return f"icebergS3({collection}, url = {format_str(url)}, SETTINGS iceberg_metadata_file_path = {format_str(metadata)})", {}
        return (
            f"icebergS3({collection}, url = {{cold_url:String}}, SETTINGS iceberg_metadata_file_path = {{cold_metadata:String}})",
            {"cold_url": url, "cold_metadata": metadata},
        )
    raise ColdTierUnreadable(f"ClickHouse cannot read cold table location {location}")


@contextmanager
def cold_read(table: Table, client: Client, snapshot_id: int | None = None) -> Iterator[tuple[str, dict]]:
    """The table function and parameters of one read of `table`'s current snapshot by
    ClickHouse (and of `snapshot_id`, which the query then names in `iceberg_snapshot_id`),
    through a metadata file holding only those (cold/read_metadata.py): what ClickHouse parses
    does not grow with the table's kept history. Raises ColdTierUnreadable before writing."""
    path = new_read_path()
    trimmed = cold_source(table, client, metadata_file=path)
    with metadata_for_read(table, path, snapshot_id) as written, local_file_access(table):
        yield trimmed if written else cold_source(table, client)


CLONE_FS = 0x200  # unshare(2): the calling thread gets its own working directory, root and umask
_thread = threading.local()
_shared_cwd = threading.Lock()  # where threads cannot have their own working directory


def _own_working_directory() -> bool:
    """Gives the calling thread a working directory of its own, once (Linux: unshare(CLONE_FS),
    which needs no privilege). Its chdir is then invisible to every other thread."""
    if getattr(_thread, "own_cwd", False):
        return True
    if not sys.platform.startswith("linux"):
        return False
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_FS) != 0:
        return False
    _thread.own_cwd = True
    return True


@contextmanager
def local_file_access(table: Table) -> Iterator[None]:
    """chDB lets queries read local files only under the working directory. Cold queries run
    with the working directory at / for their duration, in the calling thread only: the thread
    first gets a working directory of its own, so the code server's other threads (sensors,
    the webserver's requests) never see it move. Where that is not possible (not Linux), a
    process lock keeps at least cold-assets' own threads from racing."""
    if not table.location().startswith("file://"):
        yield
        return
    private = _own_working_directory()
    lock = contextlib.nullcontext() if private else _shared_cwd
    with lock:
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
        bucket_function=spec.range_function,
    )
    rows = client.query(sql, parameters=parameters, settings=settings).result_rows
    return {int(b): (int(count), int(digest or 0)) for b, count, digest in rows}


def cold_checksums(
    client: Client, cold_table: Table, spec: MirroredTable, start: datetime, end: datetime, snapshot_id: int | None = None
) -> dict[int, tuple[int, int]]:
    """Per bucket of [start, end): rows and content checksum of the cold table, as of
    `snapshot_id` (default: the current snapshot). Raises ColdTierUnreadable."""
    settings = {"iceberg_snapshot_id": snapshot_id} if snapshot_id is not None else None
    with cold_read(cold_table, client, snapshot_id) as (source, parameters):
        return _checksums(
            client, source, canonical_row(cold_table), spec,
            {"range_start": start, "range_end": end, **parameters}, settings,
        )


def warm_fingerprints(
    client: Client, cold_table: Table, spec: MirroredTable, query: WarmQuery, columns: list[WarmColumn] | None
) -> dict[int, str]:
    """Per offload range of a warm read (its start, as a Unix timestamp): "rows:checksum", the
    replace layers' fingerprint. Ranges without rows are absent ("0:0")."""
    buckets = _checksums(client, f"({query.sql})", canonical_row(cold_table, columns), spec, query.parameters)
    return {bucket: fingerprint(rows, checksum) for bucket, (rows, checksum) in buckets.items()}


def fingerprint(rows: int, checksum: int) -> str:
    """A replace layer's fingerprint of a range: "rows:checksum", the checksum mod 2^64."""
    return f"{rows}:{checksum % 2**64}"


def parse_fingerprint(fingerprint: str) -> tuple[int, int]:
    rows, checksum = fingerprint.split(":")
    return int(rows), int(checksum)


def partitions_parity(
    client: Client,
    cold_table: Table,
    spec: MirroredTable,
    partition_keys: list[str],
    content: bool,
    *,
    now: datetime,
    policy: HourPolicy,
    offloaded: Mapping[str, PartitionState] | None = None,
    rows_in_flight_count: bool = False,
    cold_counts_from_manifests: bool = False,
    reprocessed_by_mark: bool = True,
) -> list[HourParity]:
    """Parity of each partition at warm-clock time `now`, with one cold query and a warm query
    per distinct bound (one or two), however many partitions.

    Each hour is compared on the basis its status calls for (ParityBasis). `offloaded` holds,
    per partition, what an offload just left it at (watermark, fingerprint); other hours take
    what the table's own bookkeeping says (the current snapshot's ancestry).
    `rows_in_flight_count` compares an append layer's closed hours whole, rows younger than
    the settle lag included (the federated views: a cutover must not hide them).
    `cold_counts_from_manifests` (counts only) takes cold's rows per hour from the manifests'
    record counts where they answer exactly, reading no data file: what a sensor looking for
    late rows in warm needs. A data file lost from storage is then not noticed: the checks
    and the audit, which read the files, are what notice it.

    An hour a reprocess replaced while warm holds it is compared with the fingerprint of what
    the reprocess wrote, not with warm (ParityBasis.REPROCESSED), unless `reprocessed_by_mark`
    is False (a reprocess comparing its scratch with cold)."""
    compared_at = datetime.now(UTC)
    statuses = {key: policy.status(spec, hour_of(key), now) for key in partition_keys}
    ranges = {key: spec.offload_range(hour_of(key)) for key in partition_keys}
    marks = reprocessed_marks(cold_table) if reprocessed_by_mark else {}
    reprocessed = {
        key: marks[mark] for key, status in statuses.items()
        if status is not HourStatus.COLD_ONLY and (mark := partition_key_of(ranges[key][0])) in marks
    }
    # What an open hour's last offload left (per bucket: the daily bars' day is one bucket):
    # what the run just offloaded, or the table's bookkeeping. Closed hours need none.
    states = {int(ranges[key][0].timestamp()): state for key, state in (offloaded or {}).items() if key in ranges}
    ancestry = Ancestry(cold_table, spec)
    for key, status in statuses.items():
        bucket = int(ranges[key][0].timestamp())
        if status is HourStatus.OPEN and bucket not in states and (state := ancestry.state(ranges[key][0])) is not None:
            states[bucket] = state
    states |= _floors_of_open_hours_without_bookkeeping(cold_table, spec, statuses, ranges, states)
    columns = read_columns(client, spec, cold_table.schema()) if any(s is not HourStatus.COLD_ONLY for s in statuses.values()) else None
    canonical = canonical_row(cold_table, columns) if content else COUNT_ONLY
    settled = None if rows_in_flight_count else now - policy.settle_lag
    warm = _warm_side(client, spec, canonical, statuses, ranges, states, columns, settled)
    # An append layer's closed hours are compared on their settled rows on both tiers: a row
    # still in flight is judged once it settled, whether cold already holds it (an offload with
    # a shorter lag: the demo's) or not yet.
    in_flight = None
    if settled is not None and spec.mode is OffloadMode.APPEND:
        open_from = min((ranges[k][0] for k, s in statuses.items() if s is HourStatus.OPEN), default=FAR_FUTURE)
        in_flight = (settled, open_from)
    cold = _cold_side(client, cold_table, spec, canonical, ranges, in_flight, cold_counts_from_manifests)
    if content and reprocessed:
        cold |= _cold_side_of_marks(client, cold_table, spec, {key: (ranges[key], mark) for key, mark in reprocessed.items()})
    content = content and all(c is not None for _, c in cold.values())
    parities = []
    for key, (bucket_start, _) in ranges.items():
        bucket = int(bucket_start.timestamp())
        c_rows, c_sum = cold.get(bucket, (0, 0))
        if statuses[key] is HourStatus.COLD_ONLY:
            parities.append(
                HourParity(spec.cold, key, 0, c_rows, None, c_sum if content else None, ParityBasis.COLD_ONLY, compared_at=compared_at)
            )
            continue
        w_rows, w_sum = warm.get(bucket, (0, 0))
        basis, now_rows, moved = ParityBasis.WARM_HOUR, None, False
        if key in reprocessed:
            basis, moved = ParityBasis.REPROCESSED, _warm_moved(spec, reprocessed[key], w_rows, w_sum if content else None)
            w_rows, w_sum = parse_fingerprint(reprocessed[key].fingerprint)
        elif statuses[key] is HourStatus.OPEN and spec.mode is OffloadMode.REPLACE:
            basis, now_rows = ParityBasis.AS_OFFLOADED, w_rows
            fingerprint = states[bucket].fingerprint if bucket in states else None
            # Without a fingerprint on the ancestry (never offloaded; or its commit thinned or
            # expired) nothing is known to have been offloaded: cold rows then show, loudly.
            w_rows, w_sum = parse_fingerprint(fingerprint) if fingerprint else (0, 0)
        elif statuses[key] is HourStatus.OPEN:
            basis = ParityBasis.WARM_TO_WATERMARK
        parities.append(
            HourParity(
                spec.cold, key, w_rows, c_rows, w_sum if content else None, c_sum if content else None, basis, now_rows,
                compared_at, moved,
            )
        )
    return parities


def _warm_moved(spec: MirroredTable, mark: Mark, warm_rows: int, warm_checksum: int | None) -> bool:
    """Whether warm's hour moved since it was reprocessed: its rows (a late trade, lost rows),
    and a gold hour's content too, where compared (a late trade changes a bar, not the number
    of bars; gold's canonical form takes no warm column's rule, so it stays comparable)."""
    rows, checksum = parse_fingerprint(mark.warm)
    if warm_rows != rows:
        return True
    return spec.layer is Layer.GOLD and warm_checksum is not None and warm_checksum % 2**64 != checksum


def _cold_side_of_marks(
    client: Client, cold_table: Table, spec: MirroredTable, marked: Mapping[str, tuple[tuple[datetime, datetime], Mark]]
) -> dict[int, tuple[int, int | None]]:
    """Cold rows and checksums of reprocessed hours, each over the fields of the schema its mark
    was made under and no warm column's rule (as `warm_fingerprints` without warm columns
    made the mark: offload/reprocessed.py). Where ClickHouse cannot read this cold tier, none
    (the cold side's counts stand)."""
    found: dict[int, tuple[int, int | None]] = {}
    for schema_id in sorted({mark.schema_id for _, mark in marked.values()}):
        spans = [span for span, mark in marked.values() if mark.schema_id == schema_id]
        wanted = {int(lo.timestamp()) for lo, _ in spans}
        try:
            with cold_read(cold_table, client) as (source, parameters):
                rows = _checksums(
                    client, source, canonical_row(cold_table, schema_id=schema_id), spec,
                    {"range_start": min(lo for lo, _ in spans), "range_end": max(hi for _, hi in spans), **parameters},
                )
        except ColdTierUnreadable:
            return {}
        found |= {bucket: rows.get(bucket, (0, 0)) for bucket in wanted}
    return found


def _floors_of_open_hours_without_bookkeeping(
    cold_table: Table,
    spec: MirroredTable,
    statuses: Mapping[str, HourStatus],
    ranges: Mapping[str, tuple[datetime, datetime]],
    states: Mapping[int, PartitionState],
) -> dict[int, PartitionState]:
    """An open append hour is compared up to its watermark. One whose commit is no longer on
    the current ancestry (the nightly's thinning, an expiry by id) is compared up to the
    newest ingestion its cold files hold, where the offload's reconciliation starts it from:
    cold holds no row ingested after it, and a warm row up to it that cold lacks (made
    visible late) is a mismatch, as it is at a watermark. (Up to nothing, every such hour
    looked mismatched.)"""
    if spec.mode is not OffloadMode.APPEND:
        return {}
    missing = [
        key for key, status in statuses.items()
        if status is HourStatus.OPEN and int(ranges[key][0].timestamp()) not in states
    ]
    if not missing or cold_table.current_snapshot() is None:
        return {}
    files = ColdFiles(cold_table, spec, min(ranges[k][0] for k in missing), max(ranges[k][1] for k in missing))
    floors = {}
    for key in missing:
        floor = files.newest_ingestion(*ranges[key])
        if floor is not None:
            floors[int(ranges[key][0].timestamp())] = PartitionState(watermark=floor, source=StateSource.DATA)
    return floors


def _warm_side(
    client: Client,
    spec: MirroredTable,
    canonical: str,
    statuses: dict[str, HourStatus],
    ranges: dict[str, tuple[datetime, datetime]],
    states: Mapping[int, PartitionState],
    columns: list[WarmColumn] | None,
    settled: datetime | None,
) -> dict[int, tuple[int, int]]:
    """Warm rows and checksums per bucket: the whole range of a replace layer; an append
    layer's read up to what an offload could have seen, its watermark for an open hour and
    `settled` (the clock minus the settle lag; None: all) for a closed one: a late row of a closed hour
    still inside the settle lag is in flight, not missing (the next offload of the hour, or
    the self-healing sensor once it settled, takes it). Buckets sharing a bound share one
    query. Cold-only hours are not read."""
    by_bound: dict[datetime | None, list[tuple[datetime, datetime]]] = defaultdict(list)
    for key, status in statuses.items():
        if status is HourStatus.COLD_ONLY:
            continue
        start, end = ranges[key]
        bound = None
        if spec.mode is OffloadMode.APPEND and status is HourStatus.OPEN:
            state = states.get(int(start.timestamp()))
            bound = state.watermark if state is not None and state.watermark is not None else EPOCH
        elif spec.mode is OffloadMode.APPEND:
            bound = settled
        by_bound[bound].append((start, end))
    warm: dict[int, tuple[int, int]] = {}
    for bound, spans in by_bound.items():
        start, end = min(lo for lo, _ in spans), max(hi for _, hi in spans)
        query = warm_read_query(client, spec, columns, start, end, until=bound if bound is not None else FAR_FUTURE)
        wanted = {int(lo.timestamp()) for lo, _ in spans}
        found = _checksums(client, f"({query.sql})", canonical, spec, query.parameters)
        warm.update({bucket: value for bucket, value in found.items() if bucket in wanted})
    return warm


def _cold_side(
    client: Client,
    cold_table: Table,
    spec: MirroredTable,
    canonical: str,
    ranges: dict[str, tuple[datetime, datetime]],
    in_flight: tuple[datetime, datetime] | None = None,
    counts_from_manifests: bool = False,
) -> dict[int, tuple[int, int | None]]:
    """Cold rows and checksums per bucket, read by ClickHouse; where it cannot read this cold
    tier, counts from Iceberg's own metadata and no checksum (None). `in_flight` = (settled,
    open_from): rows ingested after `settled` are left out of the buckets before `open_from`
    (an append layer's closed hours, whose warm side counts settled rows only)."""
    if cold_table.current_snapshot() is None or not ranges:
        return {}
    start, end = min(r[0] for r in ranges.values()), max(r[1] for r in ranges.values())
    known: dict[int, tuple[int, int | None]] = {}
    if counts_from_manifests and canonical == COUNT_ONLY:
        # The manifests' record counts answer most hours without a data file read.
        buckets = {int(lo.timestamp()) for lo, _ in ranges.values()}
        counts, unknown = counts_by_hour(cold_table, spec, buckets, start, end, *(in_flight or (None, None)))
        known = {bucket: (rows, None) for bucket, rows in counts.items()}
        if not unknown:
            return known
        start = datetime.fromtimestamp(min(unknown), UTC)
        end = max(hi for lo, hi in ranges.values() if int(lo.timestamp()) in unknown)
    try:
        with cold_read(cold_table, client) as (source, source_parameters):
            parameters = {"range_start": start, "range_end": end, **source_parameters}
            if in_flight is not None:
                source = render("settled_rows", source=source, time_column=identifier(spec.time_column))
                parameters |= {"settled": in_flight[0], "open_from": in_flight[1]}
            return {**_checksums(client, source, canonical, spec, parameters), **known}
    except ColdTierUnreadable:
        def count(lo: datetime, hi: datetime) -> int:
            row_filter = range_filter(spec.time_column, lo, hi)
            if in_flight is not None and lo < in_flight[1]:
                settled = LessThanOrEqual("ingested_at", in_flight[0].isoformat())  # type: ignore[call-arg, arg-type]
                row_filter = And(row_filter, settled)
            return cold_table.scan(row_filter=row_filter, selected_fields=(spec.time_column,)).count()

        unread = {(lo, hi) for lo, hi in ranges.values() if int(lo.timestamp()) not in known}
        return {**{int(lo.timestamp()): (count(lo, hi), None) for lo, hi in unread}, **known}
