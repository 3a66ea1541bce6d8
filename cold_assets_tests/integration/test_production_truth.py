"""The product as production meets it: a live feed with the default settle lag, a warm tier
whose TTL forgets hours, a warm part lost inside the retention, a commit whose outcome is
unknown, rows that become visible late, and a table rolled back. Real chDB, Iceberg files on
disk and a Dagster instance throughout."""

import random
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from dagster import DagsterEventType, build_run_status_sensor_context, build_schedule_context
from pyiceberg.catalog.sql import SqlCatalog
from pyiceberg.exceptions import CommitStateUnknownException

from cold_assets.definitions import build_definitions
from cold_assets.defs.schedules import OFFLOAD_JOB
from cold_assets.offload.bookkeeping import Ancestry
from cold_assets.offload.phases import ColdRowsWouldBeLost, Outcome
from cold_assets.offload.protocol import offload_partition
from cold_assets.parity.checksums import local_file_access
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.settings import Settings
from cold_assets.tables import EVENT_TABLES, TABLES, table_by_cold_name
from cold_assets.tools.instance import embedded_instance
from cold_assets.tools.simulate import FeedConfig, simulate
from cold_assets_tests.integration.test_alerts_and_healing import _execute, _sensor
from cold_assets_tests.support.offload_helpers import (
    KEYS,
    RAW_COLUMNS,
    START,
    WARM_TABLES_WITH_INGESTION,
    assert_tiers_equal,
    check_results,
    cold_hour,
    feed,
    latest_metadata,
    op_config,
    run_offload,
    settle,
)

BRONZE, SILVER = table_by_cold_name("bronze_trades"), table_by_cold_name("silver_trades")


def all_checks_passed(instance, run_id) -> None:
    results = check_results(instance, run_id)
    assert results and all(results.values()), [k for k, v in results.items() if not v]


def _trade(trade_id: int, ts: datetime, price: float) -> list:
    return ["binance", "BTCUSDT", str(trade_id), f"{price:.8f}", "0.01000000", "false", ts, ts, "{}"]


# 1. A live feed ---------------------------------------------------------------------------


@pytest.mark.runs_for(125)
def test_a_live_feed_never_fails_a_run_or_a_check_and_ends_equal(live, warm, cold, monkeypatch):
    """A thread keeps inserting trades of the current hour (ingested now) and late trades of
    the previous one, while the schedule's run requests run again and again with the default
    settle lag; the feed's inserts interleave with the runs' steps (the embedded warm tier is
    one connection, taken in turn). The previous hour is kept open by a 2 h grace for late
    data; at the end the feed stops, the grace is set to 0 and that hour is closed."""
    now = datetime.now(UTC)
    if now.minute == 0 and now.second < 45:  # the previous hour must be able to close by the end
        time.sleep(45 - now.second)
    monkeypatch.setenv("COLD_LATE_GRACE_SECONDS", "7200")
    settings = Settings.from_env()
    current = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    previous = current - timedelta(hours=1)
    with warm.connect() as client:
        simulate(client, FeedConfig(start=previous, hours=1, trades_per_hour=2_000))
    stop, inserted, hours_fed = threading.Event(), [0], {previous}
    rng = random.Random(7)

    def feed_handler():
        trade_id = 5_000_000_000
        while not stop.is_set():
            at = datetime.now(UTC)
            rows = [_trade(trade_id + i, at - timedelta(milliseconds=rng.randint(0, 900)), 91_000 + rng.random() * 50) for i in range(20)]
            if rng.random() < 0.3:  # a late trade of the previous hour
                rows.append(_trade(trade_id + 20, previous + timedelta(minutes=rng.randint(0, 59)), 90_990.0))
            trade_id += 21
            with warm.connect() as c:
                c.insert("trades_raw", rows, column_names=RAW_COLUMNS)
            inserted[0] += len(rows)
            hours_fed.update(r[6].replace(minute=0, second=0, microsecond=0) for r in rows)
            time.sleep(0.4)

    def tick(settings) -> list:
        defs = build_definitions(settings)
        schedule = defs.resolve_schedule_def("offload_every_15_minutes")
        requests = schedule.evaluate_tick(
            build_schedule_context(
                instance=embedded_instance(settings),
                scheduled_execution_time=datetime.now(UTC),
                repository_def=defs.get_repository_def(),
            )
        ).run_requests
        job, instance = defs.resolve_job_def(OFFLOAD_JOB), embedded_instance(settings)
        runs = []
        for request in requests:
            result = job.execute_in_process(
                instance=instance, partition_key=request.partition_key, tags=request.tags, raise_on_error=False
            )
            assert result.success, f"run for {request.partition_key} failed"
            all_checks_passed(instance, result.run_id)
            runs.append(result.run_id)
        return runs

    thread = threading.Thread(target=feed_handler, daemon=True)
    thread.start()
    runs, started = [], time.monotonic()
    try:
        # At least 80 s of feed and at least 6 scheduled runs, however slow the machine is:
        # every run meets inserts in flight, and the suite stays well inside its time.
        while time.monotonic() - started < 80 or len(runs) < 6:
            runs += tick(settings)
            # The self-healing sensor leaves open hours to the schedule.
            requests, _ = _sensor(settings, "self_healing")
            assert not isinstance(requests, list) or requests == []
    finally:
        stop.set()
        thread.join()
    assert len(runs) >= 6 and inserted[0] > 1_000
    # The feed stops; once the settle lag has passed and the grace is over, the previous hour
    # is closed: its checks compare whole hour with whole hour, and every table equals warm.
    time.sleep(live.settle_lag_seconds + 2)
    monkeypatch.setenv("COLD_LATE_GRACE_SECONDS", "0")
    closed = Settings.from_env()
    tick(closed)
    # When the test crossed an hour boundary, the schedule no longer covers the first hour,
    # whose late trades arrived after its last run: the self-healing sensor finds and repairs
    # them, as in production. Otherwise it has nothing to do.
    repairs, _ = _sensor(closed, "self_healing")
    for request in repairs if isinstance(repairs, list) else []:
        assert _execute(closed, request).success
    hours = sorted(hours_fed)
    assert_tiers_equal(warm, cold, hours)


