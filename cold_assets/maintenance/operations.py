"""Nightly maintenance of one cold table on Spark: compaction, snapshot expiry, orphan files,
and the proof that compaction changed nothing.

- Compaction rewrites closed partitions only: those wholly before the start of the current
  UTC day, which the 15-minute offload no longer writes, and of those only the ones where a
  rewrite changes something (offloaded_partitions): a file the offload wrote that is to be
  merged with others, or re-encoded at the table's long-term compression level. It merges
  their files, sorts the rows by the table's cold order and re-encodes them with the table's
  write.parquet.* properties: the layout kept for years, written once. The hours still being
  offloaded keep their own small files, so an offload's replace of its hour never rewrites a
  compacted file, and the two rarely touch the same files at
  all. When they do (a repair of an old hour during compaction), Iceberg's validation makes
  one of them retry: an offload retries from reconciliation, a compaction plans again (its
  one commit per table is all or nothing, sql/spark/rewrite_data_files.sql).
- Every data rewrite commit is verified: the content checksum of the rows it rewrote, read
  by ClickHouse at the commit's snapshot and at its parent, is the same (the audit's
  checksum, parity/checksums.py). Verifying against the parent, not the snapshot before the job,
  keeps the proof exact while offloads commit concurrently.
- Expiry keeps the offload exactly-once: reconciliation takes the newer of the partition's
  newest commit on the ancestry and the cold files' own newest ingested_at (offload/plan.py),
  and the files' statistics need no expired snapshot. Expiry calls Iceberg's ExpireSnapshots in the Spark
  session's JVM rather than the procedure, whose Spark jobs cost more than the work at this
  size (expire_snapshots says why).

The Spark SQL is in sql/spark/*.sql; procedures take literals only, so every value is
rendered here from a typed Python value (identifiers validated, timestamps formatted).
"""

import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

from clickhouse_connect.driver.client import Client
from pyiceberg.manifest import DataFile, ManifestEntryStatus
from pyiceberg.table import Table
from pyiceberg.table.snapshots import Snapshot
from pyiceberg.types import NestedField
from pyspark.sql import SparkSession

from cold_assets.cold.bounds import bound_micros, instant
from cold_assets.cold.files import reencodes_offload_files, written_by_offload
from cold_assets.cold.manifests import last_rewrite_sequence_number, live_data_files, written_since
from cold_assets.offload.bookkeeping import is_data_rewrite, swaps_data_files
from cold_assets.parity.checksums import cold_checksums
from cold_assets.tables import MirroredTable
from cold_assets.warm.read import EPOCH, identifier, render

T = TypeVar("T")

TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f"  # microseconds: a horizon or range bound is an instant, not a second
MIN_ORPHAN_AGE = timedelta(days=1)  # Iceberg refuses less: a running writer's files look orphaned
MAX_CONFLICT_RETRIES = 3
# The embedded catalog is one SQLite file: two commits at once (tables maintained in
# parallel, or an offload) can fail on its lock instead of waiting. Nothing was committed
# then, so the call is simply made again.
CATALOG_BUSY = ("SQLITE_BUSY",)
MAX_BUSY_RETRIES = 20
# A file group (a partition) is one Spark job; an hour partition's is small, so more run at
# once than Iceberg's default 5 to keep both cores busy between jobs.
CONCURRENT_FILE_GROUPS = 16
MANIFESTS_WORTH_REWRITING = 8  # commits' manifests (each offload commit adds one); a few cost planning nothing
# A commit that lost a race with another writer: nothing was committed, plan again.
CONFLICTS = (
    "org.apache.iceberg.exceptions.ValidationException",
    "org.apache.iceberg.exceptions.CommitFailedException",
)


@dataclass(frozen=True)
class FileStats:
    """The current snapshot's data files, in all or in [start, end) of the time column."""

    data_files: int
    bytes: int
    rows: int
    partitions: int
    max_files_per_partition: int


