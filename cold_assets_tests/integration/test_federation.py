"""Warm + cold as one table: the `<warm>_all` views on embedded chDB reading the local warehouse."""

import os
from datetime import timedelta

from cold_assets.federation import current_cutovers, federate
from cold_assets.offload.protocol import offload_partition
from cold_assets.parity.checksums import local_file_access
from cold_assets.partitions import partition_key_of
from cold_assets.tables import EVENT_TABLES, TABLES, table_by_cold_name
from cold_assets.tools.simulate import FeedConfig, simulate
from cold_assets.warm.read import EPOCH, read_query
from cold_assets_tests.support.offload_helpers import START, feed, run_offload

HOURS = 6
KEYS = [partition_key_of(START + timedelta(hours=h)) for h in range(HOURS)]
NOW = START + timedelta(hours=HOURS + 2)  # every fed hour is settled
BRONZE = table_by_cold_name("bronze_trades")


def rows(client, catalog, sql: str, parameters=None) -> list[tuple]:
    table = catalog.load_table(BRONZE.cold_identifier)
    with local_file_access(table):
        return sorted(client.query(sql, parameters=parameters).result_rows)


def test_a_query_across_the_cutover_returns_every_row_once_before_and_after_the_warm_ttl(settings, warm, cold):
    feed(warm, hours=HOURS, trades_per_hour=400)
    run_offload(settings, KEYS[:4])  # hours 4 and 5 are not in cold yet
    catalog = cold.catalog()
    with warm.connect() as client:
        result = {f.table: f for f in federate(client, catalog, now=NOW)}
        cutover = START + timedelta(hours=4)
        assert result["bronze_trades"].cutover == cutover  # the first hour not proven in cold
        assert current_cutovers(client)["bronze_trades"] == cutover
        span = {"lo": START + timedelta(hours=2), "hi": START + timedelta(hours=6)}
        query = (
            "SELECT trade_id, exchange, symbol, toString(price), exchange_ts FROM {view:Identifier} "
            "WHERE exchange_ts >= {lo:DateTime64(6, 'UTC')} AND exchange_ts < {hi:DateTime64(6, 'UTC')}"
        )
        through_view = rows(client, catalog, query, {**span, "view": "bronze_trades_all"})
        # Every row exactly once (as multisets: the feed has duplicate deliveries): what the
        # two tiers hold on either side of the cutover, read separately, and all of warm.
        location = catalog.load_table(BRONZE.cold_identifier).location().removeprefix("file://")
        cold_part = rows(
            client, catalog,
            query.replace("{view:Identifier}", "icebergLocal({p:String})") + " AND exchange_ts < {c:DateTime64(6, 'UTC')}",
            {**span, "p": location, "c": cutover},
        )
        warm_part = rows(
            client, catalog, query + " AND exchange_ts >= {c:DateTime64(6, 'UTC')}", {**span, "view": "bronze_trades", "c": cutover}
        )
        assert cold_part and warm_part
        assert through_view == sorted(cold_part + warm_part)
        assert through_view == rows(client, catalog, query, {**span, "view": "bronze_trades"})
        # The cold part of the view is cold's: drop warm hours before the cutover, as the TTL would.
        client.command(
            "ALTER TABLE bronze_trades DELETE WHERE exchange_ts < {c:DateTime64(6, 'UTC')}",
            parameters={"c": cutover},
            settings={"mutations_sync": 2},
        )
        assert rows(client, catalog, query, {**span, "view": "bronze_trades_all"}) == through_view
        # Federating again never moves the cutover back, even with warm hours gone.
        again = {f.table: f for f in federate(client, catalog, now=NOW)}
        assert again["bronze_trades"].cutover >= cutover


