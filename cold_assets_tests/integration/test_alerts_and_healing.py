"""Alerts to a real HTTP receiver on loopback, self-healing, and the TTL guard."""

from datetime import UTC, datetime, timedelta

from dagster import AssetCheckKey, build_sensor_context
from pyiceberg.expressions import EqualTo

from cold_assets.cold.ranges import range_filter
from cold_assets.definitions import build_definitions
from cold_assets.defs.alerts import Alerter, parity_alerts
from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.schedules import OFFLOAD_JOB
from cold_assets.monitoring.hour_states import HourState
from cold_assets.monitoring.tier_status import TierReader
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.tables import EVENT_TABLES, TABLES, Layer, table_by_cold_name
from cold_assets.tools.instance import embedded_instance
from cold_assets_tests.support.offload_helpers import (
    KEYS,
    NO_OVERLAP,
    RAW_COLUMNS,
    START,
    assert_tiers_equal,
    feed,
    insert_late_raw,
    run_offload,
)


def _execute(settings, request, raise_on_error=True):
    """Runs a sensor's RunRequest the way the daemon launches it, in process: its selection,
    config and tags, and its run key."""
    defs = build_definitions(settings)
    job = defs.resolve_job_def(OFFLOAD_JOB).get_subset(
        asset_selection=set(request.asset_selection),
        asset_check_selection={AssetCheckKey(k, c) for k in request.asset_selection for c in ("row_count_parity", "content_parity")},
    )
    return job.execute_in_process(
        instance=embedded_instance(settings), partition_key=request.partition_key, run_config=request.run_config,
        tags={**request.tags, "dagster/run_key": request.run_key}, raise_on_error=raise_on_error,
    )


def _sensor(settings, name, cursor=None):
    defs = build_definitions(settings)
    sensor = defs.resolve_sensor_def(name)
    # The sensors' own resources (Spark's, which starts a JVM, is for the maintenance jobs).
    resources = {key: defs.resources[key] for key in ("clickhouse", "iceberg")}
    # As the daemon does: the resources live as long as the tick.
    with build_sensor_context(instance=embedded_instance(settings), cursor=cursor, resources=resources, definitions=defs) as context:
        result = sensor(context)
        return result, context.cursor


def _delete_a_cold_bronze_row(cold, partition_key: str):
    """Damages cold bronze's hour: one of its rows goes. Returns bronze's spec."""
    bronze = table_by_cold_name("bronze_trades")
    table = cold.catalog().load_table(bronze.cold_identifier)
    start, end = bronze.offload_range(hour_of(partition_key))
    victim = table.scan(row_filter=range_filter("exchange_ts", start, end), limit=1).to_arrow()["trade_id"][0].as_py()
    table.delete(EqualTo("trade_id", victim))
    return bronze


def test_without_a_webhook_alerts_go_to_the_log_and_nothing_fails(caplog):
    assert Alerter(None, None).send("hello") is True  # the log line is the delivery: nothing waits
    assert "hello" in caplog.text


