"""Cold rows per hour from the manifests (cold/counts.py), on a real hour-partitioned Iceberg
table of pyiceberg's SQL catalog: the walk of the manifests answers as pyiceberg's scan
planning does, and leaves to the planning what it cannot answer as it would."""

from datetime import UTC, datetime, timedelta

import pyarrow as pa
import pytest
from pyiceberg.manifest import ManifestFile
from pyiceberg.partitioning import PartitionField, PartitionSpec
from pyiceberg.schema import Schema
from pyiceberg.table import Table
from pyiceberg.transforms import HourTransform
from pyiceberg.types import NestedField, TimestamptzType

from cold_assets.cold import counts
from cold_assets.cold.ranges import range_filter
from cold_assets.tables import table_by_cold_name

RAW = table_by_cold_name("raw_trades")  # exchange_ts, hourly ranges
START = datetime(2026, 11, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)


def _table(tmp_path) -> Table:
    """30 hours of rows in 10 commits of three hours each (a manifest per commit), then hour 7
    replaced and hour 12 deleted: hour h holds h + 1 rows, hour 12 none."""
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("t", uri=f"sqlite:///{tmp_path / 'c.db'}", warehouse=tmp_path.as_uri())
    catalog.create_namespace("cold")
    schema = Schema(
        NestedField(1, "exchange_ts", TimestamptzType(), required=True),
        NestedField(2, "ingested_at", TimestamptzType(), required=True),
    )
    table = catalog.create_table(
        ("cold", "raw_trades"), schema=schema, partition_spec=PartitionSpec(PartitionField(1, 1000, HourTransform(), "hour"))
    )

    def rows(hours: range) -> pa.Table:
        times = [START + h * HOUR + timedelta(seconds=i) for h in hours for i in range(h + 1)]
        column = pa.array(times, pa.timestamp("us", "UTC"))
        return pa.table({"exchange_ts": column, "ingested_at": column}, schema=schema.as_arrow())

    for first in range(0, 30, 3):
        table.append(rows(range(first, first + 3)))
    table.overwrite(rows(range(7, 8)), overwrite_filter=range_filter("exchange_ts", START + 7 * HOUR, START + 8 * HOUR))
    table.delete(range_filter("exchange_ts", START + 12 * HOUR, START + 13 * HOUR))  # the current snapshot lists the deleted file
    return table


def _planned(table: Table, buckets: set[int], start: datetime, end: datetime) -> dict[int, int]:
    """The counts pyiceberg's own planning gives."""
    found = dict.fromkeys(buckets, 0)
    for task in table.scan(row_filter=range_filter(RAW.time_column, start, end)).plan_files():
        bucket = int(task.file.partition[0]) * 3600
        if bucket in found:
            found[bucket] += task.file.record_count
    return found


def test_the_manifest_walk_counts_what_the_planning_counts_and_reads_only_the_manifests_that_can_hold_the_hours(tmp_path, monkeypatch):
    table = _table(tmp_path)
    start, end = START + 5 * HOUR, START + 17 * HOUR
    buckets = {int((START + h * HOUR).timestamp()) for h in range(5, 17)}
    expected = _planned(table, buckets, start, end)
    at = {h: expected[int((START + h * HOUR).timestamp())] for h in range(5, 17)}
    assert (at[7], at[12], sum(at.values())) == (8, 0, sum(range(6, 18)) - 13)  # (a deleted file's entry is no row)

    read: list[str] = []
    fetch = ManifestFile.fetch_manifest_entry

    def counted(manifest, io, discard_deleted=True):
        read.append(manifest.manifest_path)
        return fetch(manifest, io, discard_deleted=discard_deleted)

    monkeypatch.setattr(ManifestFile, "fetch_manifest_entry", counted)
    monkeypatch.setattr(Table, "scan", lambda *a, **k: pytest.fail("the walk answers hours on the hour without planning"))
    known, unknown = counts.counts_by_hour(table, RAW, buckets, start, end)
    assert (known, unknown) == (expected, set())
    manifests = table.current_snapshot().manifests(table.io)
    assert 5 <= len(read) < len(manifests), (len(read), len(manifests))  # hours 5-16 are in 4-5 commits' manifests


def test_bounds_off_the_hour_are_left_to_the_planning(tmp_path, monkeypatch):
    table = _table(tmp_path)
    start, end = START + 5 * HOUR + timedelta(minutes=30), START + 9 * HOUR
    buckets = {int((START + h * HOUR).timestamp()) for h in range(6, 9)}
    planned = []
    scan = Table.scan

    def spied(self, *args, **kwargs):
        planned.append(kwargs.get("row_filter"))
        return scan(self, *args, **kwargs)

    monkeypatch.setattr(Table, "scan", spied)
    known, unknown = counts.counts_by_hour(table, RAW, buckets, start, end)
    assert planned and unknown == set()
    assert known == {int((START + h * HOUR).timestamp()): h + 1 for h in range(6, 9)}
