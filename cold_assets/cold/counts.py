"""Cold rows per hour from Iceberg's metadata alone: a table partitioned by the hour of its
time column keeps each file's row count in its manifest, so counting an hour reads no data
file. Where the metadata cannot answer exactly (a file with delete files, one whose rows may
include some still in flight, a file of another partition spec), the hour is left to a read."""

from collections import defaultdict
from datetime import datetime

from pyiceberg.table import Table
from pyiceberg.transforms import HourTransform

from cold_assets.cold.bounds import bound_micros, micros
from cold_assets.cold.ranges import range_filter
from cold_assets.tables import MirroredTable

EPOCH_HOUR = 3600


def hour_partition_position(table: Table, spec: MirroredTable) -> int | None:
    """Where the hour of `spec`'s time column sits in the table's current partition tuple
    (None: the table is not partitioned by it)."""
    if spec.range_function != "toStartOfHour":
        return None
    source_id = table.schema().find_field(spec.time_column).field_id
    for position, partition_field in enumerate(table.spec().fields):
        if partition_field.source_id == source_id and isinstance(partition_field.transform, HourTransform):
            return position
    return None


def counts_by_hour(
    table: Table,
    spec: MirroredTable,
    buckets: set[int],
    start: datetime,
    end: datetime,
    settled: datetime | None = None,
    open_from: datetime | None = None,
) -> tuple[dict[int, int], set[int]]:
    """Rows per hour bucket (Unix seconds of its start) of [start, end), from the manifests:
    (the counts of the buckets known exactly, the buckets that need a read). With `settled`,
    rows of buckets before `open_from` ingested after it do not count (they are in flight,
    parity/checksums.py): such a bucket holding a file whose newest ingestion is later (or
    unknown) needs a read."""
    position = hour_partition_position(table, spec)
    if position is None or table.current_snapshot() is None:
        return {}, set(buckets) if position is None else set()
    spec_id = table.spec().spec_id
    ingested = table.schema().find_field("ingested_at") if settled is not None else None
    settled_micros = micros(settled) if settled else None
    open_from_bucket = int(open_from.timestamp()) if open_from is not None else None
    counts: dict[int, int] = defaultdict(int)
    unknown: set[int] = set()
    try:
        tasks = list(table.scan(row_filter=range_filter(spec.time_column, start, end)).plan_files())
    except ValueError:  # pyiceberg plans no equality deletes (another writer's): read every hour
        return {}, set(buckets)
    for task in tasks:
        data_file = task.file
        if data_file.spec_id != spec_id:
            # A file of an older spec: where its rows fall is not read from this spec's tuple.
            return {}, set(buckets)
        hour = data_file.partition[position]
        if hour is None:
            return {}, set(buckets)
        bucket = int(hour) * EPOCH_HOUR
        if bucket not in buckets:
            continue
        if task.delete_files:
            unknown.add(bucket)
            continue
        in_flight_counts = open_from_bucket is None or bucket < open_from_bucket
        if ingested is not None and settled_micros is not None and in_flight_counts:
            newest = bound_micros(data_file.upper_bounds, ingested)
            if newest is None or newest > settled_micros:
                unknown.add(bucket)
                continue
        counts[bucket] += data_file.record_count
    known = {bucket: counts.get(bucket, 0) for bucket in buckets - unknown}
    return known, unknown
