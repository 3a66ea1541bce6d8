"""When an hour is open, closed or cold-only; which range a partition offloads; partition keys."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.offload.bookkeeping import range_key
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.tables import TABLES, table_by_cold_name

BRONZE = table_by_cold_name("bronze_trades")
DAILY = table_by_cold_name("gold_ohlcv_1d")
HOUR = datetime(2026, 3, 10, 14, tzinfo=UTC)
POLICY = HourPolicy(settle_lag=timedelta(seconds=30), late_grace=timedelta(minutes=10), warm_retention=timedelta(days=30))


def test_an_hour_stays_open_until_its_end_plus_settle_lag_plus_grace():
    end = HOUR + timedelta(hours=1)
    closes = end + timedelta(seconds=30) + timedelta(minutes=10)
    assert POLICY.status(BRONZE, HOUR, closes - timedelta(microseconds=1)) is HourStatus.OPEN
    assert POLICY.status(BRONZE, HOUR, closes) is HourStatus.CLOSED


def test_an_hour_is_cold_only_from_the_moment_the_warm_retention_passed_its_start():
    assert POLICY.status(BRONZE, HOUR, HOUR + timedelta(days=30) - timedelta(seconds=1)) is HourStatus.CLOSED
    assert POLICY.status(BRONZE, HOUR, HOUR + timedelta(days=30)) is HourStatus.COLD_ONLY


def test_the_daily_bar_of_an_hour_is_open_until_its_day_has_closed():
    evening = HOUR.replace(hour=23)
    next_day = HOUR.replace(hour=0) + timedelta(days=1)
    assert POLICY.status(DAILY, HOUR, evening + timedelta(minutes=30)) is HourStatus.OPEN
    assert POLICY.status(DAILY, HOUR, next_day + timedelta(minutes=11)) is HourStatus.CLOSED


def test_a_policy_refuses_a_negative_lag_or_an_empty_retention():
    with pytest.raises(ValueError, match="settle_lag must not be negative"):
        HourPolicy(settle_lag=timedelta(seconds=-1))
    with pytest.raises(ValueError, match="warm_retention must be positive"):
        HourPolicy(warm_retention=timedelta(0))


def test_every_table_but_the_daily_bars_offloads_its_own_hour():
    for spec in TABLES:
        start, end = spec.offload_range(HOUR)
        if spec is DAILY:
            assert (start, end) == (HOUR.replace(hour=0), HOUR.replace(hour=0) + timedelta(days=1))
            assert spec.range_function == "toStartOfDay"
        else:
            assert (start, end) == (HOUR, HOUR + timedelta(hours=1))
            assert spec.range_function == "toStartOfHour"


def test_the_daily_bars_keep_their_bookkeeping_under_the_days_first_hour():
    assert range_key(DAILY, HOUR) == "2026-03-10-00:00"
    assert range_key(BRONZE, HOUR) == "2026-03-10-14:00"


def test_partition_keys_are_utc_whatever_zone_the_instant_is_given_in():
    in_new_york = HOUR.astimezone(timezone(timedelta(hours=-5)))
    assert partition_key_of(in_new_york) == "2026-03-10-14:00"
    assert hour_of(partition_key_of(HOUR)) == HOUR
    with pytest.raises(ValueError):
        hour_of("2026-03-10T14:00")
