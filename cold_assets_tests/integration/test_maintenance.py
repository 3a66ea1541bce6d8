"""Nightly maintenance on real Spark (local[2], Iceberg 1.10's runtime, the JDBC catalog on the
same SQLite file as pyiceberg) over tables the offload wrote, run as Dagster jobs."""

import json
import os
import subprocess
import sys
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from dagster import DagsterEventType, build_init_resource_context

import cold_assets.offload.commit as offload_module
from cold_assets.cold import duckdb_reader
from cold_assets.cold.files import written_by_offload
from cold_assets.definitions import build_definitions
from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.checks import COMPACTION_PRESERVED_CONTENT, compaction_check
from cold_assets.defs.nightly import COMPACTION_JOB, EXPIRY_JOB
from cold_assets.maintenance.class_data import archive_path
from cold_assets.maintenance.jars import pinned_jars
from cold_assets.maintenance.operations import commits_manifests, compact, expire_snapshots, file_stats, rewrite_manifests
from cold_assets.maintenance.operations import live_data_files as maintenance_live_data_files
from cold_assets.maintenance.spark import JavaMissing, SparkResource, session_config
from cold_assets.offload.bookkeeping import Ancestry, ranges_changed_since
from cold_assets.offload.protocol import offload_partition
from cold_assets.parity.checksums import cold_checksums
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.tables import EVENT_TABLES, TABLES, table_by_cold_name
from cold_assets.tools.instance import embedded_instance
from cold_assets_tests.support.offload_helpers import (
    NO_OVERLAP,
    START,
    assert_tiers_equal,
    check_results,
    feed,
    insert_late_raw,
    run_offload,
)

RAW = table_by_cold_name("raw_trades")
SILVER = table_by_cold_name("silver_trades")
BRONZE = table_by_cold_name("bronze_trades")
GOLD_1M = table_by_cold_name("gold_ohlcv_1m")
DAY_KEYS = [partition_key_of(START + timedelta(hours=h)) for h in range(24)]
# The test day is in the past; reach it whatever the date the suite runs on.
ALL_CLOSED = {"lookback_days": 3650}


def run_job(settings, name: str, config: dict, raise_on_error: bool = True):
    job = build_definitions(settings).resolve_job_def(name)
    op = job.graph.node_names()[0]
    return job.execute_in_process(
        instance=embedded_instance(settings), run_config={"ops": {op: {"config": config}}}, raise_on_error=raise_on_error
    )


def observations(result, table) -> dict:
    for event in result.all_events:
        if event.event_type == DagsterEventType.ASSET_OBSERVATION:
            observation = event.event_specific_data.asset_observation
            if observation.asset_key.path[-1] == table.cold:
                return {k: v.value for k, v in observation.metadata.items()}
    raise AssertionError(f"no observation for {table.cold}")


def local_path(uri: str) -> str:
    """pyiceberg writes file:///x, Spark file:/x: compare plain paths."""
    return "/" + uri.removeprefix("file:").lstrip("/")


def data_files_on_disk(settings, table) -> set[str]:
    root = settings.home / "warehouse" / "cold" / table.cold / "data"
    return {str(p) for p in root.rglob("*.parquet")}


def live_data_files(catalog, table) -> set[str]:
    return {local_path(task.file.file_path) for task in catalog.load_table(table.cold_identifier).scan().plan_files()}


