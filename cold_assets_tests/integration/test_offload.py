"""The offload, end to end on real parts: chDB, Iceberg files on disk, a Dagster instance."""

import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from pyiceberg.table.snapshots import Operation

from cold_assets.cold.ranges import range_filter
from cold_assets.offload.bookkeeping import PARTITIONS
from cold_assets.offload.protocol import offload_partition
from cold_assets.offload.schema import IncompatibleWarmSchema
from cold_assets.partitions import hour_of
from cold_assets.tables import EVENT_TABLES, TABLES, table_by_cold_name
from cold_assets_tests.support.offload_helpers import (
    KEYS,
    RAW_COLUMNS,
    START,
    assert_tiers_equal,
    cold_hour,
    feed,
    insert_late_raw,
    latest_metadata,
    run_offload,
    settle,
)

HOURS = [hour_of(k) for k in KEYS]


def test_offload_then_again_cold_equals_warm_and_the_second_run_writes_nothing(settings, warm, cold):
    feed(warm, duplicate_share=0.01, malformed_share=0.002)
    _, instance = run_offload(settings, KEYS)
    assert_tiers_equal(warm, cold, HOURS)
    catalog = cold.catalog()
    snapshots = {t.cold: len(catalog.load_table(t.cold_identifier).metadata.snapshots) for t in TABLES}
    _, instance = run_offload(settings, KEYS)
    assert {t.cold: len(catalog.load_table(t.cold_identifier).metadata.snapshots) for t in TABLES} == snapshots
    assert_tiers_equal(warm, cold, HOURS)
    # A ranged run records one materialization per hour, each with that hour's own typed facts
    # (and its JSON, that hour only: the ranged run's events do not grow with the range).
    for table in EVENT_TABLES:  # (the rejects' hours are ingestion hours: the feed's are today's)
        for key in KEYS:
            meta = latest_metadata(instance, table, key)
            assert set(meta["offload"]) == {key} and meta["mode"] == "unchanged"
            assert meta["cold_rows"] == meta["warm_rows"] == meta["dagster/row_count"] > 0
    # ...and not one value shared by the range: the hours' counts differ (seeded feed).
    bronze = table_by_cold_name("bronze_trades")
    assert len({latest_metadata(instance, bronze, k)["cold_rows"] for k in KEYS}) == len(KEYS)


def test_single_partition_run_records_plottable_metadata(settings, warm, cold):
    feed(warm, hours=1)
    _, instance = run_offload(settings, KEYS[:1])
    meta = latest_metadata(instance, table_by_cold_name("bronze_trades"), KEYS[0])
    assert meta["mode"] == "append"
    assert meta["rows_written"] == meta["cold_rows"] == meta["warm_rows"] == meta["dagster/row_count"] > 0
    assert meta["rows_per_s"] > 0 and meta["watermark"] > START.timestamp()
    assert meta["offload"][KEYS[0]]["snapshot_id"] == meta["snapshot_id"]
    # The bytes it wrote are the data files its commit added (one hour, one commit).
    snapshot = cold.catalog().load_table(table_by_cold_name("bronze_trades").cold_identifier).current_snapshot()
    assert meta["bytes_written"] == int(snapshot.summary["added-files-size"]) > 0


def test_late_rows_into_a_closed_hour_are_offloaded_exactly_once(settings, warm, cold):
    feed(warm)
    run_offload(settings, KEYS)
    late_hour = HOURS[0]
    insert_late_raw(warm, late_hour, 5, first_trade_id=9_000_000_000)
    run_offload(settings, KEYS[:1])
    run_offload(settings, KEYS[:1])  # and again: nothing twice
    assert_tiers_equal(warm, cold, HOURS)
    bronze = cold_hour(cold.catalog(), table_by_cold_name("bronze_trades"), late_hour)
    assert sum(1 for t in bronze["trade_id"].to_pylist() if t >= 9_000_000_000) == 5


