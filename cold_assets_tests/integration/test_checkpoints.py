"""A ranged run commits each table once per checkpoint, with every hour's bookkeeping in that
snapshot's summary map, and stays exactly once: killed between two checkpoints, raced by
overlapping runs, after the snapshot that carried an hour's bookkeeping expired, and when one
hour of a range committed together is repaired alone. Real chDB, Iceberg on disk, Dagster."""

import json
import os
import signal
import subprocess
import sys
import textwrap
from datetime import timedelta

from cold_assets.federation import federate
from cold_assets.offload.bookkeeping import PARTITIONS, Ancestry
from cold_assets.offload.phases import Outcome
from cold_assets.offload.protocol import offload_partitions
from cold_assets.parity.checksums import local_file_access
from cold_assets.partitions import partition_key_of
from cold_assets.settings import Settings
from cold_assets.tables import EVENT_TABLES, TABLES, table_by_cold_name
from cold_assets_tests.support.offload_helpers import (
    RAW_COLUMNS,
    START,
    WARM_TABLES_WITH_INGESTION,
    assert_tiers_equal,
    cold_hour,
    count_metadata_parses,
    feed,
    insert_late_raw,
    latest_metadata,
    op_config,
    run_offload,
    settle,
)

SIX = [START + timedelta(hours=h) for h in range(6)]
SIX_KEYS = [partition_key_of(h) for h in SIX]
BRONZE, SILVER, GOLD_1D = (table_by_cold_name(n) for n in ("bronze_trades", "silver_trades", "gold_ohlcv_1d"))


def cold_trade_ids(catalog, spec, hour) -> set[int]:
    return set(cold_hour(catalog, spec, hour)["trade_id"].to_pylist())


def offload_commits(table) -> list[dict]:
    """The offload commits on the current ancestry, oldest first: each one's hour map."""
    commits = []
    for snapshot in table.snapshots():
        props = snapshot.summary.additional_properties if snapshot.summary else {}
        if PARTITIONS in props:
            commits.append(json.loads(props[PARTITIONS]))
    return commits


def test_a_ranged_run_commits_once_per_checkpoint_with_every_hours_bookkeeping(settings, warm, cold, monkeypatch):
    monkeypatch.setenv("COLD_CHECKPOINT_HOURS", "2")
    feed(warm, hours=6)
    result, instance = run_offload(Settings.from_env(), SIX_KEYS)
    assert result.success
    catalog = cold.catalog()
    for spec in EVENT_TABLES:  # the rejects' hours are ingestion hours: the feed's are today's
        commits = offload_commits(catalog.load_table(spec.cold_identifier))
        if spec is GOLD_1D:
            # The day's bar is written once per run, not once per hour.
            assert [list(c) for c in commits] == [[SIX_KEYS[0]]], commits
            continue
        assert [sorted(c) for c in commits] == [SIX_KEYS[0:2], SIX_KEYS[2:4], SIX_KEYS[4:6]], spec.cold
        for entry in (e for c in commits for e in c.values()):
            assert entry["rows"] > 0 and entry["mode"] == spec.mode.value
            assert ("watermark" in entry) and (("fingerprint" in entry) == (spec.mode.value == "replace"))
    # Every hour has its own materialization, with its own rows and the snapshot it is in.
    table = catalog.load_table(BRONZE.cold_identifier)
    ids = {s.snapshot_id for s in table.snapshots()}
    for key in SIX_KEYS:
        meta = latest_metadata(instance, BRONZE, key)
        assert meta["rows_written"] > 0 and int(meta["snapshot_id"]) in ids
    assert len({latest_metadata(instance, BRONZE, k)["snapshot_id"] for k in SIX_KEYS}) == 3
    assert_tiers_equal(warm, cold, SIX)