@pytest.mark.runs_for(72)
def test_24_hourly_offloads_compact_to_one_file_per_day_and_exchange_with_the_same_content(settings, warm, cold):
    feed(warm, hours=24, trades_per_hour=300)
    run_offload(settings, DAY_KEYS)
    # Late rows of one hour, appended: its binance partition of raw and bronze gets a second
    # file (no overlap re-read: the feed's rows were all ingested within its 5 minutes).
    late_hour = START + timedelta(hours=5)
    insert_late_raw(warm, late_hour, 40, first_trade_id=9_000_000)
    run_offload(settings, [partition_key_of(late_hour)], NO_OVERLAP)
    catalog = cold.catalog()
    day = (START, START + timedelta(days=1))
    silver = catalog.load_table(SILVER.cold_identifier)
    before = file_stats(silver, SILVER)
    assert before.max_files_per_partition == 24  # one file per hour and exchange (silver replaces an hour)
    raw = catalog.load_table(RAW.cold_identifier)
    raw_before = file_stats(raw, RAW)
    assert (raw_before.data_files, raw_before.max_files_per_partition) == (49, 2)
    bronze = catalog.load_table(BRONZE.cold_identifier)
    bronze_files_before = {f.file_path for f in maintenance_live_data_files(bronze)}
    assert len(bronze_files_before) == 49
    with warm.connect() as client:
        checksums_before = cold_checksums(client, silver, SILVER, *day)
        raw_checksums_before = cold_checksums(client, raw, RAW, *day)
        bronze_checksums_before = cold_checksums(client, bronze, BRONZE, *day)

    tables = ["silver_trades", "gold_ohlcv_1m", "raw_trades", "bronze_trades"]
    proven_at = silver.current_snapshot().snapshot_id
    result = run_job(settings, COMPACTION_JOB, {"tables": tables, **ALL_CLOSED})

    silver = silver.refresh()
    # The sensors' proofs of equality made before are void: a data rewrite is not trusted.
    assert ranges_changed_since(silver, SILVER, proven_at) is None
    after = file_stats(silver, SILVER)
    assert (after.partitions, after.max_files_per_partition, after.data_files) == (2, 1, 2)  # binance, kraken
    assert after.rows == before.rows
    # raw's hourly files are rewritten once, one for one (the late hour's two merged), and
    # re-encoded at raw's long-term zstd level.
    raw = raw.refresh()
    raw_files = maintenance_live_data_files(raw)
    assert file_stats(raw, RAW).data_files == 48
    assert not [f.file_path for f in raw_files if written_by_offload(f.file_path)]
    assert sum(f.file_size_in_bytes for f in raw_files) < raw_before.bytes
    # bronze has no long-term-only encoding: only the hour with two files is rewritten (both
    # exchanges: the filter is by time), the 23 others are what a rewrite would write, and
    # stay as the offload wrote them.
    bronze = bronze.refresh()
    bronze_files = {f.file_path for f in maintenance_live_data_files(bronze)}
    assert len(bronze_files) == 48
    assert len(bronze_files & bronze_files_before) == 46
    assert all(written_by_offload(p) for p in bronze_files & bronze_files_before)
    assert [written_by_offload(p) for p in bronze_files - bronze_files_before] == [False, False]
    with warm.connect() as client:
        assert cold_checksums(client, raw, RAW, *day) == raw_checksums_before
        assert cold_checksums(client, bronze, BRONZE, *day) == bronze_checksums_before
    gold = file_stats(catalog.load_table(GOLD_1M.cold_identifier), GOLD_1M)
    assert gold.max_files_per_partition == 1
    # The same rows, read back by pyiceberg and by ClickHouse's Iceberg reader.
    with warm.connect() as client:
        assert cold_checksums(client, silver, SILVER, *day) == checksums_before
    assert_tiers_equal(warm, cold, [hour_of(k) for k in DAY_KEYS[::6]], tables=[SILVER, GOLD_1M])
    # The UI sees per-table figures and the check's verdict on the rewrite.
    facts = observations(result, SILVER)
    assert (facts["data_files_before"], facts["data_files_after"]) == (48, 2)
    assert facts["bytes_after"] < facts["bytes_before"]
    checks = check_results(embedded_instance(settings), result.run_id)
    assert checks == {(name, COMPACTION_PRESERVED_CONTENT): True for name in tables}
    # Run on its own, the check proves the latest rewrite again.
    alone = compaction_check(SILVER, cold_asset_key(SILVER))(iceberg=cold, clickhouse=warm)
    assert alone.passed and alone.metadata["rows_after"].value == before.rows
    # Compacting again finds nothing left to rewrite: a partition is rewritten once.
    again = run_job(settings, COMPACTION_JOB, {"tables": ["silver_trades", "raw_trades", "bronze_trades"], **ALL_CLOSED})
    for spec in (SILVER, RAW, BRONZE):
        assert observations(again, spec)["files_rewritten"] == 0
    # Any engine reads the compacted tables: DuckDB, through its iceberg extension.
    for spec in (SILVER, RAW):
        assert_duckdb_reads_what_pyiceberg_reads(catalog.load_table(spec.cold_identifier), spec)