def test_a_broken_hour_alerts_once_is_repaired_and_recovers_once(settings, warm, cold, receiver):
    feed(warm)
    run_offload(settings, KEYS)
    instance = embedded_instance(settings)
    assert parity_alerts(build_sensor_context(instance=instance)) is not None  # nothing failing yet
    # Damage one cold hour: delete a row of bronze in the second hour.
    bronze = _delete_a_cold_bronze_row(cold, KEYS[1])
    # The next scheduled run of that hour re-checks it: the append finds nothing new, the check fails.
    assert not run_offload(settings, [KEYS[1]], NO_OVERLAP, raise_on_error=False)[0].success
    context = build_sensor_context(instance=instance)
    parity_alerts(context)
    alerts = receiver.texts()
    assert len(alerts) == 2  # row_count_parity and content_parity, for that hour only
    assert all("cold.bronze_trades" in a and KEYS[1] in a and "FAILED" in a for a in alerts)
    assert any("row_count_parity" in a and "cold " in a and "http://dagster.example:3000/runs/" in a for a in alerts)
    parity_alerts(build_sensor_context(instance=instance, cursor=context.cursor))
    assert len(receiver.texts()) == 2  # no storm on the next tick
    # The self-healing sensor asks for exactly that hour, bronze only, replaced.
    requests, _ = _sensor(settings, "self_healing")
    assert [(r.partition_key, [k.path[-1] for k in r.asset_selection]) for r in requests] == [(KEYS[1], ["bronze_trades"])]
    assert requests[0].run_config == {"ops": {"cold__bronze_trades": {"config": {"replace_hour": True}}}}
    assert _execute(settings, requests[0]).success
    assert_tiers_equal(warm, cold, [hour_of(KEYS[1])], tables=[bronze])
    parity_alerts(build_sensor_context(instance=instance, cursor=context.cursor))
    recoveries = receiver.texts()[2:]
    assert len(recoveries) == 2 and all("RECOVERED" in r and KEYS[1] in r for r in recoveries)
    requests, _ = _sensor(settings, "self_healing")
    assert not isinstance(requests, list) or requests == []


def test_a_failed_check_followed_by_a_backfill_of_many_hours_before_the_next_tick_still_alerts(settings, warm, cold, receiver):
    """Dagster records a PLANNED row per hour per check when a run is created, and the evaluation
    (one per run: our checks cover the run's hours) as a row of its own: a backfill over many
    hours, between two ticks, puts hundreds of rows above a failed evaluation. The sensor must
    read down to its cursor, not the newest page only."""
    feed(warm)
    run_offload(settings, KEYS)
    instance = embedded_instance(settings)
    context = build_sensor_context(instance=instance)
    parity_alerts(context)
    reader = TierReader(instance, cold.catalog(), settings)
    reader.read()
    bronze = _delete_a_cold_bronze_row(cold, KEYS[1])
    assert not run_offload(settings, [KEYS[1]], NO_OVERLAP, raise_on_error=False)[0].success
    # An operator backfills the five days before: one run of 120 hours.
    backfilled = [partition_key_of(START - timedelta(hours=h)) for h in range(120, 0, -1)]
    assert run_offload(settings, backfilled, NO_OVERLAP)[0].success
    key = AssetCheckKey(cold_asset_key(bronze), "content_parity")
    history = instance.event_log_storage.get_asset_check_execution_history(key, limit=1000)
    failed = next(r for r in history if r.status.value == "FAILED")
    assert sum(1 for r in history if r.id > failed.id) > 120
    parity_alerts(build_sensor_context(instance=instance, cursor=context.cursor))
    alerts = receiver.texts()
    assert len(alerts) == 2 and all("cold.bronze_trades" in a and KEYS[1] in a and "FAILED" in a for a in alerts)
    shown = next(t for t in reader.read().tables if t.spec.cold == "bronze_trades")
    assert shown.hours[KEYS[1]] is HourState.MISMATCHED


def test_late_trades_make_the_sensor_request_that_hour_only(settings, warm, cold):
    feed(warm)
    run_offload(settings, KEYS)
    insert_late_raw(warm, hour_of(KEYS[0]), 4, first_trade_id=7_000_000_000, exchange="kraken")
    requests, _ = _sensor(settings, "self_healing")
    assert [r.partition_key for r in requests] == [KEYS[0]]
    assert {k.path[-1] for k in requests[0].asset_selection} == {t.cold for t in EVENT_TABLES}
    assert _execute(settings, requests[0]).success
    assert_tiers_equal(warm, cold, [hour_of(k) for k in KEYS])