def test_a_month_of_ohlcv_through_the_view_equals_cold_alone_and_warm(settings, warm, cold):
    days = 28  # the four weeks before today: inside the warm tier's 30-day TTL
    gold_1d = table_by_cold_name("gold_ohlcv_1d")
    month_end = START + timedelta(days=6)  # today, 00:00 UTC
    month_start = month_end - timedelta(days=days)
    with warm.connect() as client:
        simulate(client, FeedConfig(start=month_start, hours=24 * days, trades_per_hour=30))
        table = cold.catalog().load_table(gold_1d.cold_identifier)
        for day in range(days):  # one offload per daily bar
            hour = month_start + timedelta(days=day)
            offload_partition(client, table, gold_1d, hour, partition_key_of(hour), "month", settle_lag=timedelta(0))
        (federation,) = federate(client, cold.catalog(), now=month_end + timedelta(hours=2), tables=[gold_1d])
        assert federation.cutover == month_end  # the whole month proven, read from cold
        monthly = (
            "SELECT exchange, symbol, toStartOfMonth(window_start) AS month, argMin(open, window_start), max(high), "
            "min(low), argMax(close, window_start), sum(volume), sum(trade_count) FROM {source} "
            "WHERE window_start >= {lo:DateTime64(6, 'UTC')} AND window_start < {hi:DateTime64(6, 'UTC')} "
            "GROUP BY exchange, symbol, month ORDER BY exchange, symbol, month"
        )
        bounds = {"lo": month_start, "hi": month_end}
        warm_read = read_query(gold_1d, None, month_start, month_end, literal=True).sql
        with local_file_access(table):
            through_view = client.query(monthly.replace("{source}", "gold_ohlcv_1d_all"), parameters=bounds).result_rows
            cold_alone = client.query(
                monthly.replace("{source}", "icebergLocal({p:String})"),
                parameters={**bounds, "p": table.location().removeprefix("file://")},
            ).result_rows
        warm_alone = client.query(monthly.replace("{source}", f"({warm_read})"), parameters=bounds).result_rows
    assert through_view == cold_alone == warm_alone
    assert len(through_view) >= 2 * 3  # exchanges x symbols, with two calendar months at most


def test_the_daily_audit_job_federates_after_auditing_and_records_the_cutovers(settings, warm, cold):
    from dagster import DagsterEventType

    from cold_assets.definitions import build_definitions
    from cold_assets.defs.nightly import DAILY_AUDIT_JOB
    from cold_assets.tools.instance import embedded_instance

    feed(warm, hours=HOURS, trades_per_hour=200)
    run_offload(settings, KEYS)
    job = build_definitions(settings).resolve_job_def(DAILY_AUDIT_JOB)
    until = (START + timedelta(days=1)).date().isoformat()
    result = job.execute_in_process(
        instance=embedded_instance(settings),
        run_config={"ops": {"audit_cold_tier": {"config": {"lookback_days": 1, "until": until}}}},
    )
    assert result.success
    cutovers = {
        e.event_specific_data.asset_observation.asset_key.path[-1]: e.event_specific_data.asset_observation.metadata[
            "federation_cutover"
        ].value
        for e in result.all_events
        if e.event_type == DagsterEventType.ASSET_OBSERVATION
        and "federation_cutover" in e.event_specific_data.asset_observation.metadata  # (the audit's verdicts are observations too)
    }
    assert len(cutovers) == 10
    # Every fed hour is proven, and so are the empty hours after them, up to the settled clock.
    assert cutovers["bronze_trades"] >= (START + timedelta(hours=HOURS)).timestamp()
    with warm.connect() as client:
        views = {r[0] for r in client.query("SELECT name FROM system.tables WHERE name LIKE '%\\_all'").result_rows}
    assert views == {f"{t.warm}_all" for t in TABLES}