def assert_duckdb_reads_what_pyiceberg_reads(table, spec) -> None:
    """DuckDB (its PyPI iceberg extension, loaded from disk) returns the same rows and the same
    per-hour counts as pyiceberg from the table's current metadata file."""
    connection = duckdb_reader.connect()
    location = [table.metadata_location]
    ice = table.scan().to_arrow()
    duck = connection.execute("SELECT * FROM iceberg_scan(?)", location).arrow().read_all()
    order = [(name, "ascending") for name in ice.schema.names]
    assert duck.num_rows == ice.num_rows > 0
    assert duck.cast(ice.schema).sort_by(order).equals(ice.sort_by(order))
    time_column = spec.time_column
    duck_hours = dict(
        connection.execute(
            f"SELECT epoch_us(date_trunc('hour', {time_column}::TIMESTAMP)), count(*) FROM iceberg_scan(?) GROUP BY 1", location
        ).fetchall()
    )
    hours = pc.value_counts(pc.floor_temporal(ice[time_column], unit="hour").cast(pa.int64()))
    assert duck_hours == {item["values"].as_py(): item["counts"].as_py() for item in hours}


@pytest.mark.runs_for(38)
def test_expired_snapshots_go_with_their_files_and_the_offload_stays_exactly_once(settings, warm, cold):
    feed(warm, hours=4, trades_per_hour=300)
    run_offload(settings, DAY_KEYS[:3])
    run_job(settings, COMPACTION_JOB, {"tables": ["silver_trades"], **ALL_CLOSED})
    catalog = cold.catalog()
    compaction = catalog.load_table(SILVER.cold_identifier).current_snapshot()
    compacted_away = data_files_on_disk(settings, SILVER) - live_data_files(catalog, SILVER)
    assert compacted_away  # the hourly files the compaction replaced, still referenced by old snapshots
    # The horizon is the compaction's own commit, to the millisecond: every snapshot before
    # it goes (some in the same second), the compaction stays. The files it replaced are then
    # referenced only by expired snapshots and must go although the snapshot that dropped
    # them stays (Iceberg's incremental cleanup would keep them).
    horizon = datetime.fromtimestamp(compaction.timestamp_ms / 1000, UTC)
    time.sleep(0.01)
    run_offload(settings, DAY_KEYS[3:4])  # a commit after the horizon
    snapshots_before = {t.cold: len(catalog.load_table(t.cold_identifier).metadata.snapshots) for t in TABLES}

    result = run_job(settings, EXPIRY_JOB, {"older_than": horizon.isoformat()})

    for table in EVENT_TABLES:  # (no reject was ingested in the day's hours: that table has no snapshot)
        cold_table = catalog.load_table(table.cold_identifier)
        snapshots, current = cold_table.metadata.snapshots, cold_table.current_snapshot().snapshot_id
        # Everything before the horizon is gone but a current snapshot, which Iceberg always keeps
        # (the daily bars': the day's bar did not change with the hour committed after it).
        assert all(s.timestamp_ms >= compaction.timestamp_ms or s.snapshot_id == current for s in snapshots), table.cold
        # Every table loses snapshots, except one whose only commit is its current one (the
        # daily bars: the day's bar did not change after the first of its hours).
        assert len(snapshots) < snapshots_before[table.cold] or snapshots_before[table.cold] == 1, table.cold
    assert compaction.snapshot_id in {s.snapshot_id for s in catalog.load_table(SILVER.cold_identifier).metadata.snapshots}
    assert not (compacted_away & data_files_on_disk(settings, SILVER))  # deleted from disk
    assert live_data_files(catalog, SILVER) <= data_files_on_disk(settings, SILVER)  # the newer ones stay
    facts = observations(result, SILVER)
    assert facts["snapshots_expired"] == snapshots_before[SILVER.cold] - len(
        catalog.load_table(SILVER.cold_identifier).metadata.snapshots
    )
    assert facts["expired_data_files_deleted"] == len(compacted_away)
    assert facts["manifests_deleted"] > 0

    # Re-materializing an hour whose commit snapshots are gone writes nothing twice ...
    run_offload(settings, DAY_KEYS[:1])
    # ... even with Dagster's record gone too: the cold files' own statistics hold the line.
    with warm.connect() as client:
        bronze = catalog.load_table(BRONZE.cold_identifier)
        again = offload_partition(client, bronze, BRONZE, START, DAY_KEYS[0], "test-no-record", settle_lag=timedelta(0))
    assert again.mode == "unchanged" and again.rows_written == 0
    # ... and a new hour offloads normally.
    run_offload(settings, DAY_KEYS[3:4])
    assert_tiers_equal(warm, cold, [hour_of(k) for k in DAY_KEYS[:4]])