def _an_hour_near_the_ttl(warm, monkeypatch, first_trade_id: int):
    """Three trades of the hour 29.5 days ago, ingested on time, in a deployment whose
    partitions start a day before it; returns the hour and the settings."""
    from cold_assets.settings import Settings

    old = (datetime.now(UTC) - timedelta(days=29, hours=12)).replace(minute=0, second=0, microsecond=0)
    rows = [
        ["binance", "BTCUSDT", str(first_trade_id + i), "90000.00000000", "0.01000000", "false",
         old + timedelta(minutes=5 + i), old + timedelta(minutes=5 + i), "{}", old + timedelta(minutes=6 + i)]
        for i in range(3)
    ]
    with warm.connect() as client:
        client.insert("trades_raw", rows, column_names=[*RAW_COLUMNS, "ingested_at"])
    monkeypatch.setenv("COLD_PARTITIONS_START", (old - timedelta(days=1)).strftime("%Y-%m-%d-%H:%M"))
    return old, Settings.from_env()


def test_an_hour_near_the_ttl_without_a_proven_copy_raises_the_ttl_alert(settings, warm, cold, receiver, monkeypatch):
    # Trades ingested on time 29.5 days ago that no offload ever took (the cold tier covers
    # them: its partitions start earlier).
    old, settings = _an_hour_near_the_ttl(warm, monkeypatch, 6_000_000_000)
    result, cursor = _sensor(settings, "ttl_guard")
    alerts = receiver.texts()
    assert len(alerts) == 1 and "TTL RISK" in alerts[0] and partition_key_of(old) in alerts[0]
    assert "raw_trades" in alerts[0] and "bronze_trades" in alerts[0]
    import json

    state = json.loads(cursor)
    state["hours"].append("2020-01-01-00:00")  # alerted years ago: long past the TTL
    _, cursor = _sensor(settings, "ttl_guard", json.dumps(state))
    assert len(receiver.texts()) == 1  # once per hour at risk
    kept = json.loads(cursor)["hours"]
    assert partition_key_of(old) in kept and "2020-01-01-00:00" not in kept  # only hours that can still be at risk


def test_the_ttl_guard_proves_an_old_hour_once_and_again_only_after_its_cold_copy_changed(live, warm, cold, receiver, monkeypatch):
    """An hour near the TTL is proven equal once; later ticks keep the proof while nothing
    changed its cold copy, and look again after anything did: another writer's delete (then
    TTL RISK), an offload's repair of the hour (proven again, no alert). A proof made is the
    cursor's [snapshot, when] for the hour with a new `when`; one kept keeps its `when`."""
    import json

    from cold_assets.parity.proofs import PROOF_HOURS

    old, settings = _an_hour_near_the_ttl(warm, monkeypatch, 6_100_000_000)
    key = partition_key_of(old)
    assert run_offload(settings, [key])[0].success
    raw = table_by_cold_name("raw_trades")

    def proofs(cursor) -> dict[str, list]:
        return {table: hours[key] for table, hours in json.loads(cursor)["proven"].items() if key in hours}

    def proved(cursor_before):
        """The tables whose proof of the hour a tick made (not kept), and the cursor after."""
        before = proofs(cursor_before) if cursor_before else {}
        _, cursor = _sensor(settings, "ttl_guard", cursor_before)
        made = {table for table, proof in proofs(cursor).items() if table not in before or proof[1] != before[table][1]}
        return made, cursor

    first, cursor = proved(None)
    assert {"raw_trades", "bronze_trades", "silver_trades"} <= first
    again, cursor = proved(cursor)
    assert again == set() and proofs(cursor).keys() == first  # nothing changed: the proofs stand
    assert receiver.texts() == []
    # Another writer deletes the hour's rows from cold raw.
    cold.catalog().load_table(raw.cold_identifier).delete(range_filter("exchange_ts", old, old + timedelta(hours=1)))
    after_delete, cursor = proved(cursor)
    assert after_delete == set() and proofs(cursor).keys() == first - {"raw_trades"}
    alerts = receiver.texts()
    assert len(alerts) == 1 and "TTL RISK" in alerts[0] and key in alerts[0] and "raw_trades" in alerts[0], alerts
    # The repair (the offload replacing the hour) changes the hour: proven again, no new alert.
    assert run_offload(settings, [key], {"ops": {"cold__raw_trades": {"config": {"replace_hour": True}}}})[0].success
    repaired, cursor = proved(cursor)
    assert repaired == {"raw_trades"}
    assert len(receiver.texts()) == 1
    settled, cursor = proved(cursor)
    assert settled == set()
    # A proof is made again after PROOF_HOURS, reading the files once more.
    state = json.loads(cursor)
    for hours in state["proven"].values():
        for proof in hours.values():
            proof[1] -= PROOF_HOURS * 3600 + 1
    renewed, _ = proved(json.dumps(state))
    assert renewed == first


