"""An hour's state from the verdicts Dagster holds, and as time moves it on."""

from datetime import UTC, datetime, timedelta

from cold_assets.hours import HourPolicy
from cold_assets.monitoring.hour_states import HourState, state_now, verdicts_of
from cold_assets.tables import table_by_cold_name

RAW = table_by_cold_name("raw_trades")
NOW = datetime(2026, 12, 6, 12, 30, tzinfo=UTC)
POLICY = HourPolicy(warm_retention=timedelta(days=30))


def test_each_hour_takes_the_state_its_verdict_gives():
    verdict = {
        "hours": ["a", "b", "c", "d", "e"],
        "hours_open": ["b"],
        "hours_cold_only": ["c"],
        "hours_differing": [{"hour": "d", "refused": False}, {"hour": "e", "refused": True}],
    }
    assert verdicts_of(verdict) == {
        "a": HourState.PROVEN, "b": HourState.OPEN, "c": HourState.COLD_ONLY, "d": HourState.MISMATCHED, "e": HourState.REFUSED,
    }


def test_a_content_check_that_computed_no_checksum_proves_nothing():
    verdict = {"hours": ["a", "b"], "hours_differing": [{"hour": "b"}]}
    assert verdicts_of(verdict, content_checked=False) == {"a": HourState.UNVERIFIED, "b": HourState.MISMATCHED}


def test_time_moves_an_hour_on_without_a_new_verdict():
    closed = "2026-12-06-10:00"
    old = (NOW - timedelta(days=31)).strftime("%Y-%m-%d-%H:00")
    # Found open, closed since: not proven until a check sees it closed.
    assert state_now(HourState.OPEN, True, RAW, closed, NOW, POLICY) is HourState.UNVERIFIED
    assert state_now(HourState.PROVEN, True, RAW, closed, NOW, POLICY) is HourState.PROVEN
    assert state_now(HourState.MISMATCHED, True, RAW, closed, NOW, POLICY) is HourState.MISMATCHED
    # Past warm's retention, as the audit says of it: cold-only, if it was ever offloaded.
    assert state_now(HourState.MISMATCHED, True, RAW, old, NOW, POLICY) is HourState.COLD_ONLY
    assert state_now(None, False, RAW, old, NOW, POLICY) is HourState.NEVER_OFFLOADED
    # No verdict yet.
    assert state_now(None, True, RAW, closed, NOW, POLICY) is HourState.UNVERIFIED
    assert state_now(None, False, RAW, closed, NOW, POLICY) is HourState.NEVER_OFFLOADED