def test_every_commit_is_one_snapshot_carrying_its_bookkeeping_even_when_the_overlap_splits_a_file(settings, warm, cold):
    """The append layers' overlap re-read matches part of the file the run before wrote (rows
    ingested long before it, and late ones ingested just before its watermark): that file is
    written again without the re-read rows, in the commit's one snapshot. No snapshot of the
    table is left holding an hour deleted and not yet written back."""
    feed(warm, hours=1)
    settle(warm, minutes=10)  # the feed's rows are older than the overlap
    insert_late_raw(warm, HOURS[0], 5, first_trade_id=9_000_000_000)  # these are not
    run_offload(settings, KEYS[:1])
    catalog = cold.catalog()
    before = {t.cold: {s.snapshot_id for s in catalog.load_table(t.cold_identifier).snapshots()} for t in TABLES}
    insert_late_raw(warm, HOURS[0], 5, first_trade_id=9_000_000_100)
    run_offload(settings, KEYS[:1])
    for spec in TABLES:
        table = catalog.load_table(spec.cold_identifier)
        new = [s for s in table.snapshots() if s.snapshot_id not in before[spec.cold]]
        # One commit per table whose hour changed (the rejects' did not), each one snapshot.
        expected = 0 if spec.cold == "trades_rejects" else 1
        assert len(new) == expected, f"{spec.cold}: {[s.summary.operation for s in new if s.summary]}"
        assert all(PARTITIONS in s.summary.additional_properties for s in new), spec.cold
    for spec in (table_by_cold_name("raw_trades"), table_by_cold_name("bronze_trades")):
        summary = catalog.load_table(spec.cold_identifier).current_snapshot().summary
        # The first run's file was split: its old rows kept in a new file, its late rows re-read.
        assert summary.operation == Operation.OVERWRITE and int(summary["deleted-data-files"]) >= 1, (spec.cold, summary)
        late = sorted(int(t) for t in cold_hour(catalog, spec, HOURS[0])["trade_id"].to_pylist() if int(t) >= 9_000_000_000)
        assert late == [9_000_000_000 + i for i in (*range(5), *range(100, 105))], (spec.cold, late)
    assert_tiers_equal(warm, cold, HOURS[:1])
    # A third commit: the manifest of what the second deleted is not carried into it.
    insert_late_raw(warm, HOURS[0], 5, first_trade_id=9_000_000_200)
    run_offload(settings, KEYS[:1])
    for spec in TABLES:
        table = catalog.load_table(spec.cold_identifier)
        current = table.current_snapshot()
        if current is None:  # the rejects: none in this feed
            continue
        carried = [
            m.manifest_path for m in current.manifests(table.io)
            if not (m.has_added_files() or m.has_existing_files()) and m.added_snapshot_id != current.snapshot_id
        ]
        assert carried == [], spec.cold
    assert_tiers_equal(warm, cold, HOURS[:1])


def _raw_hour_with_a_file_to_split(settings, warm, cold):
    """An hour of raw in cold whose file the next append's overlap matches in part, and late
    trades in warm for that append to bring."""
    feed(warm, hours=1)
    settle(warm, minutes=10)
    insert_late_raw(warm, HOURS[0], 5, first_trade_id=9_000_000_000)
    run_offload(settings, KEYS[:1])
    insert_late_raw(warm, HOURS[0], 5, first_trade_id=9_000_000_100)
    raw = table_by_cold_name("raw_trades")
    table = cold.catalog().load_table(raw.cold_identifier)
    return raw, table, _parquet_files(table)


def _parquet_files(table) -> set[str]:
    from pathlib import Path
    from urllib.parse import urlparse

    return {str(p) for p in Path(urlparse(table.location()).path).rglob("*.parquet")}


def test_a_commit_that_fails_before_the_catalog_call_leaves_no_file_behind(settings, warm, cold, monkeypatch):
    """The append's new files and the rewrite of the file it splits are written before the
    catalog is called: a failure in between (here, writing the split file) deletes them all."""
    from cold_assets.offload import commit

    raw, table, files = _raw_hour_with_a_file_to_split(settings, warm, cold)

    def unwritable(*args):
        raise OSError("the split file cannot be written")

    monkeypatch.setattr(commit, "DataFileFormat", unwritable)  # the commit's rewrite only, not the stream's
    with warm.connect() as client, pytest.raises(OSError, match="cannot be written"):
        offload_partition(client, table, raw, HOURS[0], KEYS[0], "t", settle_lag=timedelta(0))
    after = cold.catalog().load_table(raw.cold_identifier)
    assert after.current_snapshot().snapshot_id == table.current_snapshot().snapshot_id
    assert _parquet_files(after) == files


