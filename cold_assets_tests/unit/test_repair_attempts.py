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
    # The window moved on (an hour older than it dropped out, a new one joined): the next
    # slice starts where the last stopped, not over.
    moved = window[1:] + ["2026-11-11-00:00"]
    state["late_rows_from"] = window[5]
    assert late_rows_slice(state, moved, hours=4) == moved[4:8]
    assert late_rows_slice({}, [], hours=4) == []