@pytest.mark.runs_for(35)
def test_thinning_cuts_the_ancestry_and_an_hour_whose_commit_went_is_offloaded_exactly_once(settings, warm, cold):
    """The nightly thins the week it keeps to every commit of the last day and one a day
    before (here one per ten years, before the newest commit: everything in between but the
    last). The current snapshot's ancestry then stops at the gap, and the hours committed
    behind it have no bookkeeping left: their offload starts from the cold files' statistics,
    and late rows of such an hour are taken once. The compaction's rewrite and its parent stay,
    and its proof runs again."""
    feed(warm, hours=4, trades_per_hour=300)
    for key in DAY_KEYS[:3]:
        run_offload(settings, [key])  # three commits a table, one per hour
    run_job(settings, COMPACTION_JOB, {"tables": ["silver_trades"], **ALL_CLOSED})
    run_offload(settings, DAY_KEYS[3:4])
    catalog = cold.catalog()
    bronze = catalog.load_table(BRONZE.cold_identifier)
    newest = bronze.current_snapshot()
    before = {t.cold: [s.snapshot_id for s in catalog.load_table(t.cold_identifier).snapshots()] for t in TABLES}
    behind = bronze.snapshot_by_id(newest.parent_snapshot_id)  # the commit of hour 2: the window's last
    rows_behind = bronze.scan(snapshot_id=behind.snapshot_id).to_arrow().num_rows

    every_commit_after = datetime.fromtimestamp(newest.timestamp_ms / 1000, UTC)
    result = run_job(settings, EXPIRY_JOB, {
        "older_than": "2000-01-01T00:00:00+00:00", "every_commit_after": every_commit_after.isoformat(),
        "then_one_per_minutes": 10 * 365 * 1440,
    })

    bronze = catalog.load_table(BRONZE.cold_identifier)
    assert [s.snapshot_id for s in bronze.snapshots()] == [behind.snapshot_id, newest.snapshot_id]
    assert observations(result, BRONZE)["snapshots_thinned"] == len(before[BRONZE.cold]) - 2
    assert bronze.scan(snapshot_id=behind.snapshot_id).to_arrow().num_rows == rows_behind  # time travel to it
    # The ancestry stops at the gap: hours 0 and 1 have no bookkeeping left.
    assert set(Ancestry(bronze, BRONZE).states) == {hour_of(k) for k in DAY_KEYS[2:4]}
    silver = catalog.load_table(SILVER.cold_identifier)
    rewrite = next(s for s in silver.snapshots() if s.summary and s.summary.operation.value == "replace")
    assert rewrite.parent_snapshot_id in {s.snapshot_id for s in silver.snapshots()}
    assert compaction_check(SILVER, cold_asset_key(SILVER))(iceberg=cold, clickhouse=warm).passed

    insert_late_raw(warm, START, count=40, first_trade_id=8_000_000_000)
    run_offload(settings, DAY_KEYS[:1])  # hour 0 again: its late rows, once
    run_offload(settings, DAY_KEYS[:2])  # and once more: nothing twice
    assert_tiers_equal(warm, cold, [hour_of(k) for k in DAY_KEYS[:4]])


