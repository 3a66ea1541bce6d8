"""Cold rows per hour from Iceberg's metadata alone: a table partitioned by the hour of its
time column keeps each file's row count in its manifest, so counting an hour reads no data
file. Where the metadata cannot answer exactly (a file with delete files, one whose rows may
include some still in flight, a file of another partition spec), the hour is left to a read."""

from collections import defaultdict
from datetime import datetime
from typing import cast

from pyiceberg.conversions import from_bytes
from pyiceberg.manifest import DataFile, ManifestContent, ManifestFile
from pyiceberg.table import Table
from pyiceberg.transforms import HourTransform
from pyiceberg.types import IntegerType

from cold_assets.cold.bounds import bound_micros, micros
from cold_assets.cold.manifests import live_data_files
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
    files = _files_of_hours(table, position, start, end)
    if files is None:
        try:
            scan = table.scan(row_filter=range_filter(spec.time_column, start, end))
            files = [(task.file, bool(task.delete_files)) for task in scan.plan_files()]
        except ValueError:  # pyiceberg plans no equality deletes (another writer's): read every hour
            return {}, set(buckets)
    for data_file, has_deletes in files:
        if data_file.spec_id != spec_id:
            # A file of an older spec: where its rows fall is not read from this spec's tuple.
            return {}, set(buckets)
        hour = data_file.partition[position]
        if hour is None:
            return {}, set(buckets)
        bucket = int(hour) * EPOCH_HOUR
        if bucket not in buckets:
            continue
        if has_deletes:
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


def _files_of_hours(table: Table, position: int, start: datetime, end: datetime) -> list[tuple[DataFile, bool]] | None:
    """The live data files of the whole hours [start, end), each with False (no delete file
    applies): the manifests whose partition range can hold those hours, their entries by the
    hour in their partition tuple. What pyiceberg's scan planning finds there, without its
    per-file residual and metrics evaluation, most of its cost (the sensors count a week of
    hourly files every tick). None where this walk cannot answer as the planning does: bounds
    not on the hour, a delete manifest (another writer's), a manifest of another partition
    spec."""
    if start.timestamp() % EPOCH_HOUR or end.timestamp() % EPOCH_HOUR:
        return None
    first, after = int(start.timestamp()) // EPOCH_HOUR, int(end.timestamp()) // EPOCH_HOUR
    snapshot = table.current_snapshot()
    if snapshot is None:
        return []
    spec_id = table.spec().spec_id
    manifests = snapshot.manifests(table.io)
    if any(m.content is not ManifestContent.DATA or m.partition_spec_id != spec_id for m in manifests):
        return None
    wanted = [m for m in manifests if _may_hold_hours(m, position, first, after)]
    return [
        (data_file, False)
        for data_file in live_data_files(table, wanted)
        if (hour := data_file.partition[position]) is not None and first <= int(hour) < after  # (a null hour is none of them)
    ]


def _may_hold_hours(manifest: ManifestFile, position: int, first: int, after: int) -> bool:
    """Whether the manifest's partition summary of the hour field (hours since the epoch)
    reaches [first, after); one without bounds (all nulls, or none kept) may."""
    summary = manifest.partitions[position] if manifest.partitions and position < len(manifest.partitions) else None
    if summary is None or summary.lower_bound is None or summary.upper_bound is None:
        return True
    lowest, highest = from_bytes(IntegerType(), summary.lower_bound), from_bytes(IntegerType(), summary.upper_bound)
    return cast(int, highest) >= first and cast(int, lowest) < after
