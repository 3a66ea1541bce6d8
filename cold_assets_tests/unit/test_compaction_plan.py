"""Which partitions the nightly compaction rewrites, and the SQL filter it gives Spark."""

from datetime import UTC, datetime

import pytest

from cold_assets.cold.files import written_by_offload
from cold_assets.maintenance.operations import _partition_span, _where, worth_rewriting


def test_the_offloads_files_are_told_from_the_ones_spark_wrote():
    offload = "file:///w/cold/raw_trades/data/exchange_ts_hour=2026-03-10-14/exchange=binance/"
    assert written_by_offload(offload + "2026-03-10-1400-raw_trades-binance-0123456789abcdef0123456789abcdef.parquet")
    spark = "file:/w/cold/raw_trades/data/exchange_ts_hour=2026-03-10-14/exchange=binance/"
    assert not written_by_offload(spark + "00000-3-1c6f0e8a-5f3e-4d2a-9b7e-2f1d3c4b5a69-0-00001.parquet")


def test_a_time_partition_spans_its_hour_day_or_month():
    instant = datetime(2026, 12, 31, 23, 59, tzinfo=UTC)
    assert _partition_span("hour", instant) == (datetime(2026, 12, 31, 23, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert _partition_span("day", instant) == (datetime(2026, 12, 31, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert _partition_span("month", instant) == (datetime(2026, 12, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC))
    assert _partition_span("month", datetime(2026, 1, 31, tzinfo=UTC))[1] == datetime(2026, 2, 1, tzinfo=UTC)
    with pytest.raises(ValueError, match="no compaction for a time partition by 'year'"):
        _partition_span("year", instant)


def test_the_compaction_filter_is_one_disjunct_per_range_with_microsecond_bounds():
    ranges = [
        (datetime(2026, 3, 1, tzinfo=UTC), datetime(2026, 3, 2, tzinfo=UTC)),
        (datetime(2026, 3, 5, 7, tzinfo=UTC), datetime(2026, 3, 5, 8, tzinfo=UTC)),
    ]
    assert _where("exchange_ts", ranges) == (
        "(exchange_ts >= TIMESTAMP '2026-03-01 00:00:00.000000' AND exchange_ts < TIMESTAMP '2026-03-02 00:00:00.000000')"
        " OR (exchange_ts >= TIMESTAMP '2026-03-05 07:00:00.000000' AND exchange_ts < TIMESTAMP '2026-03-05 08:00:00.000000')"
    )
    with pytest.raises(ValueError, match="not a valid SQL identifier"):
        _where("exchange_ts) OR (1=1", ranges)


def test_a_partition_is_rewritten_only_where_the_rewrite_changes_something():
    # Nothing the offload wrote: compaction's own files are never rewritten again.
    assert not worth_rewriting(3, 0, "day", reencodes=True)
    # An hour the offload wrote as one file: already its final layout, unless re-encoded.
    assert not worth_rewriting(1, 1, "hour", reencodes=False)
    assert worth_rewriting(1, 1, "hour", reencodes=True)
    # Late rows appended a second file: merged.
    assert worth_rewriting(2, 2, "hour", reencodes=False)
    # A day or month with one file so far: rewritten (and again as it fills).
    assert worth_rewriting(1, 1, "month", reencodes=False)
    assert worth_rewriting(2, 1, "month", reencodes=False)