def test_an_orphan_older_than_three_days_is_removed_and_a_fresh_one_kept(settings, warm, cold):
    feed(warm, hours=1, trades_per_hour=200)
    run_offload(settings, DAY_KEYS[:1])
    data_dir = settings.home / "warehouse" / "cold" / BRONZE.cold / "data"
    old, fresh = data_dir / "crashed-writer-old.parquet", data_dir / "crashed-writer-fresh.parquet"
    for path in (old, fresh):
        path.write_bytes(b"PAR1 left by a writer that died before its commit")
    four_days_ago = time.time() - 4 * 86400
    os.utime(old, (four_days_ago, four_days_ago))

    dry = run_job(settings, EXPIRY_JOB, {"tables": ["bronze_trades"], "orphans_dry_run": True})
    assert observations(dry, BRONZE)["orphans_found"] == 1 and old.exists()

    result = run_job(settings, EXPIRY_JOB, {"tables": ["bronze_trades"]})
    facts = observations(result, BRONZE)
    assert facts["orphans_removed"] == 1 and Path(local_path(facts["orphan_files"][0])).name == old.name
    assert not old.exists() and fresh.exists()
    assert_tiers_equal(warm, cold, [START], tables=[BRONZE])


def test_spark_commits_again_after_an_offload_committed_to_the_same_catalog(settings, warm, cold):
    """Iceberg's JDBC catalog, when it opens, leaves a metadata query of one pooled connection
    unfinished: on SQLite that connection then reads an old snapshot of the file and cannot
    write once pyiceberg has. Spark must not open the catalog that way (spark_catalog_conf)."""
    feed(warm, hours=3, trades_per_hour=60)
    run_offload(settings, DAY_KEYS[:1])
    run_offload(settings, DAY_KEYS[1:2])  # a second commit, for the first expiry to expire
    spark = SparkResource.from_settings(settings, cold)
    spark.setup_for_execution(build_init_resource_context())
    try:
        catalog = cold.catalog()

        def expire_all_but_current():
            return expire_snapshots(
                spark.spark_session, catalog.load_table(BRONZE.cold_identifier), BRONZE, spark.catalog_name, datetime.now(UTC)
            )

        assert expire_all_but_current().snapshots_expired > 0  # Spark opens the catalog and commits
        run_offload(settings, DAY_KEYS[2:3])  # pyiceberg commits to the same SQLite file
        assert expire_all_but_current().snapshots_expired > 0  # and Spark commits again
    finally:
        spark.teardown_after_execution(build_init_resource_context())
    assert_tiers_equal(warm, cold, [hour_of(k) for k in DAY_KEYS[:3]], tables=[BRONZE])