@dataclass(frozen=True)
class RewriteProof:
    """A data rewrite commit and its parent: same rows, same checksum over what it rewrote."""

    snapshot_id: int
    parent_id: int
    start: datetime
    end: datetime
    rows_before: int
    rows_after: int
    checksum_before: int
    checksum_after: int
    differing_buckets: list[int] = field(default_factory=list)

    @property
    def unchanged(self) -> bool:
        return not self.differing_buckets


@dataclass(frozen=True)
class CompactionResult:
    table: str
    lower: datetime
    upper: datetime
    before: FileStats
    after: FileStats
    rewritten_files: int
    added_files: int
    manifests_rewritten: int
    conflicts_retried: int
    rewrite_snapshot_ids: list[int]
    seconds: float


@dataclass(frozen=True)
class ExpiryResult:
    table: str
    snapshots_expired: int  # as Iceberg listed them: exact even if an offload commits meanwhile
    snapshots_thinned: int  # of which inside the retention: not the last of their period (a UTC day)
    snapshots_after: int
    data_files_deleted: int
    manifests_deleted: int
    manifest_lists_deleted: int
    seconds: float

    @property
    def snapshots_before(self) -> int:
        return self.snapshots_after + self.snapshots_expired


@dataclass(frozen=True)
class OrphanResult:
    table: str
    dry_run: bool
    orphans: list[str]
    seconds: float


def _literal_timestamp(value: datetime) -> str:
    return value.astimezone(UTC).strftime(TIMESTAMP_FORMAT)  # the session time zone is UTC


def _table_name(spec: MirroredTable, namespace: str = "cold") -> str:
    return f"{identifier(namespace)}.{identifier(spec.cold)}"


def _retry_while_catalog_busy(action: Callable[[], T]) -> T:
    """Runs `action` again while the catalog's SQLite file is busy (see CATALOG_BUSY)."""
    for attempt in range(MAX_BUSY_RETRIES + 1):
        try:
            return action()
        except Exception as error:  # py4j wraps the JVM's exception
            if attempt == MAX_BUSY_RETRIES or not any(code in str(error) for code in CATALOG_BUSY):
                raise
            time.sleep(random.uniform(0.2, 1.0) * min(attempt + 1, 5))  # jitter: no lockstep
    raise AssertionError("unreachable")


def call_procedure(spark: SparkSession, sql: str) -> list:
    """Runs an Iceberg procedure; again while the catalog is busy."""
    return _retry_while_catalog_busy(lambda: spark.sql(sql).collect())


def _time_bounds(time_field: NestedField, data_file: DataFile) -> tuple[datetime, datetime]:
    """The smallest and largest value of the time column in a data file, from its statistics
    (the offload and Spark both write them for every column)."""
    lowest, highest = bound_micros(data_file.lower_bounds, time_field), bound_micros(data_file.upper_bounds, time_field)
    if lowest is None or highest is None:
        raise ValueError(f"data file {data_file.file_path} keeps no bounds on {time_field.name}")
    return instant(lowest), instant(highest)


def _partition_of(data_file: DataFile) -> tuple:
    """The partition a data file belongs to: its spec and partition values."""
    return data_file.spec_id, tuple(cast(Iterable[object], data_file.partition))


