"""How `bench history` cuts its backfill into runs: the backfill policy's bound, equal lengths."""

from cold_assets.tools.bench_history import BACKFILL_RUN_HOURS, backfill_runs


def test_runs_are_as_few_as_the_policy_allows_and_equal_within_an_hour() -> None:
    keys = [f"h{i:04d}" for i in range(717)]  # 30 days less the open hours
    runs = backfill_runs(keys)
    assert [len(r) for r in runs] == [144, 144, 143, 143, 143]
    assert [k for r in runs for k in r] == keys


def test_a_range_within_one_run_stays_one_run() -> None:
    keys = [f"h{i:04d}" for i in range(BACKFILL_RUN_HOURS)]
    assert backfill_runs(keys) == [keys]
    assert backfill_runs(keys + ["last"]) == [keys[:85], keys[85:] + ["last"]]
    assert backfill_runs([]) == []