# 2. The TTL: warm forgets, cold keeps --------------------------------------------------------


@pytest.mark.runs_for(35)
def test_an_hour_the_warm_ttl_deleted_keeps_its_cold_rows_everywhere(live, warm, cold, monkeypatch, receiver):
    current = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    # With a 6-day retention the first two of these hours are past it, the last two are not.
    first = current - timedelta(days=6, hours=1)
    hours = [first + timedelta(hours=h) for h in range(4)]
    keys = [partition_key_of(h) for h in hours]
    with warm.connect() as client:
        simulate(client, FeedConfig(start=first, hours=4, trades_per_hour=1_500))
    settle(warm)
    run_offload(live, keys)  # offloaded while warm still held them (30-day retention)
    catalog = cold.catalog()
    before = {t.cold: cold_hour(catalog, t, hours[0]).num_rows for t in EVENT_TABLES}
    assert all(before[t.cold] > 0 for t in EVENT_TABLES if t.gold_window != "1d")
    # Time passes: with a 6-day warm retention the TTL drops the first hour from every table.
    monkeypatch.setenv("COLD_WARM_RETENTION_DAYS", "6")
    monkeypatch.setenv("COLD_TTL_MARGIN_DAYS", "5")
    forgetful = Settings.from_env()
    with warm.connect() as client:
        for table in (*WARM_TABLES_WITH_INGESTION, *(t.warm for t in EVENT_TABLES if t.gold_window)):
            time_column = "window_start" if table.startswith("gold") else "exchange_ts"
            client.command(
                f"ALTER TABLE {table} DELETE WHERE {time_column} >= {{lo:DateTime64(6, 'UTC')}} "
                f"AND {time_column} < {{hi:DateTime64(6, 'UTC')}}",
                parameters={"lo": hours[0], "hi": hours[1]}, settings={"mutations_sync": 2},
            )
    # A backfill over the range with the default configuration.
    result, instance = run_offload(forgetful, keys)
    all_checks_passed(instance, result.run_id)
    assert {t.cold: cold_hour(catalog, t, hours[0]).num_rows for t in EVENT_TABLES} == before
    for table in EVENT_TABLES:
        entry = latest_metadata(instance, table, keys[0])["offload"][keys[0]]
        assert entry["cold_only"] is True and entry["mode"] == "cold_only", (table.cold, entry)
    # Where a table's offload range of the later hours also holds the deleted one (gold_ohlcv_1d's
    # day, when the deleted hour is the day's first: its bar starts then), warm has no whole copy
    # left to compare with; cold kept that bar, as `before` shows above.
    whole = [t for t in EVENT_TABLES if t.offload_range(hours[2])[0] > hours[0]]
    assert_tiers_equal(warm, cold, hours[2:], tables=whole)
    # The audit passes, and says which hours it did not compare.
    audit = _cli(forgetful, "audit", "--from", f"{hours[0]:%Y-%m-%dT%H:%M}", "--to", f"{hours[-1] + timedelta(hours=1):%Y-%m-%dT%H:%M}")
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert "cold-only" in audit.stdout and "0 mismatched" in audit.stdout
    # The federated views still return the hour's rows, from cold.
    federate = _cli(forgetful, "federate")
    assert federate.returncode == 0, federate.stderr
    with warm.connect() as client, local_file_access(catalog.load_table(BRONZE.cold_identifier)):
        for table in EVENT_TABLES:
            lo, hi = table.offload_range(hours[0])
            through_view = client.query(
                f"SELECT count() FROM {table.warm}_all WHERE {table.time_column} >= {{lo:DateTime64(6, 'UTC')}} "
                f"AND {table.time_column} < {{hi:DateTime64(6, 'UTC')}}",
                parameters={"lo": lo, "hi": hi},
            ).result_rows[0][0]
            assert through_view == cold_hour(catalog, table, hours[0]).num_rows, table.warm
    # The self-healing sensor asks for nothing (and the hour is not one it looks at).
    requests, _ = _sensor(forgetful, "self_healing")
    assert not isinstance(requests, list) or requests == []
    assert receiver.texts() == []


