"""An hour's state from the verdicts Dagster holds, in the order they were made, and as time
moves it on."""

from datetime import UTC, datetime, timedelta

from cold_assets.hours import HourPolicy
from cold_assets.monitoring.hour_states import HourState, VerdictBook, keys_of_range, state_now, verdicts_of
from cold_assets.tables import table_by_cold_name

RAW = table_by_cold_name("raw_trades")
DAILY = table_by_cold_name("gold_ohlcv_1d")
NOW = datetime(2026, 12, 6, 12, 30, tzinfo=UTC)
POLICY = HourPolicy(warm_retention=timedelta(days=30))
CLOSED = "2026-12-06-10:00"
OLD = (NOW - timedelta(days=31)).strftime("%Y-%m-%d-%H:00")


def test_each_hour_takes_the_state_its_verdict_gives():
    verdict = {
        "hours": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "hours_open": ["b"],
        "hours_cold_only": ["c"],
        "hours_unchecked": ["f"],
        "hours_reprocessed": ["g", "h"],
        "hours_differing": [{"hour": "d", "refused": False}, {"hour": "e", "refused": True}, {"hour": "h", "basis": "reprocessed"}],
    }
    assert verdicts_of(verdict) == {
        "a": HourState.PROVEN, "b": HourState.OPEN, "c": HourState.COLD_ONLY, "d": HourState.MISMATCHED,
        "e": HourState.REFUSED, "f": HourState.UNVERIFIED, "g": HourState.REPROCESSED, "h": HourState.MISMATCHED,
    }


def test_counts_alone_prove_nothing():
    # Recorded hour by hour (`hours_unchecked`), or, for a check recorded before that, the
    # whole evaluation's warning.
    assert verdicts_of({"hours": ["a", "b"], "hours_unchecked": ["b"]}, content_checked=True) == {
        "a": HourState.PROVEN, "b": HourState.UNVERIFIED,
    }
    old_warning = {"hours": ["a", "b"], "hours_differing": [{"hour": "b"}]}
    assert verdicts_of(old_warning, content_checked=False) == {"a": HourState.UNVERIFIED, "b": HourState.MISMATCHED}


def test_the_newest_verdict_wins_whatever_order_they_are_read_in():
    verdicts = [(2000.0, HourState.PROVEN), (1000.0, HourState.MISMATCHED)]
    for order in (verdicts, verdicts[::-1]):
        book = VerdictBook(RAW)
        for at, state in order:
            book.record(at, {CLOSED: state})
        assert book.state(CLOSED) is HourState.PROVEN  # a repair's check, after the audit compared
    book.record(3000.0, {CLOSED: HourState.MISMATCHED})
    assert book.state(CLOSED) is HourState.MISMATCHED


def test_of_two_verdicts_too_close_to_order_the_alarming_one_is_kept():
    # A check recorded before checks carried `compared_at` is timed when its step logged it,
    # which may be after the audit read the hour.
    verdicts = [(1000.0, HourState.MISMATCHED, True), (1100.0, HourState.PROVEN, False)]
    for order in (verdicts, verdicts[::-1]):
        book = VerdictBook(RAW)
        for at, state, exact in order:
            book.record(at, {CLOSED: state}, exact=exact)
        assert book.state(CLOSED) is HourState.MISMATCHED


def test_a_repair_compared_a_minute_after_the_mismatch_proves_the_hour():
    # Both timed by when they compared: the repair's check a minute after the audit is newer.
    verdicts = [(1000.0, HourState.MISMATCHED), (1060.0, HourState.PROVEN)]
    for order in (verdicts, verdicts[::-1]):
        book = VerdictBook(RAW)
        for at, state in order:
            book.record(at, {CLOSED: state})
        assert book.state(CLOSED) is HourState.PROVEN


def test_a_mismatch_does_not_hide_a_refusal_and_a_newer_proof_clears_it_in_any_order():
    verdicts = [(1000.0, HourState.REFUSED), (5000.0, HourState.MISMATCHED)]  # the audit knows nothing of refusals
    for order in (verdicts, verdicts[::-1]):
        book = VerdictBook(RAW)
        for at, state in order:
            book.record(at, {CLOSED: state})
        assert book.state(CLOSED) is HourState.REFUSED
        book.record(9000.0, {CLOSED: HourState.PROVEN})  # replaced with allow_fewer_rows, or warm restored
        assert book.state(CLOSED) is HourState.PROVEN
        book.record(200.0, {CLOSED: HourState.REFUSED})  # an old refusal read late changes nothing
        assert book.state(CLOSED) is HourState.PROVEN


def test_a_verdict_on_a_daily_bar_speaks_for_every_hour_of_its_day():
    assert len(keys_of_range(DAILY, CLOSED)) == 24 and keys_of_range(RAW, CLOSED) == [CLOSED]
    book = VerdictBook(DAILY)
    book.record(100.0, {CLOSED: HourState.MISMATCHED})
    assert {book.state(k) for k in keys_of_range(DAILY, CLOSED)} == {HourState.MISMATCHED}
    book.forget_before("2026-12-06-12:00")
    assert book.state(CLOSED) is None and book.state("2026-12-06-13:00") is HourState.MISMATCHED


def test_time_moves_an_hour_on_without_a_new_verdict():
    done, never = True, False  # materialized, ever
    # Found open, closed since: not proven until a check sees it closed.
    assert state_now(HourState.OPEN, done, RAW, CLOSED, NOW, POLICY) is HourState.UNVERIFIED
    assert state_now(HourState.PROVEN, done, RAW, CLOSED, NOW, POLICY) is HourState.PROVEN
    # Past warm's retention: cold-only, as the audit says, if it was ever offloaded; but what
    # was found wrong stays wrong (what cold lacked is lost).
    assert state_now(HourState.PROVEN, done, RAW, OLD, NOW, POLICY) is HourState.COLD_ONLY
    assert state_now(HourState.MISMATCHED, done, RAW, OLD, NOW, POLICY) is HourState.MISMATCHED
    assert state_now(HourState.REFUSED, done, RAW, OLD, NOW, POLICY) is HourState.REFUSED
    assert state_now(None, never, RAW, OLD, NOW, POLICY) is HourState.NEVER_OFFLOADED
    # No verdict yet.
    assert state_now(None, done, RAW, CLOSED, NOW, POLICY) is HourState.UNVERIFIED
    assert state_now(None, never, RAW, CLOSED, NOW, POLICY) is HourState.NEVER_OFFLOADED