KILL_BETWEEN_CHECKPOINTS = textwrap.dedent(
    """
    import os, signal, sys
    import cold_assets.offload.commit as offload
    from cold_assets_tests.support.offload_helpers import run_offload
    from cold_assets.settings import Settings

    commit, commits = offload.commit_transaction, []
    def commit_twice_then_die(*args, **kwargs):
        snapshot = commit(*args, **kwargs)
        commits.append(snapshot)
        if len(commits) == 2:
            os.kill(os.getpid(), signal.SIGKILL)  # between the second and the third checkpoint
        return snapshot
    offload.commit_transaction = commit_twice_then_die
    run_offload(Settings.from_env(), sys.argv[1:])
    """
)


def test_killed_between_two_checkpoints_the_rerun_redoes_only_what_was_not_committed(settings, warm, cold, monkeypatch):
    monkeypatch.setenv("COLD_CHECKPOINT_HOURS", "2")
    feed(warm, hours=6)
    proc = subprocess.run(
        [sys.executable, "-c", KILL_BETWEEN_CHECKPOINTS, *SIX_KEYS], env=os.environ.copy(), capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]
    catalog = cold.catalog()
    # The first table's first two checkpoints landed; Dagster heard of none of them.
    started = [t for t in TABLES if catalog.load_table(t.cold_identifier).current_snapshot() is not None]
    assert len(started) == 1
    (first,) = started
    assert [sorted(c) for c in offload_commits(catalog.load_table(first.cold_identifier))] == [SIX_KEYS[0:2], SIX_KEYS[2:4]]
    result, instance = run_offload(Settings.from_env(), SIX_KEYS)
    assert result.success
    for key in SIX_KEYS[:4]:  # committed before the kill: found in the snapshots' map, not redone
        meta = latest_metadata(instance, first, key)
        assert meta["rows_written"] == 0 and meta["offload"][key]["reconciled_from"] == "snapshot", (key, meta)
    for key in SIX_KEYS[4:]:
        assert latest_metadata(instance, first, key)["rows_written"] > 0
    assert_tiers_equal(warm, cold, SIX)


def test_overlapping_ranged_runs_racing_each_other_leave_every_row_once(settings, warm, cold, monkeypatch):
    """Run A offloads hours 0-3 in checkpoints of two. Just before A's first commit, run B
    offloads hours 3-5: A's commit fails (the table moved on), A redoes hours 0-1 and commits.
    Just before A's second commit (hour 2; B did hour 3), run C offloads hours 1-2: A's commit
    fails again, and A, starting over from reconciliation, finds hour 2 done by C. Append
    (bronze) and replace (silver) alike: every hour once, none written twice."""
    import cold_assets.offload.commit as offload

    feed(warm, hours=6)
    catalog = cold.catalog()
    commit = offload.commit_transaction

    def run(spec, keys, run_id):
        with warm.connect() as client:
            table = catalog.load_table(spec.cold_identifier)
            return [
                r
                for c in offload_partitions(client, table, spec, keys, run_id, settle_lag=timedelta(0), checkpoint_hours=2)
                for r in c.results
            ]

    def racing_commit_for(spec, attempts: list, racers: dict):
        """A's commit, which first lets B (at A's first attempt) or C (at its third) commit."""

        def racing_commit(matcher, *args, **kwargs):
            if racers.get("running"):  # B's and C's own commits
                return commit(matcher, *args, **kwargs)
            table = matcher.table
            attempts.append(table.current_snapshot().snapshot_id if table.current_snapshot() else None)
            racers["running"] = True
            try:
                if len(attempts) == 1:
                    racers["B"] = run(spec, SIX_KEYS[3:6], "B")
                elif len(attempts) == 3:
                    racers["C"] = run(spec, SIX_KEYS[1:3], "C")
            finally:
                racers["running"] = False
            return commit(matcher, *args, **kwargs)

        return racing_commit

    for spec in (BRONZE, SILVER):
        attempts, racers = [], {}
        monkeypatch.setattr(offload, "commit_transaction", racing_commit_for(spec, attempts, racers))
        a = {r.partition_key: r for r in run(spec, SIX_KEYS[:4], "A")}
        monkeypatch.setattr(offload, "commit_transaction", commit)
        b, c = ({r.partition_key: r for r in racers[x]} for x in ("B", "C"))
        # A's commits: hours 0-1 (failed, B), 0-1 again, hour 2 (failed, C); then nothing left.
        assert len(attempts) == 3, attempts
        assert a[SIX_KEYS[0]].rows_written > 0 and a[SIX_KEYS[1]].rows_written > 0
        assert all(r.rows_written > 0 for r in b.values())
        assert c[SIX_KEYS[1]].mode is Outcome.UNCHANGED and c[SIX_KEYS[2]].rows_written > 0
        # Hours B and C committed were found in their bookkeeping, not written again.
        for key, racer in ((SIX_KEYS[2], c), (SIX_KEYS[3], b)):
            assert a[key].mode is Outcome.UNCHANGED and a[key].snapshot_id == racer[key].snapshot_id, (spec.cold, key)
        assert_tiers_equal(warm, cold, SIX, tables=[spec])