@pytest.mark.runs_for(42)
def test_the_nightly_manifest_rewrite_clusters_hours_so_that_planning_an_hour_reads_a_few_of_its_files(settings, warm, cold, monkeypatch):
    """The nightly rewrite_manifests makes ceil(bytes / commit.manifest.target-size-bytes)
    manifests, each a range of partitions. At Iceberg's default (8 MB) a table's whole history
    went into one, whose range covers every hour: a tick's planning and commit read all of its
    entries, more each day. The cold tables' target (ddl/iceberg) keeps a few days per
    manifest; scaled down here to a few hours, as the test has one day at test volume."""
    from pyiceberg.conversions import from_bytes
    from pyiceberg.expressions import And, GreaterThanOrEqual, LessThan
    from pyiceberg.manifest import ManifestFile
    from pyiceberg.types import IntegerType

    feed(warm, hours=24, trades_per_hour=30)
    run_offload(settings, DAY_KEYS)
    raw = cold.catalog().load_table(RAW.cold_identifier)
    assert raw.properties["commit.manifest.target-size-bytes"] == "65536"  # cold-assets init set it
    assert commits_manifests(raw) >= 1
    day_bytes = sum(m.manifest_length for m in raw.current_snapshot().manifests(raw.io))
    with raw.transaction() as tx:
        tx.set_properties({"commit.manifest.target-size-bytes": str(day_bytes // 6)})
    proven_at = raw.refresh().current_snapshot().snapshot_id
    spark = SparkResource.from_settings(settings, cold)
    spark.setup_for_execution(build_init_resource_context())
    try:
        rewrite_manifests(spark.spark_session, RAW, spark.catalog_name)
    finally:
        spark.teardown_after_execution(build_init_resource_context())
    raw = raw.refresh()
    assert ranges_changed_since(raw, RAW, proven_at) == set()  # the same files: the sensors' proofs stand
    manifests = raw.current_snapshot().manifests(raw.io)
    assert len(manifests) >= 4
    assert commits_manifests(raw) == 0  # the next night leaves them, unless commits came
    hours = sorted(
        (from_bytes(IntegerType(), m.partitions[0].lower_bound), from_bytes(IntegerType(), m.partitions[0].upper_bound)) for m in manifests
    )
    # Ranges of hours in order, sharing at most a boundary hour (its exchanges split between two).
    assert all(upper <= next_lower for (_, upper), (next_lower, _) in zip(hours, hours[1:], strict=False)), hours

    read: list[int] = []
    fetch = ManifestFile.fetch_manifest_entry

    def counted(self, io, discard_deleted=True):
        entries = fetch(self, io, discard_deleted)
        read.append(len(entries))
        return entries

    monkeypatch.setattr(ManifestFile, "fetch_manifest_entry", counted)
    hour = hour_of(DAY_KEYS[12])
    in_hour = And(GreaterThanOrEqual("exchange_ts", hour.isoformat()), LessThan("exchange_ts", (hour + timedelta(hours=1)).isoformat()))
    tasks = raw.scan(row_filter=in_hour).plan_files()
    assert len(tasks) == 2  # binance and kraken
    live = sum((m.added_files_count or 0) + (m.existing_files_count or 0) for m in manifests)
    assert len(read) <= 2 and sum(read) <= live / 3, (read, live)
    monkeypatch.undo()

    # The next day's commits merge their manifests among themselves, never into the clustered
    # ones: those stay as the rewrite left them (merged, one would span up to the new day).
    clustered = {m.manifest_path for m in manifests}
    with raw.transaction() as tx:  # about three of the day's manifests to one
        tx.set_properties({"commit.manifest.target-size-bytes": "16384"})
    next_day = [partition_key_of(START + timedelta(days=1, hours=h)) for h in range(8)]
    for i, key in enumerate(next_day):
        insert_late_raw(warm, hour_of(key), 20, 8_100_000 + 100 * i)
        run_offload(settings, [key])
    raw = cold.catalog().load_table(RAW.cold_identifier)
    now_listed = raw.current_snapshot().manifests(raw.io)
    assert clustered <= {m.manifest_path for m in now_listed}, clustered - {m.manifest_path for m in now_listed}
    assert 1 <= commits_manifests(raw) < len(next_day), [(m.manifest_length, m.added_files_count) for m in now_listed]


def test_offloads_committing_during_compaction_are_neither_lost_nor_duplicated(settings, warm, cold, monkeypatch):
    feed(warm, hours=6, trades_per_hour=300)
    keys = DAY_KEYS[:6]
    run_offload(settings, keys)
    late_hour = START + timedelta(hours=2)
    insert_late_raw(warm, late_hour, 7, first_trade_id=8_000_000_000)
    iceberg_resource = cold
    spark = SparkResource.from_settings(settings, iceberg_resource)
    spark.setup_for_execution(build_init_resource_context())
    try:
        catalog = cold.catalog()
        now = datetime.now(UTC)

        # 1. Compaction commits while an offload of the same day is about to commit: the
        #    offload's commit fails validation, starts over from reconciliation and lands.
        at_commit, release = threading.Event(), threading.Event()
        real_commit = offload_module.commit_transaction

        def paused_commit(*args, **kwargs):
            at_commit.set()
            release.wait(120)
            return real_commit(*args, **kwargs)

        monkeypatch.setattr(offload_module, "commit_transaction", paused_commit)
        outcome = {}

        def offload_late_hour():
            with warm.connect() as client:
                silver = catalog.load_table(SILVER.cold_identifier)
                outcome["result"] = offload_partition(client, silver, SILVER, late_hour, keys[2], "during-compaction")

        worker = threading.Thread(target=offload_late_hour)
        worker.start()
        assert at_commit.wait(120)
        monkeypatch.setattr(offload_module, "commit_transaction", real_commit)  # the retry commits at once
        silver = catalog.load_table(SILVER.cold_identifier)
        compaction = compact(spark.spark_session, silver, SILVER, spark.catalog_name, now, lookback_days=3650)
        assert compaction.rewrite_snapshot_ids  # it committed while the offload waited
        release.set()
        worker.join(120)
        assert outcome["result"].mode == "replace" and outcome["result"].rows_written > 0
        assert_tiers_equal(warm, cold, [hour_of(k) for k in keys], tables=[SILVER])

        # 2. The other way round: an offload commits while Spark rewrites; whichever
        #    commits second retries, and parity holds.
        insert_late_raw(warm, late_hour, 7, first_trade_id=8_000_000_100)
        feed(warm, hours=6, trades_per_hour=60)  # more rows in every hour: more to rewrite
        errors = []

        def compact_silver():
            try:
                compact(
                    spark.spark_session, catalog.load_table(SILVER.cold_identifier), SILVER, spark.catalog_name, now, lookback_days=3650
                )
            except Exception as error:  # noqa: BLE001 - reported below
                errors.append(error)

        compactor = threading.Thread(target=compact_silver)
        compactor.start()
        run_offload(settings, keys)
        compactor.join(300)
        assert not errors, errors
        assert_tiers_equal(warm, cold, [hour_of(k) for k in keys])
    finally:
        spark.teardown_after_execution(build_init_resource_context())


def test_without_java_17_maintenance_says_what_to_install(settings, cold, monkeypatch, tmp_path):
    fake_home = tmp_path / "jdk"  # a JAVA_HOME whose java is missing: the message names it
    monkeypatch.setenv("JAVA_HOME", str(fake_home))
    spark = SparkResource.from_settings(settings, cold)
    with pytest.raises(JavaMissing, match=r"needs Java 17 .*openjdk-17-jre-headless"):
        spark.setup_for_execution(build_init_resource_context())


MAP_ARCHIVE_OR_FAIL = """
import json, sys
from pyspark.sql import SparkSession
builder = SparkSession.builder
for key, value in json.loads(sys.argv[1]).items():
    builder = builder.config(key, value)
session = builder.getOrCreate()
print(session._jvm.System.getProperty("java.vm.info"))
session.stop()
"""


def test_the_maintenance_jvm_maps_the_class_data_archive_built_with_the_jars(settings, tmp_path):
    archive = archive_path(settings.spark_jars_dir, pinned_jars(settings.spark_s3))
    assert archive is not None and archive.exists(), f"`cold-assets jars` did not build {archive}"
    conf = session_config(settings)
    assert f"-XX:SharedArchiveFile={archive}" in conf["spark.driver.extraJavaOptions"]
    # -Xshare:on: the JVM refuses to start unless it can map the archive for this command line
    # (same JVM, same Spark class path, same jars).
    conf["spark.driver.extraJavaOptions"] += " -Xshare:on"
    child = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", MAP_ARCHIVE_OR_FAIL, json.dumps(conf)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 0, child.stderr[-3000:]
    assert "sharing" in child.stdout
    # Jars without an archive of their own: the JVM loads its classes as usual.
    assert "SharedArchiveFile" not in session_config(replace(settings, spark_jars_dir=tmp_path))["spark.driver.extraJavaOptions"]


def test_cold_counts_walk_the_manifests_spark_rewrote_and_leave_an_hour_with_a_delete_file_to_a_read(settings, warm, cold, monkeypatch):
    """The sensors count cold's hours from the manifests (cold/counts.py), walking them without
    pyiceberg's planning where they can: over the manifests the nightly's rewrite_manifests
    wrote (Java's writer) as over pyiceberg's, with the counts the planning gives. A delete
    file (here Spark's merge-on-read DELETE, as another engine writing to the table leaves)
    changes an hour's rows without changing its data files' record counts: that hour is left
    to a read of the files, the others are still counted from the manifests."""
    from pyiceberg.table import Table

    from cold_assets.cold.counts import counts_by_hour
    from cold_assets.cold.ranges import range_filter

    feed(warm, hours=3, trades_per_hour=30)
    run_offload(settings, DAY_KEYS[:3])
    start, end = hour_of(DAY_KEYS[0]), hour_of(DAY_KEYS[2]) + timedelta(hours=1)
    buckets = {int(hour_of(k).timestamp()) for k in DAY_KEYS[:3]}
    deleted_hour = hour_of(DAY_KEYS[1])

    def planned(table: Table) -> dict[int, int]:
        found = dict.fromkeys(buckets, 0)
        for task in table.scan(row_filter=range_filter(RAW.time_column, start, end)).plan_files():
            found[int(task.file.partition[0]) * 3600] += task.file.record_count
        return found

    raw = cold.catalog().load_table(RAW.cold_identifier)
    written = sum(m.manifest_length for m in raw.current_snapshot().manifests(raw.io))
    with raw.transaction() as tx:  # a manifest an hour or so, as the nightly's are a few days each
        tx.set_properties({"commit.manifest.target-size-bytes": str(written // 3)})
    spark = SparkResource.from_settings(settings, cold)
    spark.setup_for_execution(build_init_resource_context())
    try:
        rewrite_manifests(spark.spark_session, RAW, spark.catalog_name)
        raw = raw.refresh()
        assert raw.current_snapshot().summary.operation.value == "replace"  # the manifests are Java's now
        assert len(raw.current_snapshot().manifests(raw.io)) >= 2
        expected = planned(raw)
        assert all(rows > 0 for rows in expected.values()), expected
        with monkeypatch.context() as patched:
            patched.setattr(Table, "scan", lambda *a, **k: pytest.fail("the walk answers these hours without planning"))
            assert counts_by_hour(raw, RAW, buckets, start, end) == (expected, set())

        name = f"{spark.catalog_name}.{RAW.cold_identifier[0]}.{RAW.cold_identifier[1]}"
        spark.spark_session.sql(f"ALTER TABLE {name} SET TBLPROPERTIES ('write.delete.mode' = 'merge-on-read')")
        first = spark.spark_session.sql(
            f"SELECT min(exchange_ts) FROM {name} WHERE exchange_ts >= TIMESTAMP '{deleted_hour:%Y-%m-%d %H:%M:%S}+00:00' "
            f"AND exchange_ts < TIMESTAMP '{deleted_hour + timedelta(hours=1):%Y-%m-%d %H:%M:%S}+00:00'"
        ).collect()[0][0]
        spark.spark_session.sql(f"DELETE FROM {name} WHERE exchange_ts = TIMESTAMP '{first.isoformat()}'")
    finally:
        spark.teardown_after_execution(build_init_resource_context())
    raw = cold.catalog().load_table(RAW.cold_identifier)
    assert raw.current_snapshot().summary["total-position-deletes"] != "0", raw.current_snapshot().summary
    known, unknown = counts_by_hour(raw, RAW, buckets, start, end)
    assert unknown == {int(deleted_hour.timestamp())}, (known, unknown)
    assert known == {bucket: rows for bucket, rows in expected.items() if bucket not in unknown}