def test_a_failing_offload_alerts_once_then_recovers_once(settings, warm, cold, receiver):
    from dagster import DagsterEventType, build_run_status_sensor_context

    feed(warm, hours=1)
    with warm.connect() as client:  # an incompatible warm change: bronze offloads fail
        client.command("ALTER TABLE bronze_trades MODIFY COLUMN is_buyer_maker UInt8")
    defs = build_definitions(settings)
    instance = embedded_instance(settings)

    def evaluate(result, sensor_name, event_type):
        event = next(e for e in result.all_events if e.event_type == event_type)
        context = build_run_status_sensor_context(
            sensor_name=sensor_name, dagster_event=event, dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id),
        )
        sensor = defs.resolve_sensor_def(sensor_name)
        sensor(context.for_run_failure() if event_type == DagsterEventType.RUN_FAILURE else context)

    for _ in range(2):  # fails twice: one alert
        failed, _ = run_offload(settings, KEYS[:1], raise_on_error=False)
        assert not failed.success
        evaluate(failed, "offload_failure_alerts", DagsterEventType.RUN_FAILURE)
    assert len(receiver.texts()) == 1
    assert "offload run FAILED" in receiver.texts()[0] and KEYS[0] in receiver.texts()[0] and "bronze_trades" in receiver.texts()[0]
    with warm.connect() as client:
        client.command("ALTER TABLE bronze_trades MODIFY COLUMN is_buyer_maker Bool")
    fixed, _ = run_offload(settings, KEYS[:1])
    evaluate(fixed, "offload_recovery_alerts", DagsterEventType.RUN_SUCCESS)
    assert len(receiver.texts()) == 2 and "offload RECOVERED" in receiver.texts()[1] and KEYS[0] in receiver.texts()[1]


def test_the_sensor_leaves_hours_that_a_queued_run_or_a_backfill_already_covers(settings, warm, cold):
    import time

    from dagster import DagsterRunStatus
    from dagster._core.execution.backfill import PartitionBackfill

    feed(warm)
    run_offload(settings, KEYS)
    for n, key in enumerate(KEYS[:2]):
        insert_late_raw(warm, hour_of(key), 3, first_trade_id=7_100_000_000 + 10 * n)
    requests, _ = _sensor(settings, "self_healing")
    assert sorted(r.partition_key for r in requests) == KEYS[:2]
    defs = build_definitions(settings)
    instance = embedded_instance(settings)
    # A run of the first hour has been launched and not finished; a backfill of the second is
    # in progress. (A QUEUED run needs a code location's origin, which only a daemon has.)
    launched = instance.create_run_for_job(
        defs.resolve_job_def(OFFLOAD_JOB), status=DagsterRunStatus.STARTING, tags={"dagster/partition": KEYS[0]}
    )
    assert instance.get_run_by_id(launched.run_id).status == DagsterRunStatus.STARTING
    asset_graph = defs.get_repository_def().asset_graph
    instance.add_backfill(
        PartitionBackfill.from_asset_partitions(
            backfill_id="covering", asset_graph=asset_graph, partition_names=[KEYS[1]],
            asset_selection=[k for k in asset_graph.materializable_asset_keys if k.path[0] == "cold"],
            backfill_timestamp=time.time(), tags={}, dynamic_partitions_store=instance, all_partitions=False,
            title=None, description=None, run_config=None,
        )
    )
    requests, _ = _sensor(settings, "self_healing")
    assert not isinstance(requests, list) or requests == []