def test_a_file_matched_in_part_is_planned_and_read_once_for_the_decision_and_the_commit(settings, warm, cold, monkeypatch):
    """The append's overlap matches the hour's file in part: the rows it replaces are counted
    (the decision) and the file written again without them (the commit) from one plan and one
    read of it, on the snapshot the commit asserts."""
    from pyiceberg.io.pyarrow import ArrowScan
    from pyiceberg.table import DataScan

    raw, table, files = _raw_hour_with_a_file_to_split(settings, warm, cold)
    reads, plans = [], []
    to_table, plan_files = ArrowScan.to_table, DataScan.plan_files

    def counted_read(self, tasks):
        tasks = list(tasks)
        reads.extend(t.file.file_path for t in tasks)
        return to_table(self, tasks)

    def counted_plan(self):
        plans.append(str(self.row_filter))
        return plan_files(self)

    snapshots_before = len(table.snapshots())
    monkeypatch.setattr(ArrowScan, "to_table", counted_read)
    monkeypatch.setattr(DataScan, "plan_files", counted_plan)
    with warm.connect() as client:
        result = offload_partition(client, table, raw, HOURS[0], KEYS[0], "t", settle_lag=timedelta(0))
    assert result.rows_written > 0
    assert len(reads) == len(set(reads)) == 1, reads  # the one file of the hour, matched in part
    assert len(plans) == 2, plans  # the run's cold files, then the range's delete filter
    monkeypatch.undo()
    after = cold.catalog().load_table(raw.cold_identifier)
    assert len(after.snapshots()) == snapshots_before + 1
    assert after.metadata_location == table.metadata_location  # the table it planned from, as committed
    assert_tiers_equal(warm, cold, HOURS[:1], tables=[raw])


def test_ranges_whose_delete_filters_overlap_are_never_committed(settings, warm, cold):
    """Two ranges of one commit cannot own the same cold rows: a commit whose matches overlap
    would remove fewer rows than its decisions counted, and is refused before anything is
    written; so is a commit on another snapshot than its ranges were matched on."""
    from cold_assets.offload import commit

    raw, table, files = _raw_hour_with_a_file_to_split(settings, warm, cold)
    span = range_filter(raw.time_column, HOURS[0], HOURS[0] + timedelta(hours=1))
    matcher = commit.ColdMatcher(table, span)
    hour = matcher.match(span)
    assert hour.rows > 0
    with pytest.raises(commit.CommitWouldRemoveOtherRows, match="raw_trades.*overlap"):
        commit.commit_transaction(matcher, [], [hour, hour], {}, split_column=raw.split_column)
    after = cold.catalog().load_table(raw.cold_identifier)
    assert after.current_snapshot().snapshot_id == table.current_snapshot().snapshot_id
    assert _parquet_files(after) == files
    # Nor is a commit made on another snapshot than its ranges were matched on.
    with warm.connect() as client:
        offload_partition(client, after, raw, HOURS[0], KEYS[0], "other", settle_lag=timedelta(0))
    matcher.table.refresh()
    with pytest.raises(RuntimeError, match="moved from snapshot"):
        commit.commit_transaction(matcher, [], [hour], {}, split_column=raw.split_column)


def test_duplicate_deliveries_stay_in_raw_and_never_reach_silver(settings, warm, cold):
    feed(warm, duplicate_share=0.02)
    run_offload(settings, KEYS)
    catalog = cold.catalog()
    for hour in HOURS:
        raw = cold_hour(catalog, table_by_cold_name("raw_trades"), hour)
        keys = list(zip(raw["exchange"].to_pylist(), raw["symbol"].to_pylist(), raw["trade_id"].to_pylist(), strict=True))
        silver = cold_hour(catalog, table_by_cold_name("silver_trades"), hour)
        skeys = list(
            zip(silver["exchange"].to_pylist(), silver["exchange_symbol"].to_pylist(), silver["trade_id"].to_pylist(), strict=True)
        )
        assert len(keys) - len(set(keys)) > 0
        assert len(skeys) == len(set(skeys))
    assert_tiers_equal(warm, cold, HOURS, tables=[table_by_cold_name("raw_trades")])


