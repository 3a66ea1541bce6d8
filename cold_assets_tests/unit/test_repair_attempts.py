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