def test_a_failing_nightly_job_alerts_once_then_recovers_once(settings, warm, cold, receiver):
    from dagster import DagsterEventType, build_run_status_sensor_context
    from pyiceberg.expressions import EqualTo

    from cold_assets.defs.nightly import DAILY_AUDIT_JOB

    feed(warm, hours=1)
    run_offload(settings, KEYS[:1])
    bronze = table_by_cold_name("bronze_trades")
    table = cold.catalog().load_table(bronze.cold_identifier)
    table.delete(EqualTo("trade_id", table.scan(limit=1).to_arrow()["trade_id"][0].as_py()))  # the audit will fail
    defs = build_definitions(settings)
    instance = embedded_instance(settings)
    job = defs.resolve_job_def(DAILY_AUDIT_JOB)
    until = (hour_of(KEYS[0]) + timedelta(days=1)).date().isoformat()
    config = {"ops": {"audit_cold_tier": {"config": {"lookback_days": 1, "until": until}}}}

    def audit_and_evaluate(sensor_name, event_type):
        result = job.execute_in_process(instance=instance, run_config=config, raise_on_error=False)
        event = next(e for e in result.all_events if e.event_type == event_type)
        context = build_run_status_sensor_context(
            sensor_name=sensor_name,
            dagster_event=event,
            dagster_instance=instance,
            dagster_run=instance.get_run_by_id(result.run_id),
        )
        sensor = defs.resolve_sensor_def(sensor_name)
        sensor(context.for_run_failure() if event_type == DagsterEventType.RUN_FAILURE else context)
        return result

    for _ in range(2):
        assert not audit_and_evaluate("nightly_failure_alerts", DagsterEventType.RUN_FAILURE).success
    (alert,) = receiver.texts()
    assert "daily_audit run FAILED" in alert and "audit_verdict" in alert and "bronze_trades" in alert
    assert "http://dagster.example:3000/runs/" in alert
    run_offload(settings, KEYS[:1], {"ops": {"cold__bronze_trades": {"config": {"replace_hour": True}}}})  # repaired
    assert audit_and_evaluate("nightly_recovery_alerts", DagsterEventType.RUN_SUCCESS).success
    assert len(receiver.texts()) == 2 and "daily_audit RECOVERED" in receiver.texts()[1]
    # The compaction and expiry jobs are watched by the same two sensors (Dagster keeps the
    # monitored jobs in a private field only).
    for name in ("nightly_failure_alerts", "nightly_recovery_alerts"):
        monitored = {j.name for j in defs.resolve_sensor_def(name)._monitored_jobs}
        assert monitored == {"compact_cold", "expire_cold_snapshots", "daily_audit"}


def test_a_compaction_proof_that_fails_alerts_once_and_recovers_once(settings, receiver):
    from dagster import AssetCheckEvaluation, AssetCheckSeverity, AssetKey

    from cold_assets.defs.checks import COMPACTION_PRESERVED_CONTENT

    instance = embedded_instance(settings)
    key = AssetKey(["cold", "silver_trades"])

    def report(passed: bool):
        instance.report_runless_asset_event(
            AssetCheckEvaluation(
                asset_key=key,
                check_name=COMPACTION_PRESERVED_CONTENT,
                passed=passed,
                severity=AssetCheckSeverity.ERROR,
                description="compaction changed the content of snapshot 1 (10 -> 9 rows)" if not passed else "same rows",
            )
        )

    report(False)
    context = build_sensor_context(instance=instance)
    parity_alerts(context)
    parity_alerts(build_sensor_context(instance=instance, cursor=context.cursor))
    (alert,) = receiver.texts()
    assert "cold.silver_trades compaction_preserved_content FAILED" in alert and "10 -> 9 rows" in alert
    report(True)
    parity_alerts(build_sensor_context(instance=instance, cursor=context.cursor))
    assert len(receiver.texts()) == 2 and "RECOVERED" in receiver.texts()[1]