def test_a_gold_bar_that_changes_is_replaced_never_duplicated(settings, warm, cold):
    feed(warm, hours=1)
    run_offload(settings, KEYS[:1])
    gold = table_by_cold_name("gold_ohlcv_1m")
    before = cold_hour(cold.catalog(), gold, HOURS[0])
    minute = before["window_start"][0].as_py()
    exchange, symbol = before["exchange"][0].as_py(), before["symbol"][0].as_py()
    native = {"binance": symbol.replace("-", ""), "kraken": symbol.replace("BTC", "XBT").replace("-", "/")}[exchange]
    more = [
        [exchange, native, str(8_000_000_000 + i), "1.00000000", "2.00000000", "b" if exchange == "kraken" else "false",
         minute + timedelta(seconds=30), minute + timedelta(seconds=31), "{}"]
        for i in range(3)
    ]
    with warm.connect() as client:
        client.insert("trades_raw", more, column_names=RAW_COLUMNS)
    run_offload(settings, KEYS[:1])
    after = cold_hour(cold.catalog(), gold, HOURS[0])
    assert after.num_rows == before.num_rows
    bar = [r for r in after.to_pylist() if r["window_start"] == minute and r["exchange"] == exchange and r["symbol"] == symbol]
    old = [r for r in before.to_pylist() if r["window_start"] == minute and r["exchange"] == exchange and r["symbol"] == symbol]
    assert len(bar) == 1 and bar[0]["trade_count"] == old[0]["trade_count"] + 3
    assert str(bar[0]["low"]) == "1.00000000"
    assert_tiers_equal(warm, cold, HOURS[:1])


KILL_SCRIPT = textwrap.dedent(
    """
    import os, signal, sys
    import cold_assets.offload.commit as offload
    import cold_assets.cold.files as cold_files
    from cold_assets_tests.support.offload_helpers import run_offload
    from cold_assets.settings import Settings

    where = sys.argv[1]
    if where == "after_commit":
        commit = offload.commit_transaction
        def commit_then_die(*args, **kwargs):
            commit(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)  # before Dagster records the materialization
        offload.commit_transaction = commit_then_die
    else:
        close = cold_files.DataFileWriter.close
        def write_then_die(self):
            close(self)  # the data files are complete on disk, the commit has not happened
            os.kill(os.getpid(), signal.SIGKILL)
        cold_files.DataFileWriter.close = write_then_die
    run_offload(Settings.from_env(), [sys.argv[2]])
    """
)


