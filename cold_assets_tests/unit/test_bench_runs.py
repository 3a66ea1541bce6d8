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


def test_every_part_bench_steady_times_names_a_function_that_exists_where_it_looks() -> None:
    """`bench steady` finds a tick's parts in a profile by file and function name: a renamed or
    moved function would read as 0 s, a part that vanished, not one that got cheap."""
    import inspect

    from clickhouse_connect.driver._backend.chdb_backend import ChdbBackend
    from dagster import DagsterInstance
    from dagster._core.storage.event_log.sql_event_log import SqlEventLogStorage
    from dagster_postgres.event_log.event_log import PostgresEventLogStorage
    from pyiceberg.table import DataScan

    from cold_assets.offload.commit import commit_transaction
    from cold_assets.parity.checksums import partitions_parity
    from cold_assets.tools.bench_steady import TICK_PARTS
    from cold_assets.warm.embedded_lock import _open

    found = {
        "_open": [_open], "_query_locked": [ChdbBackend._query_locked],
        "_open_stream": [ChdbBackend._open_stream], "fetch_materializations": [DagsterInstance.fetch_materializations],
        "store_event": [SqlEventLogStorage.store_event, PostgresEventLogStorage.store_event],
        "partitions_parity": [partitions_parity], "plan_files": [DataScan.plan_files], "commit_transaction": [commit_transaction],
    }
    for name, where, function in TICK_PARTS:
        sources = [inspect.getsourcefile(inspect.unwrap(f)) for f in found[function]]
        assert any(source is not None and where in source for source in sources), (name, where, sources)


def test_bench_steady_counts_the_garbage_collections_inside_a_tick_and_none_after() -> None:
    import gc

    from cold_assets.tools.bench_steady import garbage_collections

    gc.disable()  # no automatic collection in between
    try:
        with garbage_collections() as collections:
            gc.collect()
            gc.collect(0)
        assert len(collections) == 2 and all(s >= 0 for s in collections)
        gc.collect()
        assert len(collections) == 2  # its callback is gone
    finally:
        gc.enable()
