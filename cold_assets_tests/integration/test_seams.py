"""Where two features meet (issue 23's review): a rollback and the nightly expiry, a refused
hour and its run's check results, a schema change and a concurrent writer. Each test failed
on the code before its fix. Real chDB, Iceberg on disk and a Dagster instance, with the
production settle lag."""

from dagster import DagsterEventType

from cold_assets.partitions import hour_of
from cold_assets.tables import TABLES, table_by_cold_name
from cold_assets_tests.support.offload_helpers import (
    KEYS,
    assert_tiers_equal,
    cold_hour,
    feed,
    latest_metadata,
    run_offload,
    settle,
)

BRONZE, SILVER = table_by_cold_name("bronze_trades"), table_by_cold_name("silver_trades")


def check_evaluations(instance, run_id: str) -> dict[tuple[str, str], dict]:
    """(cold table, check name) -> {"passed": ..., "hours": [...], "differing": [...]} of a run."""
    found = {}
    for record in instance.all_logs(run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = record.dagster_event.event_specific_data
        metadata = evaluation.metadata
        found[(evaluation.asset_key.path[1], evaluation.check_name)] = {
            "passed": evaluation.passed,
            "hours": metadata["hours"].value if "hours" in metadata else [],
            "differing": [d["hour"] for d in metadata["hours_differing"].value] if "hours_differing" in metadata else [],
        }
    return found


def test_a_rollback_then_the_expiry_of_the_orphaned_snapshot_does_not_revive_its_record(live, warm, cold):
    """A Dagster record whose snapshot was rolled back and then expired points at a snapshot
    the table no longer has: it must not count, or append tables resume from the rolled-back
    watermark and replace tables skip on the rolled-back fingerprint."""
    feed(warm, hours=2, trades_per_hour=1_500)
    settle(warm)
    assert run_offload(live, KEYS[:1])[0].success
    assert run_offload(live, KEYS[1:2])[0].success  # its own commit, which the rollback removes
    catalog = cold.catalog()
    for spec in (BRONZE, SILVER):
        table = catalog.load_table(spec.cold_identifier)
        orphaned = table.current_snapshot().snapshot_id
        with table.manage_snapshots() as manage:
            manage.rollback_to_snapshot(table.current_snapshot().parent_snapshot_id)
        # The nightly expiry removes what the rollback left behind.
        table.refresh().maintenance.expire_snapshots().by_ids([orphaned]).commit()
        assert catalog.load_table(spec.cold_identifier).metadata.snapshot_by_id(orphaned) is None
        assert cold_hour(catalog, spec, hour_of(KEYS[1])).num_rows == 0
    result, instance = run_offload(live, KEYS[:2])
    assert result.success
    assert_tiers_equal(warm, cold, [hour_of(k) for k in KEYS[:2]])
    for spec in (BRONZE, SILVER):
        assert latest_metadata(instance, spec, KEYS[1])["rows_written"] > 0


def test_a_refused_hour_still_records_every_check_of_its_run_then_fails_it(live, warm, cold):
    """One refused hour of a ranged run: the run fails, and every hour's parity checks are
    recorded first (the refused hour's as failed), so that sensors and alerts see them."""
    feed(warm, hours=2, trades_per_hour=1_500)
    settle(warm)
    assert run_offload(live, KEYS[:2])[0].success
    with warm.connect() as client:  # warm loses silver rows of the first hour only
        client.command(
            "ALTER TABLE silver_trades DELETE WHERE exchange_ts < {hi:DateTime64(6, 'UTC')} AND trade_id % 3 = 0",
            parameters={"hi": hour_of(KEYS[1])},
            settings={"mutations_sync": 2},
        )
    result, instance = run_offload(live, KEYS[:2], raise_on_error=False)
    assert not result.success
    found = check_evaluations(instance, result.run_id)
    for table in TABLES:
        for check in ("row_count_parity", "content_parity"):
            assert (table.cold, check) in found, f"{table.cold} {check} was not recorded"
    silver = found[(SILVER.cold, "row_count_parity")]
    assert set(silver["hours"]) == set(KEYS[:2])
    assert not silver["passed"] and silver["differing"] == [KEYS[0]]
    assert found[(BRONZE.cold, "row_count_parity")]["passed"]


def test_a_commit_by_another_writer_while_the_schema_evolves_starts_the_checkpoint_over(live, warm, cold, monkeypatch):
    """Warm gains a column while two writers offload the same hour: the schedule's run read the
    hour before the ALTER and commits after this run planned, but before it evolves the cold
    schema. Evolving returns the table at the other writer's snapshot; committing the plan
    made before it would add a second copy of the rows, so the checkpoint starts over."""
    import cold_assets.offload.protocol as protocol
    from cold_assets.offload.protocol import offload_partitions
    from cold_assets_tests.support.offload_helpers import warm_hour

    feed(warm, hours=1, trades_per_hour=1_500)
    settle(warm)
    hour = hour_of(KEYS[0])
    catalog = cold.catalog()
    with warm.connect() as client:
        earlier_read = warm_hour(client, BRONZE, hour)  # the other writer's read, before the ALTER
        client.command("ALTER TABLE bronze_trades ADD COLUMN venue Nullable(String)")
    real_read_slices, interleaved = protocol._read_slices, []

    def other_writer_commits_first(*args, **kwargs):
        if not interleaved:  # once: between this run's plan and its schema evolution
            interleaved.append(True)
            other = catalog.load_table(BRONZE.cold_identifier)
            other.append(earlier_read.cast(protocol.schema_to_pyarrow(other.schema(), include_field_ids=False)))
        return real_read_slices(*args, **kwargs)

    monkeypatch.setattr(protocol, "_read_slices", other_writer_commits_first)
    with warm.connect() as client:
        list(offload_partitions(client, catalog.load_table(BRONZE.cold_identifier), BRONZE, KEYS[:1], "run-b"))
    assert interleaved
    # Bronze keeps duplicate deliveries as received, so the tiers are compared as multisets.
    assert cold_hour(catalog, BRONZE, hour).num_rows == earlier_read.num_rows, "a row is in cold twice"
    assert_tiers_equal(warm, cold, [hour], tables=[BRONZE])