def test_after_the_snapshot_with_an_hours_bookkeeping_expired_a_rerun_adds_only_late_rows(settings, warm, cold):
    feed(warm, hours=6)
    assert run_offload(settings, SIX_KEYS[:4])[0].success  # one commit per table holds hours 0-3
    assert run_offload(settings, SIX_KEYS[4:])[0].success  # a later commit
    catalog = cold.catalog()
    for spec in (BRONZE, SILVER):
        table = catalog.load_table(spec.cold_identifier)
        (carrier,) = [
            s for s in table.snapshots() if SIX_KEYS[0] in json.loads((s.summary.additional_properties or {}).get(PARTITIONS, "{}"))
        ]
        older = [s.snapshot_id for s in table.snapshots() if s.timestamp_ms <= carrier.timestamp_ms]
        table.maintenance.expire_snapshots().by_ids(older).commit()
        table = table.refresh()
        assert table.metadata.snapshot_by_id(carrier.snapshot_id) is None
        assert Ancestry(table, spec).state(SIX[0]) is None  # the bookkeeping of hours 0-3 is gone
    # Late trades of hour 1 arrive; the whole range is offloaded again, twice.
    late = [
        [
            "binance",
            "BTCUSDT",
            str(8_000_000 + i),
            "91000.00000000",
            "0.01000000",
            "false",
            SIX[1] + timedelta(minutes=30, seconds=i),
            SIX[1] + timedelta(hours=3),
            "{}",
        ]
        for i in range(7)
    ]
    with warm.connect() as client:
        client.insert("trades_raw", late, column_names=RAW_COLUMNS)
    # (No overlap re-read: the feed was ingested minutes ago, all of it inside the overlap.)
    result, instance = run_offload(settings, SIX_KEYS, op_config(append_overlap_seconds=0))
    assert result.success
    # Dagster's record of an expired snapshot still counts: bronze appended the late rows only.
    assert latest_metadata(instance, BRONZE, SIX_KEYS[1])["rows_written"] == 7
    assert latest_metadata(instance, BRONZE, SIX_KEYS[0])["rows_written"] == 0
    assert_tiers_equal(warm, cold, SIX)
    # Without Dagster's record either (a new instance), the cold files' own floor holds.
    table = catalog.load_table(BRONZE.cold_identifier)
    table.maintenance.expire_snapshots().by_ids([s.snapshot_id for s in table.snapshots()[:-1]]).commit()
    with warm.connect() as client:
        list(offload_partitions(client, catalog.load_table(BRONZE.cold_identifier), BRONZE, SIX_KEYS, "no-record", settle_lag=timedelta(0)))
    assert_tiers_equal(warm, cold, SIX, tables=[BRONZE])