def _run_and_kill(where: str, partition_key: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", KILL_SCRIPT, where, partition_key], env=os.environ.copy(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def test_killed_after_commit_before_dagster_recorded_it_the_rerun_adds_nothing(settings, warm, cold):
    feed(warm, hours=1)
    _run_and_kill("after_commit", KEYS[0])
    catalog = cold.catalog()
    # The first table's commit landed, then the process died before Dagster heard of it.
    landed = [t for t in TABLES if catalog.load_table(t.cold_identifier).current_snapshot() is not None]
    assert len(landed) == 1
    (first,) = landed
    assert cold_hour(catalog, first, HOURS[0]).num_rows > 0
    result, instance = run_offload(settings, KEYS[:1])
    meta = latest_metadata(instance, first, KEYS[0])
    assert meta["mode"] == "unchanged" and meta["rows_written"] == 0
    assert meta["offload"][KEYS[0]]["reconciled_from"] == "snapshot"
    assert_tiers_equal(warm, cold, HOURS[:1])


def test_killed_mid_write_shows_no_partial_data_and_the_rerun_completes(settings, warm, cold):
    feed(warm, hours=1)
    _run_and_kill("mid_write", KEYS[0])
    catalog = cold.catalog()
    assert all(catalog.load_table(t.cold_identifier).current_snapshot() is None for t in TABLES)  # nothing visible
    written = [p for p in (settings.home / "warehouse").rglob("*.parquet")]
    assert written  # the files of the killed write exist on disk, unreferenced (orphans)
    run_offload(settings, KEYS[:1])
    assert_tiers_equal(warm, cold, HOURS[:1])


def test_two_offloads_of_the_same_partition_at_the_same_time_leave_no_duplicate(settings, warm, cold, monkeypatch):
    """The interleaving of two concurrent runs, made deterministic: the second offload runs
    and commits while the first has written its files and not yet committed."""
    import cold_assets.offload.commit as offload

    feed(warm, hours=1)
    bronze = table_by_cold_name("bronze_trades")
    catalog = cold.catalog()
    commit = offload.commit_transaction
    raced = []

    def commit_after_a_racer(table, *args, **kwargs):
        if not raced:
            raced.append(True)
            racer_table = catalog.load_table(bronze.cold_identifier)
            racer = offload_partition(client, racer_table, bronze, HOURS[0], KEYS[0], "racer", settle_lag=timedelta(0))
            assert racer.rows_written > 0
        return commit(table, *args, **kwargs)

    monkeypatch.setattr(offload, "commit_transaction", commit_after_a_racer)
    with warm.connect() as client:
        first = offload_partition(
            client, catalog.load_table(bronze.cold_identifier), bronze, HOURS[0], KEYS[0], "first", settle_lag=timedelta(0)
        )
    assert raced and first.rows_written == 0 and first.mode == "unchanged"
    assert_tiers_equal(warm, cold, HOURS[:1], tables=[bronze])


def test_a_new_nullable_warm_column_reaches_cold_and_an_incompatible_change_writes_nothing(settings, warm, cold):
    feed(warm, hours=1)
    with warm.connect() as client:
        client.command("ALTER TABLE trades_raw ADD COLUMN venue_region Nullable(String)")
        client.command("ALTER TABLE bronze_trades MODIFY COLUMN is_buyer_maker UInt8")
    raw, bronze = table_by_cold_name("raw_trades"), table_by_cold_name("bronze_trades")
    catalog = cold.catalog()
    with warm.connect() as client:
        offload_partition(client, catalog.load_table(raw.cold_identifier), raw, HOURS[0], KEYS[0], "t", settle_lag=timedelta(0))
        field = catalog.load_table(raw.cold_identifier).schema().find_field("venue_region")
        assert field.required is False
        with pytest.raises(IncompatibleWarmSchema, match=r"cold.bronze_trades .*is_buyer_maker"):
            offload_partition(client, catalog.load_table(bronze.cold_identifier), bronze, HOURS[0], KEYS[0], "t", settle_lag=timedelta(0))
    assert catalog.load_table(bronze.cold_identifier).current_snapshot() is None
    assert_tiers_equal(warm, cold, HOURS[:1], tables=[raw])


def test_appends_leave_rows_younger_than_the_settle_lag_for_the_next_run(settings, warm, cold):
    feed(warm, hours=1)
    bronze = table_by_cold_name("bronze_trades")
    catalog = cold.catalog()
    with warm.connect() as client:
        # Everything was inserted a moment ago: with an hour of settle lag nothing is old enough.
        waiting = offload_partition(
            client, catalog.load_table(bronze.cold_identifier), bronze, HOURS[0], KEYS[0], "t", settle_lag=timedelta(hours=1)
        )
        assert waiting.rows_written == 0 and catalog.load_table(bronze.cold_identifier).current_snapshot() is None
        done = offload_partition(
            client, catalog.load_table(bronze.cold_identifier), bronze, HOURS[0], KEYS[0], "t", settle_lag=timedelta(0)
        )
    assert done.rows_written > 0
    assert_tiers_equal(warm, cold, HOURS[:1], tables=[bronze])


def test_a_repair_whose_record_dagster_lost_is_what_the_next_append_starts_from(live, warm, cold):
    """The table, not Dagster's record, says where an hour stands. A repair with a longer settle
    lag than the append before it (and leave to write fewer rows than cold holds) moves the
    hour's watermark back: it rewrites the hour up to its own lag, and the rows younger than
    that leave cold until the next append. When its process dies before Dagster records the
    repair, Dagster's record still names the earlier run's later watermark, and that run's
    snapshot is still on the ancestry: an append starting from it never brings them back.
    With the production settle lag, and trades still arriving that the lag leaves for later."""
    from datetime import UTC, datetime

    from cold_assets_tests.support.offload_helpers import age_trades, settle, warm_hour

    feed(warm, hours=1)
    settle(warm, minutes=120)
    insert_late_raw(warm, HOURS[0], 50, first_trade_id=9_000_000)  # ingested now ...
    settle(warm, minutes=60)  # ... the feed 3 hours ago, the late trades 1 hour ago
    assert run_offload(live, KEYS[:1])[0].success
    bronze = table_by_cold_name("bronze_trades")
    catalog = cold.catalog()
    with warm.connect() as client:
        # The repair commits, then its process dies before Dagster hears of it.
        repair = offload_partition(client, catalog.load_table(bronze.cold_identifier), bronze, HOURS[0], KEYS[0], "repair",
                                   replace_hour=True, allow_fewer_rows=True, settle_lag=timedelta(hours=2))
        assert repair.watermark < datetime.now(UTC) - timedelta(hours=2)
        assert cold_hour(catalog, bronze, HOURS[0]).num_rows == warm_hour(client, bronze, HOURS[0]).num_rows - 50
    insert_late_raw(warm, HOURS[0], 20, first_trade_id=9_100_000)  # still arriving: inside the lag
    result, instance = run_offload(live, KEYS[:1])
    assert result.success
    meta = latest_metadata(instance, bronze, KEYS[0])
    assert meta["rows_written"] == 50 and meta["offload"][KEYS[0]]["reconciled_from"] == "snapshot"
    age_trades(warm, 9_100_000, 20, minutes=1)  # the arriving trades settle; the next tick takes them
    assert run_offload(live, KEYS[:1])[0].success
    assert_tiers_equal(warm, cold, HOURS[:1])


def test_reconciliation_reads_no_event_log_for_hours_the_tables_bookkeeping_covers(live, warm, cold, monkeypatch):
    """The tick after a month costs what it cost on day one only if nothing it reads grows with
    the asset's history: the hours a table's own snapshots describe are reconciled from them,
    without a read of Dagster's event log (its materializations grow by nine per hour, forever).
    With the production settle lag, and late trades still arriving in the second run."""
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage

    from cold_assets_tests.support.offload_helpers import settle

    feed(warm, hours=2)
    settle(warm, minutes=10)
    assert run_offload(live, KEYS[:2])[0].success
    reads: list[tuple] = []
    fetch = SqlEventLogStorage.fetch_materializations

    def counted(storage, records_filter, *args, **kwargs):
        key = getattr(records_filter, "asset_key", records_filter)
        reads.append((key, getattr(records_filter, "asset_partitions", None)))
        return fetch(storage, records_filter, *args, **kwargs)

    monkeypatch.setattr(SqlEventLogStorage, "fetch_materializations", counted)
    insert_late_raw(warm, HOURS[1], 20, first_trade_id=9_100_000)
    result, _ = run_offload(live, KEYS[:2])
    assert result.success
    assert reads == []


def test_an_offload_before_init_names_the_missing_table_and_the_fix(settings, warm):
    from pyiceberg.exceptions import NoSuchTableError

    from cold_assets.defs.resources import IcebergResource

    with pytest.raises(NoSuchTableError, match=r"cold.raw_trades does not exist .*run `cold-assets init` first"):
        IcebergResource.from_settings(settings).load_table(("cold", "raw_trades"))


def test_small_integer_columns_keep_one_cold_type_and_a_dropped_warm_column_keeps_checks_and_views(settings, warm, cold):
    from cold_assets.federation import federate
    from cold_assets.parity.checksums import local_file_access
    from cold_assets_tests.support.offload_helpers import check_results

    feed(warm, hours=2)
    with warm.connect() as client:
        client.command("ALTER TABLE trades_raw ADD COLUMN venue_code Int8 DEFAULT 1")
        client.command("ALTER TABLE silver_trades ADD COLUMN venue_tier Int16 DEFAULT 3")
    raw, silver = table_by_cold_name("raw_trades"), table_by_cold_name("silver_trades")
    for _ in range(2):  # the second run must not find "int8 vs int32"
        result, instance = run_offload(settings, KEYS[:1])
        assert all(check_results(instance, result.run_id).values())
    catalog = cold.catalog()
    assert str(catalog.load_table(raw.cold_identifier).schema().find_field("venue_code").field_type) == "int"
    assert str(catalog.load_table(silver.cold_identifier).schema().find_field("venue_tier").field_type) == "int"
    # The columns are dropped in warm; cold keeps them (optional) for the rows it has.
    with warm.connect() as client:
        client.command("ALTER TABLE trades_raw DROP COLUMN venue_code")
        client.command("ALTER TABLE silver_trades DROP COLUMN venue_tier")
    result, instance = run_offload(settings, KEYS[:2])
    checks = check_results(instance, result.run_id)
    assert result.success and all(checks.values()), [k for k, v in checks.items() if not v]
    second = cold_hour(catalog, silver, HOURS[1])
    assert second.num_rows > 0 and set(second["venue_tier"].to_pylist()) == {None}
    assert set(cold_hour(catalog, silver, HOURS[0])["venue_tier"].to_pylist()) == {None}  # replaced from warm: NULL now
    assert set(cold_hour(catalog, raw, HOURS[0])["venue_code"].to_pylist()) == {1}  # append: the rows cold had keep it
    with warm.connect() as client:
        federated = {f.table: f for f in federate(client, catalog)}
        assert all(f.error is None for f in federated.values()), {t: f.error for t, f in federated.items() if f.error}
        with local_file_access(catalog.load_table(raw.cold_identifier)):
            codes = client.query("SELECT DISTINCT venue_code FROM trades_raw_all").result_rows
    assert sorted(codes, key=str) == sorted([(1,), (None,)], key=str)