def test_one_table_with_a_persistent_mismatch_does_not_freeze_the_other_views(settings, warm, cold):
    from dagster import DagsterEventType
    from pyiceberg.expressions import EqualTo

    from cold_assets.cold.ranges import range_filter
    from cold_assets.definitions import build_definitions
    from cold_assets.defs.nightly import DAILY_AUDIT_JOB
    from cold_assets.tools.instance import embedded_instance

    feed(warm, hours=3, trades_per_hour=200)
    run_offload(settings, KEYS[:3])
    table = cold.catalog().load_table(BRONZE.cold_identifier)  # a hole in bronze's second hour
    lo, hi = BRONZE.offload_range(START + timedelta(hours=1))
    table.delete(EqualTo("trade_id", table.scan(row_filter=range_filter("exchange_ts", lo, hi), limit=1).to_arrow()["trade_id"][0].as_py()))
    job = build_definitions(settings).resolve_job_def(DAILY_AUDIT_JOB)
    until = (START + timedelta(days=1)).date().isoformat()
    result = job.execute_in_process(
        instance=embedded_instance(settings),
        run_config={"ops": {"audit_cold_tier": {"config": {"lookback_days": 1, "until": until}}}},
        raise_on_error=False,
    )
    assert not result.success  # the audit's verdict: bronze differs
    failure = next(e for e in result.all_events if e.event_type == DagsterEventType.STEP_FAILURE)
    assert failure.step_key == "audit_verdict" and "bronze_trades" in failure.event_specific_data.error.message
    with warm.connect() as client:
        cutovers = current_cutovers(client)
    assert cutovers["bronze_trades"] == lo  # stops at the hour it cannot prove
    for spec in EVENT_TABLES:  # (no reject was ingested in those hours)
        if spec is not BRONZE:  # every other view moved past the three hours
            assert cutovers[spec.warm] >= spec.offload_range(START + timedelta(hours=3))[0], spec.warm


def test_reading_the_cold_tier_moves_no_other_threads_working_directory(settings, warm, cold, tmp_path, monkeypatch):
    """Embedded chDB reads local files only under the working directory, so cold reads run at
    /. Another thread of the same process (a sensor, a webserver request) must not see that."""
    import threading

    from cold_assets.parity.checksums import cold_checksums

    feed(warm, hours=1, trades_per_hour=200)
    run_offload(settings, KEYS[:1])
    monkeypatch.chdir(tmp_path)
    (tmp_path / "relative.txt").write_text("still here")
    table = cold.catalog().load_table(BRONZE.cold_identifier)
    inside, observed, seen = threading.Event(), threading.Event(), {}

    def cold_reader():
        with warm.connect() as client, local_file_access(table):
            seen["rows"] = sum(rows for rows, _ in cold_checksums(client, table, BRONZE, START, START + timedelta(hours=1)).values())
            inside.set()
            observed.wait(30)

    def bystander():
        inside.wait(30)
        try:
            seen["cwd"] = os.getcwd()
            seen["relative"] = open("relative.txt").read()
        except OSError as error:
            seen["relative"] = repr(error)
        finally:
            observed.set()

    threads = [threading.Thread(target=cold_reader), threading.Thread(target=bystander)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert seen["rows"] > 0
    assert seen["cwd"] == str(tmp_path) and seen["relative"] == "still here"
    assert os.getcwd() == str(tmp_path)


def test_a_table_warm_no_longer_holds_any_row_of_is_served_from_cold(settings, warm, cold):
    """The TTL can take a table's last warm rows (gold_ohlcv_1d keeps one bar a day, dropped
    whole): the view then serves cold's rows instead of an empty warm side. While neither tier
    holds a row, the cutover does not move."""
    daily = table_by_cold_name("gold_ohlcv_1d")
    later = START + timedelta(days=2)  # the fed day is settled, as a day the TTL drops would be
    catalog = cold.catalog()
    with warm.connect() as client:
        (empty,) = federate(client, catalog, now=later, tables=[daily])
        assert empty.error is None and empty.cutover == EPOCH
    feed(warm, hours=HOURS, trades_per_hour=400)
    run_offload(settings, KEYS)
    with warm.connect() as client:
        client.command("ALTER TABLE gold_ohlcv_1d DELETE WHERE 1", settings={"mutations_sync": 2})
        assert client.query("SELECT count() FROM gold_ohlcv_1d").result_rows == [(0,)]
        cold_rows = catalog.load_table(daily.cold_identifier).scan().count()
        assert cold_rows > 0
        (result,) = federate(client, catalog, now=later, tables=[daily])
        assert result.error is None and result.cutover == daily.offload_range(later - timedelta(hours=1))[0] > EPOCH
        assert rows(client, catalog, "SELECT count() FROM gold_ohlcv_1d_all") == [(cold_rows,)]