def test_one_hour_of_a_range_committed_together_is_repaired_alone(live, warm, cold):
    """With the production settle lag: the feed has settled, the range is committed together,
    one hour is damaged in cold and repaired alone while a trade of that hour is still
    arriving (younger than the lag). The repair of bronze (an append layer) stops at the lag;
    the trade reaches it once, through the next run's overlap re-read."""
    feed(warm, hours=6)
    settle(warm)
    assert run_offload(live, SIX_KEYS)[0].success
    catalog = cold.catalog()
    from pyiceberg.expressions import EqualTo

    from cold_assets.cold.ranges import range_filter

    for spec in (BRONZE, SILVER):
        table = catalog.load_table(spec.cold_identifier)
        victim = table.scan(row_filter=range_filter(spec.time_column, SIX[2], SIX[3]), limit=1).to_arrow()["trade_id"][0].as_py()
        table.delete(EqualTo("trade_id", victim))
    insert_late_raw(warm, SIX[2], 1, first_trade_id=9_500_000_000)  # ingested now: inside the lag
    config = {"ops": {f"cold__{s.cold}": {"config": {"replace_hour": True}} for s in (BRONZE, SILVER)}}
    defs_result, instance = run_offload(live, [SIX_KEYS[2]], config)
    assert defs_result.success
    for spec in (BRONZE, SILVER):
        commits = offload_commits(catalog.load_table(spec.cold_identifier))
        assert list(commits[-1]) == [SIX_KEYS[2]] and commits[-1][SIX_KEYS[2]]["mode"] == "replace"
    arrivals = {spec.cold: cold_trade_ids(catalog, spec, SIX[2]) & {9_500_000_000} for spec in (BRONZE, SILVER)}
    assert arrivals == {"bronze_trades": set(), "silver_trades": {9_500_000_000}}  # silver replaces all warm has
    assert_tiers_equal(warm, cold, SIX[:2] + SIX[3:], tables=[BRONZE])
    assert_tiers_equal(warm, cold, SIX, tables=[SILVER])
    # The federated view does not let the lag hide the trade: its hour stays on warm.
    with warm.connect() as client:
        (federation,) = federate(client, catalog, tables=[BRONZE])
        assert federation.cutover == SIX[2], federation
        with local_file_access(catalog.load_table(BRONZE.cold_identifier)):
            found = client.query("SELECT count() FROM bronze_trades_all WHERE trade_id = 9500000000").result_rows
        assert found == [(1,)]
    # A minute later the trade is older than the lag and inside the overlap the next append
    # re-reads; every other hour is found where its last commit left it.
    with warm.connect() as client:
        for warm_table in WARM_TABLES_WITH_INGESTION:
            client.command(
                f"ALTER TABLE {warm_table} UPDATE ingested_at = ingested_at - INTERVAL 1 MINUTE WHERE toString(trade_id) = {{id:String}}",
                parameters={"id": "9500000000"},
                settings={"mutations_sync": 2},
            )
    result, instance = run_offload(live, SIX_KEYS)
    assert result.success
    written = {key: latest_metadata(instance, BRONZE, key)["rows_written"] for key in SIX_KEYS}
    assert written == {key: 1 if key == SIX_KEYS[2] else 0 for key in SIX_KEYS}
    assert all(latest_metadata(instance, BRONZE, key)["offload"][key]["watermark"] for key in SIX_KEYS)
    assert_tiers_equal(warm, cold, SIX)
    with warm.connect() as client:
        assert federate(client, catalog, tables=[BRONZE])[0].cutover > SIX[2]


def test_a_checkpoint_of_less_than_one_hour_is_refused_with_the_variable_named(monkeypatch):
    import pytest

    monkeypatch.setenv("COLD_CHECKPOINT_HOURS", "0")
    with pytest.raises(ValueError, match=r"COLD_CHECKPOINT_HOURS='0' must be at least 1"):
        Settings.from_env()
    with pytest.raises(ValueError, match="checkpoint_hours must be at least 1"):
        next(offload_partitions(None, None, BRONZE, SIX_KEYS, "t", checkpoint_hours=0, now=SIX[0]))  # type: ignore[arg-type]