def test_an_hour_never_offloaded_that_aged_past_the_retention_is_offloaded_from_what_warm_still_holds(
    live, warm, cold, monkeypatch
):
    """The TTL deletes at merges, not at the stroke of the retention: an hour that was never
    offloaded (a first backfill that reached it late, an outage) and is past the retention
    may still be whole in warm, and then warm holds its only copy. It is offloaded, not
    skipped as cold-only; once cold holds it, cold is its copy of record again."""
    current = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    first = current - timedelta(days=6, hours=1)  # past a 6-day retention; the next hour is not
    hours = [first, first + timedelta(hours=1)]
    keys = [partition_key_of(h) for h in hours]
    with warm.connect() as client:
        simulate(client, FeedConfig(start=first, hours=2, trades_per_hour=1_500))
    settle(warm)
    monkeypatch.setenv("COLD_WARM_RETENTION_DAYS", "6")
    monkeypatch.setenv("COLD_TTL_MARGIN_DAYS", "5")
    forgetful = Settings.from_env()
    result, instance = run_offload(forgetful, keys)
    all_checks_passed(instance, result.run_id)
    catalog = cold.catalog()
    offloaded = {t.cold: cold_hour(catalog, t, hours[0]).num_rows for t in EVENT_TABLES if t.gold_window != "1d"}
    assert all(rows > 0 for rows in offloaded.values()), offloaded
    for table in EVENT_TABLES:
        entry = latest_metadata(instance, table, keys[0])["offload"][keys[0]]
        assert entry["cold_only"] is True and entry["mode"] in ("append", "replace"), (table.cold, entry)
    assert_tiers_equal(warm, cold, hours)
    # Cold holds the hour now: a re-run leaves it to cold, unchanged.
    again, instance = run_offload(forgetful, keys[:1])
    assert again.success
    for table in EVENT_TABLES:
        assert latest_metadata(instance, table, keys[0])["offload"][keys[0]]["mode"] == "cold_only", table.cold
    assert {t.cold: cold_hour(catalog, t, hours[0]).num_rows for t in EVENT_TABLES if t.gold_window != "1d"} == offloaded


def _cli(settings: Settings, *args: str):
    import os
    import subprocess
    import sys

    env = {**os.environ, "COLD_HOME": str(settings.home)}
    return subprocess.run([sys.executable, "-m", "cold_assets.tools.cli", *args], capture_output=True, text=True, timeout=300, env=env)


# 3. Warm shrinks inside the retention --------------------------------------------------------


