"""RepairAttempts' bookkeeping of repairs per hour (the self-healing sensor's cursor), with the
real Alerter delivering to the log (no webhook configured)."""

import logging
from datetime import UTC, datetime, timedelta

from cold_assets.defs.alerts import Alerter, Outbox
from cold_assets.defs.healing import RepairAttempts

NOW = datetime(2026, 12, 5, 12, tzinfo=UTC)


def attempts(state: dict, now: datetime = NOW) -> RepairAttempts:
    log = logging.getLogger("test_repair_attempts")
    alerter = Alerter(None, None)
    return RepairAttempts(state, None, now, 3, timedelta(minutes=10), Outbox(state, alerter, log), alerter)  # type: ignore[arg-type]


def test_an_hour_that_leaves_the_window_still_damaged_is_abandoned_not_recovered(caplog):
    state: dict = {}
    assert attempts(state).next_attempt("2026-12-05-03:00", ["raw_trades"]) == 1
    caplog.set_level(logging.WARNING)
    attempts(state).healed(set(), window={"2026-12-05-04:00"})
    assert "REPAIR ABANDONED: hour 2026-12-05-03:00" in caplog.text and "RECOVERED" not in caplog.text
    assert state["repairs"] == {}


def test_a_repair_that_did_not_fix_its_hour_waits_twice_as_long_each_time():
    state: dict = {}
    assert attempts(state).next_attempt("h", ["raw_trades"]) == 1
    assert attempts(state, NOW + timedelta(minutes=9)).next_attempt("h", ["raw_trades"]) is None
    assert attempts(state, NOW + timedelta(minutes=10)).next_attempt("h", ["raw_trades"]) == 2
    assert attempts(state, NOW + timedelta(minutes=29)).next_attempt("h", ["raw_trades"]) is None
    assert attempts(state, NOW + timedelta(minutes=30)).next_attempt("h", ["raw_trades"]) == 3


def test_an_hour_the_tick_did_not_look_at_is_neither_recovered_nor_abandoned(caplog):
    """The TTL guard looks at a slice of its window a tick: an hour of the window outside the
    slice stays under repair; one of the slice no longer damaged recovers."""
    state: dict = {}
    for hour in ("2026-11-10-03:00", "2026-11-20-03:00"):
        assert attempts(state).next_attempt(hour, ["raw_trades"]) == 1
    caplog.set_level(logging.INFO)
    window = {"2026-11-10-03:00", "2026-11-20-03:00"}
    attempts(state).healed(set(), window, looked_at={"2026-11-10-03:00"})
    assert set(state["repairs"]) == {"2026-11-20-03:00"}
    assert "ABANDONED" not in caplog.text


def test_the_ttl_guard_looks_at_its_window_a_slice_a_tick_and_starts_over_after_the_newest():
    from cold_assets.defs.ttl_guard import late_rows_slice

    window = [f"2026-11-{day:02d}-00:00" for day in range(1, 11)]  # ten hours, for short
    state: dict = {}
    seen = [late_rows_slice(state, window, hours=4) for _ in range(4)]
    assert seen == [window[0:4], window[4:8], window[8:10], window[0:4]]
    # The window moves on an hour between ticks (its oldest hour drops out, a new one joins):
    # each slice starts where the last stopped, and no hour waits more than a turn.
    state, moved = {}, list(window)
    last_seen = dict.fromkeys(moved, 0)
    for tick in range(1, 13):
        for hour in late_rows_slice(state, moved, hours=4):
            assert tick - last_seen.get(hour, tick) <= 3, (hour, tick)
            last_seen[hour] = tick
        moved = moved[1:] + [f"2026-11-{11 + tick:02d}-00:00"]
    assert late_rows_slice({}, [], hours=4) == []


def test_a_shrunk_hour_the_tick_did_not_look_at_stays_alerted_and_is_not_alerted_again(caplog):
    """The TTL guard alerts once per (table, hour) where warm holds fewer rows than cold; a
    tick looking at another slice must not forget it (the next visit would alert again)."""
    from cold_assets.defs.healing import Repairs

    log = logging.getLogger("test_repair_attempts")
    state: dict = {}
    outbox = Outbox(state, Alerter(None, None), log)
    caplog.set_level(logging.INFO)
    window = {"2026-11-10-03:00", "2026-11-20-03:00"}
    first = Repairs()
    first.shrunk[("raw_trades", "2026-11-10-03:00")] = "warm 1 rows, cold 2"
    first.alert_shrunk(state, outbox, {"2026-11-10-03:00"}, window)
    assert caplog.text.count("WARM HOLDS FEWER ROWS") == 1
    Repairs().alert_shrunk(state, outbox, {"2026-11-20-03:00"}, window)  # the other slice
    assert state["shrunk"] == ["raw_trades|2026-11-10-03:00"]
    again = Repairs()
    again.shrunk[("raw_trades", "2026-11-10-03:00")] = "warm 1 rows, cold 2"
    again.alert_shrunk(state, outbox, {"2026-11-10-03:00"}, window)
    assert caplog.text.count("WARM HOLDS FEWER ROWS") == 1
    Repairs().alert_shrunk(state, outbox, {"2026-11-20-03:00"}, {"2026-11-20-03:00"})  # it left the window
    assert state["shrunk"] == []


def test_a_run_covering_one_hour_of_the_daily_bars_day_covers_the_day(caplog):
    """A repair of gold_ohlcv_1d replaces its whole day: while one runs for one hour of the day,
    another hour of the same day is not requested again (the two would conflict). A real
    ephemeral Dagster instance holds the running one."""
    from dagster import AssetKey, DagsterInstance, DagsterRun, DagsterRunStatus, HourlyPartitionsDefinition

    from cold_assets.defs.healing import Repairs, in_flight_ranges

    instance = DagsterInstance.ephemeral()
    instance.add_run(
        DagsterRun(
            job_name="offload_cold", run_id="running-repair", status=DagsterRunStatus.STARTED,
            tags={"dagster/partition": "2026-11-10-03:00"}, asset_selection=frozenset({AssetKey(["cold", "gold_ohlcv_1d"])}),
        )
    )
    partitions = HourlyPartitionsDefinition(start_date="2026-11-01-00:00", timezone="UTC", fmt="%Y-%m-%d-%H:%M")
    covered = in_flight_ranges(instance, "offload_cold", partitions)
    assert covered == {("gold_ohlcv_1d", datetime(2026, 11, 10, tzinfo=UTC))}  # the hour's day
    state: dict = {}
    found = Repairs()
    found.add("2026-11-10-15:00", ["gold_ohlcv_1d", "gold_ohlcv_1h"], "late rows")
    requests = found.requests(covered, "ttl-repair", attempts(state), ["2026-11-10-15:00"])
    assert [r.partition_key for r in requests] == ["2026-11-10-15:00"]
    assert [k.path[-1] for k in requests[0].asset_selection] == ["gold_ohlcv_1h"]