def test_a_cutover_that_stopped_moving_alerts_before_the_ttl_opens_a_gap(settings, warm, cold, receiver, monkeypatch):
    old, settings = _an_hour_near_the_ttl(warm, monkeypatch, 6_200_000_000)  # rows the TTL is about to drop
    now = datetime.now(UTC)
    with warm.connect() as client:
        client.insert(
            "federation_cutover",
            [["bronze_trades", old], ["silver_trades", now - timedelta(hours=2)]],
            column_names=["table_name", "cutover"],
        )
    _, cursor = _sensor(settings, "ttl_guard")
    _, cursor = _sensor(settings, "ttl_guard", cursor)
    def federation_alerts() -> list[str]:  # (the old hour raises TTL RISK too)
        return [text for text in receiver.texts() if "FEDERATION" in text]

    (alert,) = federation_alerts()
    assert "FEDERATION STUCK" in alert and "bronze_trades_all" in alert and "silver" not in alert
    with warm.connect() as client:
        client.insert("federation_cutover", [["bronze_trades", now - timedelta(hours=2)]], column_names=["table_name", "cutover"])
    _sensor(settings, "ttl_guard", cursor)
    alerts = federation_alerts()
    assert len(alerts) == 2 and "FEDERATION RECOVERED" in alerts[1] and "bronze_trades_all" in alerts[1]


def test_the_sensor_remembers_a_content_mismatch_per_hour_and_a_busy_warm_tier_loses_no_repair(settings, warm, cold, monkeypatch):
    import os
    import subprocess
    import sys

    import pyarrow as pa

    feed(warm)
    run_offload(settings, KEYS)
    # One value of one silver row changes in cold; every count stays the same.
    silver = table_by_cold_name("silver_trades")
    table = cold.catalog().load_table(silver.cold_identifier)
    start, end = silver.offload_range(hour_of(KEYS[1]))
    row = table.scan(row_filter=range_filter("exchange_ts", start, end), limit=1).to_arrow()
    price = row.schema.field("price")
    changed = row.set_column(row.schema.get_field_index("price"), price, pa.array([row["price"][0].as_py() + 1], price.type))
    with table.transaction() as tx:
        tx.delete(EqualTo("trade_id", row["trade_id"][0].as_py()) & EqualTo("exchange", row["exchange"][0].as_py()))
        tx.append(changed)
    assert run_offload(settings, [KEYS[1]])[0].success  # content_parity fails (not blocking) for that hour
    assert run_offload(settings, [KEYS[2]])[0].success  # ...and the check's latest evaluation, of another hour, passes
    requests, cursor = _sensor(settings, "self_healing")
    assert [(r.partition_key, [k.path[-1] for k in r.asset_selection]) for r in requests] == [(KEYS[1], ["silver_trades"])]
    # Another process holds the embedded warm tier: the tick cannot look for late rows, but the
    # failed check's hour is still requested.
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from cold_assets.defs.resources import ClickHouseResource; from cold_assets.settings import Settings\n"
            "with ClickHouseResource.from_settings(Settings.from_env()).connect():\n    print('held', flush=True); time.sleep(60)",
        ],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        monkeypatch.setenv("COLD_CHDB_LOCK_TIMEOUT_SECONDS", "1")
        # The first tick's request was never launched here: no wait before asking again.
        monkeypatch.setenv("COLD_HEAL_RETRY_SECONDS", "0")
        from cold_assets.settings import Settings

        requests, _ = _sensor(Settings.from_env(), "self_healing", cursor)
    finally:
        holder.kill()
        holder.wait()
    assert [r.partition_key for r in requests] == [KEYS[1]]
    # Repaired, the hour passes, and the sensor forgets it.
    assert _execute(settings, requests[0]).success
    requests, _ = _sensor(settings, "self_healing", cursor)
    assert not isinstance(requests, list) or requests == []