def test_a_commit_by_another_writer_between_two_checkpoints_is_seen_by_the_next(settings, warm, cold):
    """Run A offloads silver hours 0-3 in checkpoints of two and pauses after the first.
    Another writer offloads hours 2-3; then late trades change hour 2 in warm. A's second
    checkpoint must replace hour 2 (its plan of the cold files, made before the other
    writer's commit, is made again), not add a second copy beside the other writer's."""
    feed(warm, hours=4)
    settle(warm)  # the production settle lag (the offload's default) throughout
    catalog = cold.catalog()
    with warm.connect() as client:
        a = offload_partitions(client, catalog.load_table(SILVER.cold_identifier), SILVER, SIX_KEYS[:4], "A", checkpoint_hours=2)
        first = next(a)
        assert sorted(r.partition_key for r in first.results) == SIX_KEYS[:2]
        other = list(
            offload_partitions(client, catalog.load_table(SILVER.cold_identifier), SILVER, SIX_KEYS[2:4], "B")
        )
        assert all(r.rows_written > 0 for c in other for r in c.results)
        late = [
            [
                "binance",
                "BTCUSDT",
                str(7_000_000 + i),
                "91000.00000000",
                "0.01000000",
                "false",
                SIX[2] + timedelta(minutes=11, seconds=i),
                SIX[2] + timedelta(hours=2),
                "{}",
            ]
            for i in range(4)
        ]
        client.insert("trades_raw", late, column_names=RAW_COLUMNS)
        second = next(a)
        by_key = {r.partition_key: r for r in second.results}
        assert by_key[SIX_KEYS[2]].mode is Outcome.REPLACE and by_key[SIX_KEYS[3]].mode is Outcome.UNCHANGED
    assert_tiers_equal(warm, cold, SIX[:4], tables=[SILVER])


def test_a_checkpoint_plans_from_the_table_as_loaded_and_parses_its_metadata_again_only_to_commit(settings, warm, cold, monkeypatch):
    """Every load reads the whole metadata.json (every kept snapshot) unless the catalog read
    or wrote that file last: the first checkpoint plans from the table its caller just loaded,
    the commit loads it once more (the catalog's own check), the next checkpoint refreshes
    first, and none of these parses it again. A writer between the caller's load and
    the first commit is still seen: the commit fails its check, the retry refreshes."""
    from pyiceberg.catalog.sql import SqlCatalog

    feed(warm, hours=3)
    settle(warm)
    catalog = cold.catalog()
    loads: list[str] = []
    real_load = SqlCatalog.load_table

    def counted(self, identifier):  # type: ignore[no-untyped-def]
        loads.append(str(identifier))
        return real_load(self, identifier)

    with warm.connect() as client:
        table = catalog.load_table(BRONZE.cold_identifier)
        monkeypatch.setattr(SqlCatalog, "load_table", counted)
        parsed = count_metadata_parses(monkeypatch)
        (checkpoint,) = offload_partitions(client, table, BRONZE, SIX_KEYS[:1], "one")
        assert checkpoint.snapshot_id is not None and len(loads) == 1  # the commit's own
        loads.clear()
        checkpoints = list(offload_partitions(client, table, BRONZE, SIX_KEYS[1:3], "two", checkpoint_hours=1))
        assert [c.snapshot_id is not None for c in checkpoints] == [True, True]
        assert len(loads) == 3  # two commits, one refresh before the second checkpoint
        # Each of those loads named the file loaded or committed just before: none was read.
        assert parsed == []

    # Another writer commits between a load and the first checkpoint planned from it: its
    # commit fails the check, the retry plans again from the refreshed table.
    monkeypatch.setattr(SqlCatalog, "load_table", real_load)
    stale = catalog.load_table(BRONZE.cold_identifier)
    insert_late_raw(warm, SIX[0], count=3, first_trade_id=8_000_000)
    with warm.connect() as client:
        (other,) = offload_partitions(client, catalog.load_table(BRONZE.cold_identifier), BRONZE, SIX_KEYS[:1], "other", timedelta(0))
    insert_late_raw(warm, SIX[0], count=2, first_trade_id=8_000_100)
    loads.clear()
    monkeypatch.setattr(SqlCatalog, "load_table", counted)
    with warm.connect() as client:
        (late,) = offload_partitions(client, stale, BRONZE, SIX_KEYS[:1], "stale", timedelta(0))
    assert len(loads) == 3  # the commit refused (its load), the refresh, the commit again
    assert other.snapshot_id is not None and late.snapshot_id is not None
    assert late.results[0].state().watermark > other.results[0].state().watermark
    assert_tiers_equal(warm, cold, SIX[:3], tables=[BRONZE])