def test_a_replace_that_would_lose_cold_rows_is_refused_alerted_once_and_allowed_by_the_flag(live, warm, cold, receiver):
    feed(warm, hours=2, trades_per_hour=1_500)
    settle(warm)
    run_offload(live, KEYS[:2])
    catalog = cold.catalog()
    silver_before = cold_hour(catalog, SILVER, hour_of(KEYS[0])).num_rows
    snapshot_before = catalog.load_table(SILVER.cold_identifier).current_snapshot().snapshot_id
    with warm.connect() as client:  # one warm part of silver is lost (a dropped part, a broken disk)
        (part,) = client.query(
            "SELECT name FROM system.parts WHERE table = 'silver_trades' AND active ORDER BY rows DESC LIMIT 1"
        ).result_rows[0]
        client.command(f"ALTER TABLE silver_trades DROP PART '{part}'")
        warm_left = client.query(
            "SELECT count() FROM silver_trades FINAL"
            " WHERE exchange_ts >= {lo:DateTime64(6, 'UTC')} AND exchange_ts < {hi:DateTime64(6, 'UTC')}",
            parameters={"lo": hour_of(KEYS[0]), "hi": hour_of(KEYS[1])},
        ).result_rows[0][0]
    assert warm_left < silver_before
    defs = build_definitions(live)
    instance = embedded_instance(live)

    def failure_alerts(result):
        event = next(e for e in result.all_events if e.event_type == DagsterEventType.RUN_FAILURE)
        context = build_run_status_sensor_context(
            sensor_name="offload_failure_alerts",
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id),
        )
        defs.resolve_sensor_def("offload_failure_alerts")(context.for_run_failure())

    for _ in range(2):  # the schedule's tick, twice: refused both times, alerted once
        refused, _ = run_offload(live, KEYS[:1], raise_on_error=False)
        assert not refused.success
        failure_alerts(refused)
    table = catalog.load_table(SILVER.cold_identifier)
    assert table.current_snapshot().snapshot_id == snapshot_before  # nothing written
    assert cold_hour(catalog, SILVER, hour_of(KEYS[0])).num_rows == silver_before
    (alert,) = receiver.texts()
    assert "cold.silver_trades" in alert and KEYS[0] in alert
    assert f"has {warm_left} rows where cold holds {silver_before}" in alert and "allow_fewer_rows" in alert
    # The other tables of the run were not held back.
    assert_tiers_equal(warm, cold, [hour_of(KEYS[0])], tables=[t for t in TABLES if t is not SILVER])
    # The self-healing sensor does not ask for a replace that would lose rows: it alerts, once.
    cursor = None
    for _ in range(2):
        requests, cursor = _sensor(live, "self_healing", cursor)
        assert not isinstance(requests, list) or requests == []
    shrunk = [t for t in receiver.texts()[1:] if "WARM HOLDS FEWER ROWS" in t]
    assert shrunk and all("cold.silver_trades" in t for t in shrunk) and len(shrunk) == len(set(shrunk))
    assert len(receiver.texts()) == 1 + len(shrunk)
    # An operator who means the deletion says so.
    allowed, _ = run_offload(live, KEYS[:1], op_config(allow_fewer_rows=True))
    assert allowed.success
    assert cold_hour(catalog, SILVER, hour_of(KEYS[0])).num_rows == warm_left
    assert_tiers_equal(warm, cold, [hour_of(KEYS[0])], tables=[SILVER])


def test_a_replace_refused_directly_names_table_hour_and_both_counts(live, warm, cold):
    feed(warm, hours=1, trades_per_hour=500)
    settle(warm)
    gold = table_by_cold_name("gold_ohlcv_1m")
    catalog = cold.catalog()
    with warm.connect() as client:
        offload_partition(client, catalog.load_table(gold.cold_identifier), gold, START, KEYS[0], "t")
        cold_rows = cold_hour(catalog, gold, START).num_rows
        client.command("TRUNCATE TABLE gold_ohlcv_1m")
        with pytest.raises(
            ColdRowsWouldBeLost, match=rf"cold.gold_ohlcv_1m hour {KEYS[0]}: warm gold_ohlcv_1m has 0 rows where cold holds {cold_rows}"
        ):
            offload_partition(client, catalog.load_table(gold.cold_identifier), gold, START, KEYS[0], "t")
    assert cold_hour(catalog, gold, START).num_rows == cold_rows


# 4. A commit whose outcome is unknown --------------------------------------------------------