def file_stats(table: Table, spec: MirroredTable, start: datetime | None = None, end: datetime | None = None) -> FileStats:
    """Counts over the live data files of the current snapshot, all or those wholly in
    [start, end) of the time column. Reads the manifest entries themselves: a table with a
    week of hourly commits has hundreds of manifests, and `inspect.data_files` would also
    decode every column's bounds (twice the time)."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return FileStats(0, 0, 0, 0, 0)
    time_field = table.schema().find_field(spec.time_column)

    def in_range(data_file: DataFile) -> bool:
        if start is None or end is None:
            return True
        lowest, highest = _time_bounds(time_field, data_file)
        return start <= lowest and highest < end

    files = [f for f in live_data_files(table) if in_range(f)]
    per_partition: Counter[tuple] = Counter(_partition_of(f) for f in files)
    return FileStats(
        data_files=len(files),
        bytes=sum(f.file_size_in_bytes for f in files),
        rows=sum(f.record_count for f in files),
        partitions=len(per_partition),
        max_files_per_partition=max(per_partition.values(), default=0),
    )


def closed_partitions_range(table: Table, spec: MirroredTable, now: datetime, lookback_days: int) -> tuple[datetime, datetime]:
    """[lower, upper): upper is the start of the current UTC day (the offload still writes
    today's hours), lower goes back `lookback_days` and down to a partition boundary."""
    upper = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    lower = upper - timedelta(days=lookback_days)
    transforms = {str(f.transform) for f in table.spec().fields if table.schema().find_field(f.source_id).name == spec.time_column}
    if "month" in transforms:
        lower = lower.replace(day=1)
    return lower, upper


def _partition_span(transform: str, instant: datetime) -> tuple[datetime, datetime]:
    """The time partition (hour, day or month) that holds `instant`."""
    if transform == "hour":
        start = instant.replace(minute=0, second=0, microsecond=0)
        return start, start + timedelta(hours=1)
    day = instant.replace(hour=0, minute=0, second=0, microsecond=0)
    if transform == "day":
        return day, day + timedelta(days=1)
    if transform == "month":
        month = day.replace(day=1)
        return month, (month + timedelta(days=32)).replace(day=1)
    raise ValueError(f"no compaction for a time partition by {transform!r}")


def _time_transform(table: Table, spec: MirroredTable) -> str:
    for partition_field in table.spec().fields:
        if table.schema().find_field(partition_field.source_id).name == spec.time_column:
            return str(partition_field.transform)
    raise ValueError(f"cold.{spec.cold} is not partitioned by {spec.time_column}")


def worth_rewriting(files: int, offload_files: int, transform: str, reencodes: bool) -> bool:
    """Whether compaction rewrites a partition of `files` live files, `offload_files` of them
    written by the offload, partitioned by `transform` of time (offloaded_partitions says why)."""
    if offload_files == 0:
        return False
    return files > 1 or transform != "hour" or reencodes


def offloaded_partitions(table: Table, spec: MirroredTable, lower: datetime, upper: datetime) -> list[tuple[datetime, datetime]]:
    """The time partitions in [lower, upper) that rewriting changes, as contiguous [start, end)
    ranges: what compaction rewrites. A partition is rewritten when it holds a file the hourly
    offload wrote, unless it is an hour partition holding that one file only and the table
    keeps no long-term encoding the offload does not write (`reencodes_offload_files`): the
    offload wrote that hour once, whole, in the cold order, and a rewrite would write it again
    (bronze: 0.99 x its size, at one Spark job per hour and exchange). A day or month holding
    one file so far is rewritten (Spark's small files are smaller: gold_ohlcv_1d 0.73 x).
    A partition holding only files compaction wrote is left alone, so each is rewritten once,
    and again only after a repair wrote to it. The filter is by time: a span is rewritten
    whole, every exchange of it."""
    time_field = table.schema().find_field(spec.time_column)
    transform = _time_transform(table, spec)
    reencode = reencodes_offload_files(table.properties)
    by_partition: dict[tuple, list[DataFile]] = defaultdict(list)
    for data_file in live_data_files(table):
        by_partition[_partition_of(data_file)].append(data_file)
    spans = set()
    for files in by_partition.values():
        offloaded = [f for f in files if written_by_offload(f.file_path)]
        if not worth_rewriting(len(files), len(offloaded), transform, reencode):
            continue
        for data_file in offloaded:
            lowest, highest = _time_bounds(time_field, data_file)
            if lowest < lower or highest >= upper:
                continue
            start, end = _partition_span(transform, lowest)
            while start <= highest:
                spans.add((max(start, lower), min(end, upper)))
                start, end = _partition_span(transform, end)
    ranges: list[tuple[datetime, datetime]] = []
    for start, end in sorted(spans):
        if ranges and ranges[-1][1] >= start:
            ranges[-1] = (ranges[-1][0], max(ranges[-1][1], end))
        else:
            ranges.append((start, end))
    return ranges


def _where(time_column: str, ranges: list[tuple[datetime, datetime]]) -> str:
    column = identifier(time_column)
    return " OR ".join(
        f"({column} >= TIMESTAMP '{_literal_timestamp(a)}' AND {column} < TIMESTAMP '{_literal_timestamp(b)}')" for a, b in ranges
    )


def compact(
    spark: SparkSession,
    table: Table,
    spec: MirroredTable,
    catalog_name: str,
    now: datetime,
    lookback_days: int = 7,
    target_file_size_bytes: int = 512 * 1024 * 1024,
) -> CompactionResult:
    """Rewrites the closed partitions that hold the offload's files (offloaded_partitions),
    sorted and re-encoded for the long term, and rewrites manifests. The data rewrite commit
    it made, if any, is in `rewrite_snapshot_ids`: prove it with `prove_rewrite`."""
    started = time.perf_counter()
    lower, upper = closed_partitions_range(table, spec, now, lookback_days)
    before = file_stats(table, spec, lower, upper)
    known = {s.snapshot_id for s in table.metadata.snapshots}
    # Manifests first: the day's, by commit time, which the data rewrite's planning and both
    # sides of its proof (ClickHouse reads the parent snapshot too) would read. An offload
    # that merged manifests meanwhile makes it fail Iceberg's validation: it is called again.
    manifests, conflicts = {"rewritten_manifests_count": 0}, 0
    if commits_manifests(table) > MANIFESTS_WORTH_REWRITING:
        manifests, conflicts = _retrying_conflicts(lambda: rewrite_manifests(spark, spec, catalog_name), conflicts)

    def rewrite_data_files() -> dict:
        # Planned again at each attempt: an offload replaced files an earlier one read.
        ranges = offloaded_partitions(table.refresh(), spec, lower, upper)
        if not ranges:  # nothing the offload wrote since the last compaction: no Spark job
            return {"rewritten_data_files_count": 0, "added_data_files_count": 0}
        # An hour partition holds the offload's files, already in the cold order: re-encoded
        # as they are (binpack). Days and months hold many hours: sorted.
        template = "spark/rewrite_data_files_binpack" if _time_transform(table, spec) == "hour" else "spark/rewrite_data_files"
        rewrite_sql = render(
            template,
            catalog=identifier(catalog_name),
            table=_table_name(spec),
            sort_order=", ".join(f"{identifier(c)} ASC NULLS LAST" for c in spec.cold_order),
            where=_where(spec.time_column, ranges),
            concurrent_groups=str(CONCURRENT_FILE_GROUPS),
            target_file_size_bytes=str(int(target_file_size_bytes)),
        )
        return call_procedure(spark, rewrite_sql)[0]

    rewrite, conflicts = _retrying_conflicts(rewrite_data_files, conflicts)
    table = table.refresh()
    rewrites = [s.snapshot_id for s in table.metadata.snapshots if s.snapshot_id not in known and is_data_rewrite(s)]
    return CompactionResult(
        table=spec.cold,
        lower=lower,
        upper=upper,
        before=before,
        after=file_stats(table, spec, lower, upper),
        rewritten_files=int(rewrite["rewritten_data_files_count"]),
        added_files=int(rewrite["added_data_files_count"]),
        manifests_rewritten=int(manifests["rewritten_manifests_count"]),
        conflicts_retried=conflicts,
        rewrite_snapshot_ids=rewrites,
        seconds=time.perf_counter() - started,
    )


def _retrying_conflicts(attempt: Callable[[], T], conflicts: int) -> tuple[T, int]:
    """attempt(), made again while it loses to a concurrent commit (Iceberg's validation, or
    the catalog's check: nothing was committed), up to MAX_CONFLICT_RETRIES conflicts in all
    (`conflicts` so far). Its result, and the conflicts then."""
    while True:
        try:
            return attempt(), conflicts
        except Exception as error:  # py4j wraps the JVM's exception
            if conflicts >= MAX_CONFLICT_RETRIES or not any(name in str(error) for name in CONFLICTS):
                raise
            conflicts += 1


def commits_manifests(table: Table) -> int:
    """Data manifests of the current snapshot written since the last rewrite: the day's
    commits', which merge among themselves up to commit.manifest.target-size-bytes each
    (internals.py). A table that took no commit since has none, and is not rewritten again."""
    snapshot = table.current_snapshot()
    if snapshot is None:
        return 0
    rewritten_at = last_rewrite_sequence_number(table.metadata)
    return sum(1 for m in snapshot.manifests(table.io) if written_since(m, rewritten_at))


def rewrite_manifests(spark: SparkSession, spec: MirroredTable, catalog_name: str) -> dict:
    """Manifests of contiguous partition ranges, of commit.manifest.target-size-bytes each
    (ddl/iceberg), instead of one per offload commit."""
    return call_procedure(spark, render("spark/rewrite_manifests", catalog=identifier(catalog_name), table=_table_name(spec)))[0].asDict()


def latest_data_rewrite(table: Table) -> Snapshot | None:
    rewrites = [s for s in table.metadata.snapshots if is_data_rewrite(s) and s.parent_snapshot_id is not None]
    return max(rewrites, key=lambda s: s.sequence_number or 0, default=None)


def _rewritten_range(table: Table, spec: MirroredTable, snapshot: Snapshot) -> tuple[datetime, datetime]:
    """The time range of the rows `snapshot` rewrote: the bounds of the files it replaced."""
    time_field = table.schema().find_field(spec.time_column)
    lowest: datetime | None = None
    highest: datetime | None = None
    for manifest in snapshot.manifests(table.io):
        if manifest.added_snapshot_id != snapshot.snapshot_id:
            continue
        for entry in manifest.fetch_manifest_entry(table.io, discard_deleted=False):
            if entry.status != ManifestEntryStatus.DELETED:
                continue
            lo, hi = _time_bounds(time_field, entry.data_file)
            lowest = lo if lowest is None else min(lowest, lo)
            highest = hi if highest is None else max(highest, hi)
    if lowest is None or highest is None:
        raise ValueError(f"snapshot {snapshot.snapshot_id} of {spec.cold} rewrote no data file")
    return lowest, highest + timedelta(microseconds=1)


def prove_rewrite(client: Client, table: Table, spec: MirroredTable, snapshot_id: int) -> RewriteProof:
    snapshot = table.snapshot_by_id(snapshot_id)
    if snapshot is None or snapshot.parent_snapshot_id is None:
        raise ValueError(f"cold.{spec.cold}: snapshot {snapshot_id} is not a rewrite of an earlier snapshot")
    start, end = _rewritten_range(table, spec, snapshot)
    before = cold_checksums(client, table, spec, start, end, snapshot_id=snapshot.parent_snapshot_id)
    after = cold_checksums(client, table, spec, start, end, snapshot_id=snapshot.snapshot_id)
    return RewriteProof(
        snapshot_id=snapshot.snapshot_id,
        parent_id=snapshot.parent_snapshot_id,
        start=start,
        end=end,
        rows_before=sum(rows for rows, _ in before.values()),
        rows_after=sum(rows for rows, _ in after.values()),
        checksum_before=sum(c for _, c in before.values()) % 2**64,
        checksum_after=sum(c for _, c in after.values()) % 2**64,
        differing_buckets=sorted(b for b in before.keys() | after.keys() if before.get(b) != after.get(b)),
    )


@dataclass(frozen=True)
class AncestorSnapshot:
    """What thinning needs of a snapshot of the current ancestry."""

    snapshot_id: int
    committed_ms: int
    parent_id: int | None
    data_rewrite: bool  # a compaction's commit (is_data_rewrite)

    @classmethod
    def of(cls, snapshot: Snapshot) -> "AncestorSnapshot":
        return cls(snapshot.snapshot_id, snapshot.timestamp_ms, snapshot.parent_snapshot_id, is_data_rewrite(snapshot))


def thinned_snapshots(
    ancestry: list[AncestorSnapshot], older_than: datetime, every_commit_after: datetime, period: timedelta, referenced: set[int]
) -> list[int]:
    """The snapshots of the current ancestry (newest first) that thinning expires: those
    committed between `older_than` and `every_commit_after` that are not the last of their
    `period` (counted from the epoch: a day is a UTC day) on the ancestry. What stays is every
    commit after `every_commit_after`, and before it the table as it was at the end of each
    period, what a branch or a tag names (`referenced`), and each
    compaction's data rewrite with its parent, against which `compaction_preserved_content`
    proves it again from the UI.

    The ancestry is cut at the first thinned snapshot: the offload's bookkeeping, a rollback
    (`rollback_to_snapshot`) and time travel by timestamp reach back that far only."""
    lo, hi = ((instant - EPOCH) // timedelta(milliseconds=1) for instant in (older_than, every_commit_after))
    period_ms = period // timedelta(milliseconds=1)
    kept = set(referenced)
    for snapshot in ancestry:
        if snapshot.data_rewrite:
            kept.add(snapshot.snapshot_id)
            if snapshot.parent_id is not None:
                kept.add(snapshot.parent_id)
    thinned, periods_seen = [], set()
    for snapshot in ancestry:
        if not lo <= snapshot.committed_ms < hi:
            continue
        which = snapshot.committed_ms // period_ms
        if which in periods_seen and snapshot.snapshot_id not in kept:
            thinned.append(snapshot.snapshot_id)
        periods_seen.add(which)
    return thinned


def expire_snapshots(
    spark: SparkSession, table: Table, spec: MirroredTable, catalog_name: str, older_than: datetime,
    every_commit_after: datetime | None = None, one_per: timedelta = timedelta(days=1),
) -> ExpiryResult:
    """Expires the snapshots committed before `older_than` (the current one always stays) with
    Iceberg's ExpireSnapshots, on the Spark catalog's table in the session's JVM; with
    `every_commit_after`, also thins the retention to one snapshot `one_per` before it
    (thinned_snapshots): each kept snapshot is
    a whole copy of the table's metadata in every later metadata.json, which every commit
    writes and every load parses, so a week of 15-minute commits (672 a table) would cost each
    tick more than the rest of its growth in a month (docs/maintenance.md).

    Not the expire_snapshots procedure: its Spark action finds the files to delete with Spark
    jobs over every manifest of every snapshot, about 3.5 s of job overhead per table at this
    size, where the core API reads the same manifests in the JVM in about 0.5 s (bench
    maintenance: 34 s -> 6 s for the nine tables). Naming the expired snapshots makes Iceberg
    clean up by reachability, as the procedure does: a file goes when no kept snapshot
    references it, even when the snapshot that dropped it (a compaction) is kept. Without
    names, Iceberg's incremental cleanup would keep such files until that snapshot expires.
    """
    started = time.perf_counter()
    jvm: Any = spark._jvm  # py4j's view of the session's JVM: untyped

    def expire() -> tuple[int, int, set[str], list[str]]:
        # Spark finds catalogs in the active session's settings, which spark.sql() sets on
        # the calling thread and a direct call does not.
        jvm.org.apache.spark.sql.SparkSession.setActiveSession(spark._jsparkSession)
        java_table = jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(
            spark._jsparkSession, f"{identifier(catalog_name)}.{_table_name(spec)}"
        )
        expiry = java_table.expireSnapshots().expireOlderThan((older_than - EPOCH) // timedelta(milliseconds=1)).retainLast(1)
        thinned: list[int] = []
        if every_commit_after is not None and every_commit_after > older_than:
            # The catalog's current metadata: Spark's catalog may hand out a table it cached
            # (a retry after SQLITE_BUSY). A commit after this walk is newer than the window.
            java_table.refresh()
            ancestry, snapshot = [], java_table.currentSnapshot()
            while snapshot is not None:
                parent = snapshot.parentId()
                rewrite = swaps_data_files(snapshot.operation(), snapshot.summary())
                ancestry.append(AncestorSnapshot(snapshot.snapshotId(), snapshot.timestampMillis(), parent, rewrite))
                snapshot = java_table.snapshot(parent) if parent is not None else None
            referenced = {ref.snapshotId() for ref in java_table.refs().values()}
            thinned = thinned_snapshots(ancestry, older_than, every_commit_after, one_per, referenced)
            for snapshot_id in thinned:
                expiry.expireSnapshotId(snapshot_id)
        expired = expiry.apply()
        if expired.isEmpty():
            return 0, 0, set(), []
        for snapshot in expired:
            expiry.expireSnapshotId(snapshot.snapshotId())
        # Iceberg hands each file to delete to this collector instead of deleting it one by
        # one: counted here, then deleted in bulk (on S3, one request per batch of keys).
        collected = jvm.java.util.stream.Stream.builder()
        expiry.deleteWith(collected).commit()
        files = collected.build().toList()
        # Failures are logged, not raised, as Iceberg's own expiry does: the metadata commit
        # already stands, and a file left behind is an orphan for remove_orphan_files.
        jvm.org.apache.iceberg.CatalogUtil.deleteFiles(java_table.io(), files, "expired", True)
        manifest_lists = {snapshot.manifestListLocation() for snapshot in expired}
        return expired.size(), len(thinned), manifest_lists, str(jvm.java.lang.String.join("\n", files)).splitlines()

    snapshots_expired, snapshots_thinned, manifest_lists, deleted = _retry_while_catalog_busy(expire)
    metadata_files = [path for path in deleted if path.endswith(".avro")]  # the tables write Parquet data
    lists_deleted = sum(1 for path in metadata_files if path in manifest_lists)
    return ExpiryResult(
        table=spec.cold,
        snapshots_expired=snapshots_expired,
        snapshots_thinned=snapshots_thinned,
        snapshots_after=len(table.refresh().metadata.snapshots),
        data_files_deleted=len(deleted) - len(metadata_files),
        manifests_deleted=len(metadata_files) - lists_deleted,
        manifest_lists_deleted=lists_deleted,
        seconds=time.perf_counter() - started,
    )


def remove_orphan_files(
    spark: SparkSession, spec: MirroredTable, catalog_name: str, older_than: datetime, now: datetime, dry_run: bool
) -> OrphanResult:
    if now - older_than < MIN_ORPHAN_AGE:
        raise ValueError(
            f"orphan files must be older than {MIN_ORPHAN_AGE} to be removed (asked: older than {older_than:%Y-%m-%d %H:%M} UTC): "
            "a younger file may belong to a commit in progress"
        )
    started = time.perf_counter()
    rows = call_procedure(
        spark,
        render(
            "spark/remove_orphan_files",
            catalog=identifier(catalog_name),
            table=_table_name(spec),
            older_than=_literal_timestamp(older_than),
            dry_run="true" if dry_run else "false",
        ),
    )
    return OrphanResult(
        table=spec.cold,
        dry_run=dry_run,
        orphans=sorted(r["orphan_file_location"] for r in rows),
        seconds=time.perf_counter() - started,
    )