def test_late_rows_of_an_hour_older_than_the_healing_lookback_are_repaired_by_the_ttl_guard(settings, warm, cold, receiver):
    old = (datetime.now(UTC) - timedelta(days=12)).replace(minute=0, second=0, microsecond=0)
    from cold_assets.tools.simulate import FeedConfig, simulate

    with warm.connect() as client:
        simulate(client, FeedConfig(start=old, hours=1, trades_per_hour=500))
    key = partition_key_of(old)
    run_offload(settings, [key])
    insert_late_raw(warm, old, 3, first_trade_id=7_200_000_000)
    healing, _ = _sensor(settings, "self_healing")
    assert not isinstance(healing, list) or healing == []  # 12 days: past the 7-day lookback
    # The TTL guard looks at a slice of its 23 days a tick, in turn: the hour is found within
    # as many ticks as the window has slices, and no hour is requested twice meanwhile.
    from cold_assets.defs.ttl_guard import LATE_ROWS_HOURS_PER_TICK

    cursor, ticks = None, 0
    while True:
        ticks += 1
        requests, cursor = _sensor(settings, "ttl_guard", cursor)
        if isinstance(requests, list) and requests:
            break
        assert ticks < -(-23 * 24 // LATE_ROWS_HOURS_PER_TICK), "not found in a whole turn of the window"
    assert [r.partition_key for r in requests] == [key]
    assert {k.path[-1] for k in requests[0].asset_selection} == {t.cold for t in EVENT_TABLES}
    assert _execute(settings, requests[0]).success
    assert_tiers_equal(warm, cold, [old])
    assert receiver.texts() == []  # repaired in time: nothing to alert


def test_a_gold_hour_proven_equal_is_not_read_from_cold_again_until_warm_or_cold_changed(live, warm, cold, monkeypatch):
    """The sensors' late-row look proves gold hours equal once and compares them again only
    where warm's fingerprint moved (a late trade), cold's range changed (another writer's
    delete), or the proof is PROOF_HOURS old. The production settle lag; the spy records which
    hours each look hands parity and runs the real one."""
    from cold_assets.defs import healing
    from cold_assets.defs.healing import late_rows_in_lookback
    from cold_assets.hours import HourPolicy
    from cold_assets.parity.proofs import PROOF_HOURS
    from cold_assets.partitions import hourly_partitions

    feed(warm)
    assert run_offload(live, KEYS)[0].success
    compared: dict[str, list[str]] = {}
    real = healing.partitions_parity

    def spy(client, cold_table, spec, keys, *args, **kwargs):
        compared[spec.cold] = list(keys)
        return real(client, cold_table, spec, keys, *args, **kwargs)

    monkeypatch.setattr(healing, "partitions_parity", spy)
    defs = build_definitions(live)
    clickhouse, iceberg = defs.resources["clickhouse"], defs.resources["iceberg"]
    partitions_def, policy = hourly_partitions(live), HourPolicy.from_settings(live)

    def look(proofs):
        compared.clear()
        _, window, found = late_rows_in_lookback(clickhouse, iceberg, partitions_def, timedelta(days=7), policy, proofs)
        return window, found

    window, first = look({})
    gold = [t.cold for t in TABLES if t.layer is Layer.GOLD]
    assert all(set(KEYS) <= set(compared[t]) for t in gold) and not first.tables  # every closed hour read once
    proven = first.gold_proofs
    assert len(proven) == len(gold) and all(set(KEYS) <= set(hours) for hours in proven.values())
    _, second = look(proven)
    assert [t for t in gold if t in compared] == [] and compared["raw_trades"] == window  # gold: warm's fingerprints only
    assert not second.tables and second.gold_proofs == proven  # nothing changed: the proofs stand
    # An offload commit of one hour (a repair replacing KEYS[2]'s bars): that hour is read
    # again, the others stay proven (carried to the new snapshot).
    replace = {"ops": {"cold__gold_ohlcv_1m": {"config": {"replace_hour": True}}}}
    assert run_offload(live, [KEYS[2]], replace)[0].success
    _, after_commit = look(second.gold_proofs)
    assert compared.get("gold_ohlcv_1m") == [KEYS[2]] and "gold_ohlcv_1h" not in compared, compared
    assert not after_commit.tables
    # A late trade changes warm's bars of KEYS[0], and its day's: those hours are compared again.
    insert_late_raw(warm, hour_of(KEYS[0]), 1, first_trade_id=7_100_000_000)
    _, third = look(after_commit.gold_proofs)
    assert compared["gold_ohlcv_1m"] == [KEYS[0]] and compared["gold_ohlcv_1h"] == [KEYS[0]]
    day = [k for k in compared["gold_ohlcv_1d"]]
    assert KEYS[0] in day and set(day) == {k for k in window if hour_of(k).date() == hour_of(KEYS[0]).date()}, day
    assert KEYS[0] in third.tables and "gold_ohlcv_1m" in third.tables[KEYS[0]]
    bars_1m = next(hours for uuid, hours in third.gold_proofs.items() if KEYS[1] in hours and KEYS[0] not in hours)
    assert bars_1m  # the late hour's proof is gone until it is equal again
    # Another writer deletes a bar of KEYS[1] from cold: not an offload, so no proof of the
    # table holds; every hour is read, and the damaged one found.
    bars = table_by_cold_name("gold_ohlcv_1m")
    table = cold.catalog().load_table(bars.cold_identifier)
    start, end = bars.offload_range(hour_of(KEYS[1]))
    victim = table.scan(row_filter=range_filter("window_start", start, end), limit=1).to_arrow()["window_start"][0].as_py()
    table.delete(EqualTo("window_start", victim.isoformat()))
    _, fourth = look(third.gold_proofs)
    assert set(KEYS) <= set(compared["gold_ohlcv_1m"]) and compared["gold_ohlcv_1h"] == [KEYS[0]]  # (still late)
    assert "gold_ohlcv_1m" in fourth.tables[KEYS[1]]
    # A proof PROOF_HOURS old is made again: cold's files read once more.
    aged = {uuid: {hour: [at, when - PROOF_HOURS * 3600 - 1, *rest] for hour, (at, when, *rest) in hours.items()}
            for uuid, hours in fourth.gold_proofs.items()}
    look(aged)
    assert set(KEYS) <= set(compared["gold_ohlcv_1h"])


def test_the_self_healing_keeps_its_gold_proofs_from_tick_to_tick_through_its_child_process(live, warm, cold, tmp_path, monkeypatch):
    """On the embedded tier the look runs in a child process: the proofs go there and come back
    with its answer, and the sensor keeps them for its next tick. Seen through the child's own
    profile (COLD_WARM_CHILD_PROFILE): parity is asked for the gold tables on the first tick
    only, the production settle lag, nothing changed between."""
    import pstats

    from cold_assets.warm.isolated import PROFILE_ENV

    feed(warm)
    assert run_offload(live, KEYS)[0].success
    defs = build_definitions(live)  # one code server: one sensor, its cache
    sensor = defs.resolve_sensor_def("self_healing")
    resources = {key: defs.resources[key] for key in ("clickhouse", "iceberg")}
    instance = embedded_instance(live)

    def parity_calls(tick: str) -> int:
        monkeypatch.setenv(PROFILE_ENV, str(tmp_path / tick))
        with build_sensor_context(instance=instance, resources=resources, definitions=defs) as context:
            sensor(context)
        stats = pstats.Stats(str(tmp_path / f"{tick}-late_rows_in_lookback.pstats")).stats  # type: ignore[attr-defined]
        return next(calls for (path, _, name), (_, calls, *_) in stats.items() if name == "partitions_parity" and "checksums" in path)

    assert parity_calls("first") == len(TABLES)
    assert parity_calls("second") == len([t for t in TABLES if t.layer is not Layer.GOLD])