@pytest.mark.parametrize("table", [BRONZE, SILVER], ids=["append", "replace"])
def test_a_commit_that_landed_before_its_error_keeps_its_files_and_the_rerun_adds_nothing(live, warm, cold, monkeypatch, table):
    feed(warm, hours=1, trades_per_hour=1_500)
    settle(warm)
    real_commit = SqlCatalog.commit_table

    def commit_then_lose_the_answer(self, *args, **kwargs):
        real_commit(self, *args, **kwargs)  # the catalog has committed...
        raise CommitStateUnknownException("connection lost after COMMIT")  # ...and the answer is lost

    monkeypatch.setattr(SqlCatalog, "commit_table", commit_then_lose_the_answer)
    catalog = cold.catalog()
    with warm.connect() as client:
        with pytest.raises(CommitStateUnknownException):
            offload_partition(client, catalog.load_table(table.cold_identifier), table, START, KEYS[0], "lost")
        monkeypatch.setattr(SqlCatalog, "commit_table", real_commit)
        landed = catalog.load_table(table.cold_identifier)
        files = [f["file_path"] for f in landed.inspect.files().to_pylist()]
        assert files and all(landed.io.new_input(path).exists() for path in files)
        assert landed.scan().to_arrow().num_rows > 0  # the table reads
        again = offload_partition(client, landed, table, START, KEYS[0], "rerun")
    assert again.mode is Outcome.UNCHANGED and again.rows_written == 0
    assert_tiers_equal(warm, cold, [START], tables=[table])


# 5. Rows that become visible after the watermark passed them -------------------------------


def test_a_row_visible_late_inside_the_overlap_is_offloaded_exactly_once(live, warm, cold):
    feed(warm, hours=1, trades_per_hour=1_000)
    settle(warm)
    run_offload(live, KEYS[:1])
    raw = table_by_cold_name("raw_trades")
    catalog = cold.catalog()
    watermark = Ancestry(catalog.load_table(BRONZE.cold_identifier), BRONZE).state(START).watermark
    late_ingested = watermark - timedelta(seconds=90)  # before the watermark, inside the overlap
    row = _trade(4_000_000_001, START + timedelta(minutes=33), 91_111.0) + [late_ingested]
    with warm.connect() as client:
        client.insert("trades_raw", [row], column_names=[*RAW_COLUMNS, "ingested_at"])
    # Without the overlap the append cannot see it: it was ingested before the watermark, and
    # the closed hour's checks say so.
    blind, instance = run_offload(live, KEYS[:1], op_config(append_overlap_seconds=0), raise_on_error=False)
    assert not blind.success and check_results(instance, blind.run_id)[("bronze_trades", "row_count_parity")] is False
    assert 4_000_000_001 not in cold_hour(catalog, BRONZE, START)["trade_id"].to_pylist()
    # With the default overlap it is read again, once, and stays once however often it runs.
    for _ in range(2):
        result, instance = run_offload(live, KEYS[:1])
        all_checks_passed(instance, result.run_id)
    for table in (raw, BRONZE):
        ids = [str(t) for t in cold_hour(catalog, table, START)["trade_id"].to_pylist()]
        assert ids.count("4000000001") == 1, table.cold
    assert_tiers_equal(warm, cold, [START])


def test_a_negative_settle_lag_or_overlap_is_refused(settings, monkeypatch):
    for variable in ("COLD_SETTLE_LAG_SECONDS", "COLD_APPEND_OVERLAP_SECONDS", "COLD_LATE_GRACE_SECONDS"):
        monkeypatch.setenv(variable, "-1")
        with pytest.raises(ValueError, match=rf"{variable}='-1' must be at least 0"):
            Settings.from_env()
        monkeypatch.setenv(variable, "0")
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=r"append_overlap_seconds\n.*greater than or equal to 0"):
        run_offload(settings, KEYS[:1], op_config(append_overlap_seconds=-5))


# 6. A table rolled back ----------------------------------------------------------------------


def test_after_a_rollback_the_next_run_writes_again_what_it_removed_exactly_once(live, warm, cold):
    feed(warm, hours=2, trades_per_hour=1_500)
    settle(warm)
    run_offload(live, KEYS[:1])
    run_offload(live, KEYS[1:2])  # its own commit, which the rollback removes
    catalog = cold.catalog()
    for spec in (BRONZE, SILVER):
        table = catalog.load_table(spec.cold_identifier)
        with table.manage_snapshots() as manage:
            manage.rollback_to_snapshot(table.current_snapshot().parent_snapshot_id)
        assert cold_hour(catalog, spec, hour_of(KEYS[1])).num_rows == 0  # the last hour's rows are gone
    result, instance = run_offload(live, KEYS[:2])
    all_checks_passed(instance, result.run_id)
    assert_tiers_equal(warm, cold, [hour_of(k) for k in KEYS[:2]])
    for spec in (BRONZE, SILVER):
        entry = latest_metadata(instance, spec, KEYS[1])["offload"][KEYS[1]]
        assert entry["mode"] == ("append" if spec is BRONZE else "replace") and entry["rows_written"] > 0
