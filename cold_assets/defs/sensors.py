"""Sensors: alerts on parity checks and failed offloads, self-healing of late or broken
hours, and the guard that no warm hour reaches ClickHouse's TTL without a proven copy."""

import hashlib
import json
import logging
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import cast

from clickhouse_connect.driver.client import Client
from dagster import (
    AssetCheckEvaluation,
    AssetCheckKey,
    AssetCheckSeverity,
    AssetPartitionStatus,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    DefaultSensorStatus,
    PartitionKeyRange,
    PartitionsDefinition,
    RepositoryDefinition,
    RunFailureSensorContext,
    RunRequest,
    RunsFilter,
    RunStatusSensorContext,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    TimeWindow,
    TimeWindowPartitionsDefinition,
    run_failure_sensor,
    run_status_sensor,
    sensor,
)
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster._core.execution.backfill import BulkActionsFilter, BulkActionStatus
from dagster._core.storage.asset_check_execution_record import (
    COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES,
    AssetCheckExecutionRecord,
)
from dagster._core.storage.event_log.base import EventLogStorage
from pyiceberg.catalog import Catalog

from cold_assets.defs.alerts import Alerter, Outbox
from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.checks import CHECK_NAMES, COMPACTION_PRESERVED_CONTENT
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.federation import current_cutovers
from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.offload.protocol import warm_now
from cold_assets.parity.checksums import ParityBasis, partitions_parity
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.settings import Settings
from cold_assets.tables import TABLES, Layer, table_by_cold_name
from cold_assets.warm.embedded_lock import EmbeddedWarmTierBusy
from cold_assets.warm.read import render

OffloadJob = UnresolvedAssetJobDefinition  # define_asset_job's result, resolved by Definitions
SENSOR_LOCK_TIMEOUT_S = 20  # a sensor tick must end well inside Dagster's 60 s limit
TRADE_TABLES = [t for t in TABLES if t.layer is not Layer.GOLD]


def _check_keys() -> list[AssetCheckKey]:
    return [AssetCheckKey(cold_asset_key(t), name) for t in TABLES for name in CHECK_NAMES]


def _evaluation(record: AssetCheckExecutionRecord) -> AssetCheckEvaluation | None:
    """The evaluation a check execution recorded; None for one only planned (its run failed first)."""
    event = record.event.dagster_event if record.event else None
    data = event.event_specific_data if event else None
    return data if isinstance(data, AssetCheckEvaluation) else None


def _hours(evaluation: AssetCheckEvaluation) -> tuple[list[str], dict[str, dict]]:
    metadata = evaluation.metadata
    hours = cast(list[str], metadata["hours"].value) if "hours" in metadata else []
    differing_hours = cast(list[dict], metadata["hours_differing"].value) if "hours_differing" in metadata else []
    return hours, {d["hour"]: d for d in differing_hours}


def _sensor_warm(clickhouse: ClickHouseResource) -> ClickHouseResource:
    return clickhouse.model_copy(update={"lock_timeout_seconds": min(clickhouse.lock_timeout_seconds, SENSOR_LOCK_TIMEOUT_S)})


def _follow_parity_checks(storage: EventLogStorage, state: dict) -> Iterator[tuple[str, str, dict | None, str]]:
    """The parity checks' evaluations newer than the cursor's (`state["seen"]`), oldest first:
    per hour evaluated, ("table|check|hour", check name, what differed or None, run id)."""
    for key in _check_keys():
        name = key.to_user_string()
        last = state["seen"].get(name, 0)
        records = [
            r for r in storage.get_asset_check_execution_history(key, limit=100)
            if r.id > last and r.status in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
        ]
        for record in sorted(records, key=lambda r: r.id):
            evaluation = _evaluation(record)
            if evaluation is not None:
                hours, differing = _hours(evaluation)
                for hour in hours:
                    yield f"{key.asset_key.path[-1]}|{key.name}|{hour}", key.name, differing.get(hour), record.run_id
            state["seen"][name] = max(state["seen"].get(name, 0), record.id)


@sensor(
    name="parity_alerts",
    minimum_interval_seconds=60,
    default_status=DefaultSensorStatus.RUNNING,
    description="One alert per failing (table, check, hour), and per table whose compaction_preserved_content "
    "failed; one when it recovers.",
)
def parity_alerts(context: SensorEvaluationContext) -> SkipReason:
    state = json.loads(context.cursor) if context.cursor else {"seen": {}, "failing": {}}
    alerter, storage, sent = Alerter.from_env(), context.instance.event_log_storage, 0
    outbox = Outbox(state, alerter, context.log)
    for failing_key, check, differing, run_id in _follow_parity_checks(storage, state):
        table, _, hour = failing_key.split("|")
        if differing is not None and failing_key not in state["failing"]:
            outbox.send(
                f"cold.{table} {check} FAILED for hour {hour}: warm {differing['warm_rows']} rows, "
                f"cold {differing['cold_rows']} rows. {alerter.run_link(run_id)}"
            )
            state["failing"][failing_key] = run_id
            sent += 1
        elif differing is None and failing_key in state["failing"]:
            outbox.send(f"cold.{table} {check} RECOVERED for hour {hour}. {alerter.run_link(run_id)}")
            del state["failing"][failing_key]
            sent += 1
    sent += _compaction_check_alerts(storage, state, outbox, alerter)
    # The run failure and recovery alerts have no cursor of ours: their undelivered ones wait
    # on their runs' tags, and are tried again here.
    run_alerts_waiting = retry_run_alerts(context.instance, alerter, context.log)
    context.update_cursor(json.dumps(state))
    return SkipReason(
        f"{sent} alerts sent; {len(state['failing'])} (table, check, hour) failing; "
        f"{len(outbox.pending) + run_alerts_waiting} alerts undelivered, tried again next tick"
    )


# Run tags of a failure or recovery alert the webhook did not take: the run page shows them,
# and parity_alerts tries them again every tick until delivered.
ALERT_TAG = "cold-assets/alert"
ALERT_TEXT_TAG = "cold-assets/alert-text"
UNDELIVERED, DELIVERED = "undelivered", "delivered"


def _send_run_alert(instance: DagsterInstance, run: DagsterRun, alerter: Alerter, text: str, log: logging.Logger) -> None:
    if not alerter.send(text, log):
        instance.add_run_tags(run.run_id, {ALERT_TAG: UNDELIVERED, ALERT_TEXT_TAG: text})


def retry_run_alerts(instance: DagsterInstance, alerter: Alerter, log: logging.Logger) -> int:
    """Tries the undelivered run alerts again, oldest first; returns how many still wait."""
    waiting = instance.get_runs(filters=RunsFilter(tags={ALERT_TAG: UNDELIVERED}), limit=100)
    left = 0
    for run in reversed(waiting):
        if alerter.send(run.tags.get(ALERT_TEXT_TAG, f"run {run.run_id} alert"), log):
            instance.add_run_tags(run.run_id, {ALERT_TAG: DELIVERED})
        else:
            left += 1
    return left


def _compaction_check_alerts(storage: EventLogStorage, state: dict, outbox: Outbox, alerter: Alerter) -> int:
    """compaction_preserved_content has no hours: one alert when a table's check fails with
    ERROR (from the nightly compaction or run alone), one when it passes again."""
    sent = 0
    for table in TABLES:
        key = AssetCheckKey(cold_asset_key(table), COMPACTION_PRESERVED_CONTENT)
        name, failing_key = key.to_user_string(), f"{table.cold}|{COMPACTION_PRESERVED_CONTENT}"
        last = state["seen"].get(name, 0)
        records = [
            r for r in storage.get_asset_check_execution_history(key, limit=20)
            if r.id > last and r.status in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES
        ]
        for record in sorted(records, key=lambda r: r.id):
            evaluation = _evaluation(record)
            if evaluation is None:
                continue
            failed = not evaluation.passed and evaluation.severity == AssetCheckSeverity.ERROR
            if failed and failing_key not in state["failing"]:
                outbox.send(
                    f"cold.{table.cold} {COMPACTION_PRESERVED_CONTENT} FAILED: {evaluation.description} "
                    f"{alerter.run_link(record.run_id)}"
                )
                state["failing"][failing_key] = record.run_id
                sent += 1
            elif not failed and failing_key in state["failing"]:
                outbox.send(f"cold.{table.cold} {COMPACTION_PRESERVED_CONTENT} RECOVERED. {alerter.run_link(record.run_id)}")
                del state["failing"][failing_key]
                sent += 1
            state["seen"][name] = max(state["seen"].get(name, 0), record.id)
    return sent


IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def in_flight_partitions(
    instance: DagsterInstance, job_name: str, partitions_def: PartitionsDefinition, repository_def: RepositoryDefinition | None = None
) -> set[tuple[str, str]]:
    """(cold table, partition) pairs that a queued or running offload run, or a backfill still
    in progress, already covers: a repair request for them would only do the work twice."""
    covered: set[tuple[str, str]] = set()
    every_table = [t.cold for t in TABLES]
    for run in instance.get_runs(filters=RunsFilter(job_name=job_name, statuses=IN_FLIGHT)):
        tags = run.tags
        keys: Sequence[str]
        if "dagster/partition" in tags:
            keys = [tags["dagster/partition"]]
        elif "dagster/asset_partition_range_start" in tags:
            keys = partitions_def.get_partition_keys_in_range(
                PartitionKeyRange(tags["dagster/asset_partition_range_start"], tags["dagster/asset_partition_range_end"])
            )
        else:
            continue
        tables = [k.path[-1] for k in run.asset_selection] if run.asset_selection else every_table
        covered |= {(table, key) for table in tables for key in keys}
    if repository_def is not None:
        for backfill in instance.get_backfills(filters=BulkActionsFilter(statuses=[BulkActionStatus.REQUESTED])):
            if not backfill.is_asset_backfill:
                continue
            data = backfill.get_asset_backfill_data(repository_def.asset_graph)
            remaining = data.target_subset - data.materialized_subset - data.failed_and_downstream_subset
            covered |= {(p.asset_key.path[-1], p.partition_key) for p in remaining.iterate_asset_partitions() if p.partition_key}
    return covered


def _hour_keys(partitions_def: TimeWindowPartitionsDefinition, start: datetime, end: datetime) -> list[str]:
    """The hourly partition keys of [start, end) that the partitions definition has (none
    before its first partition: a run of such a key fails), by its own calendar."""
    start = max(start, partitions_def.start)
    return list(partitions_def.get_partition_keys_in_time_window(TimeWindow(start, end))) if end > start else []


class _Repairs:
    """What a healing tick found: hours to replace (and why), and (table, hour) where warm holds
    fewer rows than cold, which are alerted, never replaced."""

    def __init__(self) -> None:
        self.tables: dict[str, set[str]] = {}  # hour -> cold tables
        self.reasons: dict[str, list[str]] = {}
        self.shrunk: dict[str, str] = {}  # "table|hour" -> what warm and cold hold

    def add(self, hour: str, tables: list[str], reason: str) -> None:
        self.tables.setdefault(hour, set()).update(tables)
        self.reasons.setdefault(hour, []).append(reason)

    def late_rows(self, client: Client, catalog: Catalog, keys: list[str], now: datetime, policy: HourPolicy) -> None:
        """Closed hours of the trade tables whose warm rows moved away from cold (late data)."""
        for spec in TRADE_TABLES:
            cold_table = catalog.load_table(spec.cold_identifier)
            for parity in partitions_parity(client, cold_table, spec, keys, False, now=now, policy=policy):
                if parity.basis is not ParityBasis.WARM_HOUR or parity.counts_match:
                    continue  # open hours are the schedule's; cold-only ones are cold's
                if parity.warm_has_fewer:
                    self.shrunk[f"{spec.cold}|{parity.partition_key}"] = f"warm {parity.warm_rows} rows, cold {parity.cold_rows}"
                    continue
                # Every message lands in raw first: a raw hour that changed means late rows, and
                # every layer of that hour is redone. A difference in one later layer only is a
                # damaged cold table: that table is redone.
                # (The rejects' hours are ingestion hours: a late trade does not change them.)
                event_tables = [t.cold for t in TABLES if not t.partitioned_by_ingestion]
                affected = event_tables if spec.layer is Layer.RAW else [spec.cold]
                self.add(parity.partition_key, affected, f"{spec.cold} warm {parity.warm_rows} / cold {parity.cold_rows}")

    def failed_materializations(
        self, instance: DagsterInstance, partitions_def: PartitionsDefinition, keys: list[str], now: datetime, policy: HourPolicy
    ) -> None:
        """Closed hours whose latest materialization failed, per Dagster's own partition status:
        a run that failed or was killed after some tables committed leaves the others behind,
        and nothing about warm's counts shows it (a gold table's bars, a heal run stopped
        half-way). Not where warm holds fewer rows than cold (a refused replace: alerted)."""
        if not keys:
            return
        for spec in TABLES:
            statuses = instance.get_status_by_partition(cold_asset_key(spec), keys, partitions_def) or {}
            for key, status in statuses.items():
                if (
                    status == AssetPartitionStatus.FAILED
                    and f"{spec.cold}|{key}" not in self.shrunk
                    and policy.status(spec, hour_of(key), now) is HourStatus.CLOSED
                ):
                    self.add(key, [spec.cold], f"{spec.cold}: its latest materialization failed")

    def alert_shrunk(self, state: dict, outbox: Outbox) -> None:
        """One alert per (table, hour) where warm holds fewer rows than cold, while it lasts."""
        alerted = set(state.get("shrunk", []))
        for item in sorted(set(self.shrunk) - alerted):
            table, hour = item.split("|")
            outbox.send(
                f"cold.{table} hour {hour}: WARM HOLDS FEWER ROWS than cold ({self.shrunk[item]}): warm lost rows that cold "
                "keeps, so no repair is requested (a replace would delete them). If the deletion is meant, materialize "
                "the hour with allow_fewer_rows: true."
            )
        state["shrunk"] = sorted(self.shrunk)

    def requests(
        self, covered: set[tuple[str, str]], prefix: str, attempts: "RepairAttempts", complete: bool = True
    ) -> list[RunRequest]:
        """One replacing run per hour, of the tables no launched run or backfill covers already,
        as often as `attempts` allows (a repair that did not fix its hour is tried again with
        backoff). `complete` says this tick looked for every kind of damage: only then is an
        hour it did not find taken as healed."""
        requests = []
        if complete:
            attempts.healed(set(self.tables))
        for hour, found in sorted(self.tables.items()):
            tables = {t for t in found if (t, hour) not in covered}
            if not tables:
                attempts.in_flight(hour)  # a run or backfill covers it: its outcome is awaited
                continue
            attempt = attempts.next_attempt(hour, sorted(tables))
            if attempt is None:
                continue  # backing off after a repair that did not fix the hour
            signature = hashlib.sha1("|".join(sorted(self.reasons[hour])).encode()).hexdigest()[:12]
            requests.append(
                RunRequest(
                    # A new key per attempt: Dagster never launches a run key twice.
                    run_key=f"{prefix}-{hour}-{signature}-{attempt}",
                    partition_key=hour,
                    asset_selection=[cold_asset_key(t) for t in TABLES if t.cold in tables],
                    # The parity checks only: the compaction's check belongs to the maintenance.
                    asset_check_keys=[
                        AssetCheckKey(cold_asset_key(t), name) for t in TABLES if t.cold in tables for name in CHECK_NAMES
                    ],
                    run_config={"ops": {f"cold__{t}": {"config": {"replace_hour": True}} for t in sorted(tables)}},
                    tags={"cold-assets/reason": "; ".join(self.reasons[hour])[:1000], REPAIR_HOUR_TAG: hour},
                )
            )
        return requests


REPAIR_HOUR_TAG = "cold-assets/repair-hour"
MAX_REPAIR_WAIT = timedelta(hours=6)


class RepairAttempts:
    """The repairs requested per hour, in a sensor's cursor (`state["repairs"]`): an hour still
    found damaged after its repair run ended (failed, or succeeded without fixing it) is
    requested again after a wait that doubles each time (from `retry_wait`, at most
    MAX_REPAIR_WAIT), and after `max_attempts` such repairs one alert names the hour and its
    last run. It keeps being retried at the longest wait: a catalog outage ends."""

    def __init__(
        self, state: dict, instance: DagsterInstance, now: datetime, max_attempts: int, retry_wait: timedelta,
        outbox: Outbox, alerter: Alerter,
    ):
        self._by_hour: dict[str, dict] = state.setdefault("repairs", {})
        self._instance, self._now, self._max, self._wait = instance, now, max_attempts, retry_wait
        self._outbox, self._alerter = outbox, alerter

    def healed(self, still_damaged: set[str]) -> None:
        for hour in sorted(set(self._by_hour) - still_damaged):
            if self._by_hour.pop(hour).get("alerted"):
                self._outbox.send(f"REPAIR RECOVERED: hour {hour} is no longer found damaged.")

    def in_flight(self, hour: str) -> None:
        """A repair of `hour` is still running: the wait before another counts from its end."""
        if hour in self._by_hour:
            self._by_hour[hour]["requested"] = self._now.timestamp()

    def next_attempt(self, hour: str, tables: list[str]) -> int | None:
        """The number of the next repair of `hour`, or None while backing off."""
        done = self._by_hour.get(hour)
        if done is None:
            self._by_hour[hour] = {"attempts": 1, "requested": self._now.timestamp()}
            return 1
        failed = int(done["attempts"])
        if failed >= self._max and not done.get("alerted"):
            last = self._instance.get_runs(filters=RunsFilter(tags={REPAIR_HOUR_TAG: hour}), limit=1)
            run = f"last run {last[0].status.value}: {self._alerter.run_link(last[0].run_id)}" if last else "no run found"
            self._outbox.send(
                f"REPAIR FAILED: hour {hour} ({', '.join(tables)}) is still damaged after {failed} repairs; {run}. "
                "It is tried again at most every "
                f"{MAX_REPAIR_WAIT.total_seconds() / 3600:.0f} h; see the operations runbook."
            )
            done["alerted"] = True
        wait = min(self._wait * 2 ** (failed - 1), MAX_REPAIR_WAIT)
        if self._now.timestamp() < float(done["requested"]) + wait.total_seconds():
            return None
        done.update(attempts=failed + 1, requested=self._now.timestamp())
        return failed + 1


def self_healing_sensor(job: OffloadJob, settings: Settings, partitions_def: TimeWindowPartitionsDefinition) -> SensorDefinition:
    lookback = timedelta(days=settings.heal_lookback_days)
    retry_wait = timedelta(seconds=settings.heal_retry_seconds)
    policy = HourPolicy.from_settings(settings)

    @sensor(
        name="self_healing",
        job=job,
        minimum_interval_seconds=300,
        default_status=DefaultSensorStatus.RUNNING,
        description="Re-offloads, by replacement, closed hours whose parity check failed (remembered per hour until it "
        "passes) or that changed in warm (late data). Never an open hour, one a run or backfill already covers, or one "
        "where warm holds fewer rows than cold (that alerts instead: warm lost rows cold keeps).",
    )
    def _self_healing(
        context: SensorEvaluationContext, clickhouse: ClickHouseResource, iceberg: IcebergResource
    ) -> list[RunRequest] | SkipReason:
        state = json.loads(context.cursor) if context.cursor else {}
        state.setdefault("seen", {})
        failing: dict[str, dict] = state.setdefault("failing", {})  # "table|check|hour" -> what differed
        for failing_key, _, differing, _ in _follow_parity_checks(context.instance.event_log_storage, state):
            if differing is not None:
                failing[failing_key] = differing
            else:
                failing.pop(failing_key, None)  # that hour passed since
        found = _Repairs()
        busy = None
        try:
            with _sensor_warm(clickhouse).connect() as client:
                now = warm_now(client)
                window = _window(now)
                found.late_rows(client, iceberg.catalog(), window, now, policy)
        except EmbeddedWarmTierBusy as error:
            # The failed checks' hours are known without the warm tier: they are not thrown away.
            busy, now = error, datetime.now(UTC)
            window = _window(now)
        first = window[0] if window else partition_key_of(now)
        for failing_key, differing in sorted(failing.items()):
            table, check, hour = failing_key.split("|")
            if hour < first:
                del failing[failing_key]  # past the lookback (or cold-only): no longer this sensor's
                continue
            if policy.status(table_by_cold_name(table), hour_of(hour), now) is not HourStatus.CLOSED:
                continue
            warm_rows = differing["warm_rows_now"] if differing.get("warm_rows_now") is not None else differing["warm_rows"]
            if warm_rows < differing["cold_rows"]:
                found.shrunk[f"{table}|{hour}"] = f"warm {warm_rows} rows, cold {differing['cold_rows']}"
            else:
                found.add(hour, [table], f"{table} {check} failed")
        found.failed_materializations(context.instance, partitions_def, window, now, policy)
        alerter = Alerter.from_env()
        outbox = Outbox(state, alerter, context.log)
        if busy is None:
            found.alert_shrunk(state, outbox)
        covered = in_flight_partitions(context.instance, job.name, partitions_def, context.repository_def)
        attempts = RepairAttempts(state, context.instance, now, settings.heal_max_attempts, retry_wait, outbox, alerter)
        requests = found.requests(covered, "heal", attempts, complete=busy is None)
        context.update_cursor(json.dumps(state))
        note = f"; warm tier busy, late rows not looked for this tick: {busy}" if busy else ""
        return requests or SkipReason(
            f"no hour to repair requested ({len(state['repairs'])} backing off) in the last {lookback.days} days"
            + (f"; {len(found.shrunk)} (table, hour) where warm holds fewer rows than cold" if found.shrunk else "")
            + (f"; {len(outbox.pending)} alerts undelivered, tried again next tick" if outbox.pending else "")
            + note
        )

    def _window(now: datetime) -> list[str]:
        """The hours this sensor looks at: the lookback, never past what warm still holds."""
        current = now.replace(minute=0, second=0, microsecond=0)
        horizon = policy.warm_horizon(now).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        return _hour_keys(partitions_def, max(current - lookback, horizon), current)

    return _self_healing


def ttl_guard_sensor(
    job: OffloadJob, settings: Settings, partitions_def: TimeWindowPartitionsDefinition
) -> SensorDefinition:
    retention = timedelta(days=settings.warm_retention_days)
    margin = timedelta(days=settings.ttl_margin_days)
    lookback = timedelta(days=settings.heal_lookback_days)
    cutover_alert = timedelta(hours=settings.cutover_alert_hours)
    retry_wait = timedelta(seconds=settings.heal_retry_seconds)
    policy = HourPolicy.from_settings(settings)

    @sensor(
        name="ttl_guard",
        job=job,
        minimum_interval_seconds=3600,
        default_status=DefaultSensorStatus.RUNNING,
        description=f"Repairs late rows of hours older than the self-healing's lookback while warm still holds them; "
        f"alerts on warm hours close to ClickHouse's TTL ({margin.days} of {retention.days} days) whose cold copy is not "
        "proven equal, and on federated views whose cutover nears the TTL.",
    )
    def _ttl_guard(
        context: SensorEvaluationContext, clickhouse: ClickHouseResource, iceberg: IcebergResource
    ) -> list[RunRequest] | SkipReason:
        at_risk: dict[str, list[str]] = {}
        found = _Repairs()
        try:
            with _sensor_warm(clickhouse).connect() as client:
                now = warm_now(client)
                current = now.replace(minute=0, second=0, microsecond=0)
                # From the oldest hour warm still holds whole: late rows of hours the self-healing
                # no longer looks at are repaired while there is time...
                oldest = current - retention + timedelta(hours=1)
                catalog = iceberg.catalog()
                found.late_rows(client, catalog, _hour_keys(partitions_def, oldest, current - lookback), now, policy)
                # ...and hours about to be dropped without a proven copy are alerted.
                keys = _hour_keys(partitions_def, oldest, current - margin)
                for table in TABLES:
                    cold_table = catalog.load_table(table.cold_identifier)
                    for parity in partitions_parity(client, cold_table, table, keys, True, now=now, policy=policy):
                        if not parity.content_matches and parity.warm_rows:
                            at_risk.setdefault(parity.partition_key, []).append(
                                f"{table.cold} (warm {parity.warm_rows}, cold {parity.cold_rows})"
                            )
                cutovers = current_cutovers(client) if client.query(render("federation_cutover_exists")).result_rows[0][0] else {}
        except EmbeddedWarmTierBusy as busy:
            return SkipReason(f"warm tier busy, trying again next tick: {busy}")
        state = json.loads(context.cursor) if context.cursor else {}
        if isinstance(state, list):  # the cursor of an earlier version: the hours alerted
            state = {"hours": state}
        alerter = Alerter.from_env()
        outbox = Outbox(state, alerter, context.log)
        alerted = set(state.get("hours", []))
        new = {hour: tables for hour, tables in at_risk.items() if hour not in alerted}
        if new:
            lines = "; ".join(f"{hour}: {', '.join(tables)}" for hour, tables in sorted(new.items()))
            outbox.send(
                f"TTL RISK: {len(new)} warm hours will be deleted by ClickHouse's {retention.days}-day TTL "
                f"within {(retention - margin).days} day(s) without a cold copy proven equal: {lines}"
            )
        # A view whose cutover stopped moving: once the TTL passes it, warm drops rows the view
        # reads from warm, and a gap opens.
        close = policy.warm_horizon(now) + cutover_alert
        stuck = {view: cutover for view, cutover in cutovers.items() if cutover < close}
        stuck_before = set(state.get("stuck", []))
        for view in sorted(set(stuck) - stuck_before):
            outbox.send(
                f"FEDERATION STUCK: the cutover of {view}_all is {stuck[view]:%Y-%m-%d %H:%M} UTC, within "
                f"{cutover_alert.total_seconds() / 3600:.0f} h of the warm TTL horizon ({policy.warm_horizon(now):%Y-%m-%d %H:%M} UTC): "
                "once the TTL passes it, the view has a gap. See the daily_audit run's federate_views step."
            )
        for view in sorted(stuck_before - set(stuck)):
            outbox.send(f"FEDERATION RECOVERED: the cutover of {view}_all is moving again.")
        found.alert_shrunk(state, outbox)
        covered = in_flight_partitions(context.instance, job.name, partitions_def, context.repository_def)
        attempts = RepairAttempts(state, context.instance, now, settings.heal_max_attempts, retry_wait, outbox, alerter)
        requests = found.requests(covered, "ttl-repair", attempts)
        context.update_cursor(json.dumps({**state, "hours": sorted(alerted | set(new)), "stuck": sorted(stuck)}))
        return requests or SkipReason(
            f"{len(at_risk)} hours at risk, {len(new)} newly alerted; {len(stuck)} views' cutovers stuck"
            + (f"; {len(outbox.pending)} alerts undelivered, tried again next tick" if outbox.pending else "")
        )

    return _ttl_guard


PARTITION_TAGS = ("dagster/partition", "dagster/asset_partition_range_start", "dagster/asset_partition_range_end")


def _hours_of(run: DagsterRun) -> str:
    return run.tags.get("dagster/partition") or (
        f"{run.tags.get('dagster/asset_partition_range_start')} .. {run.tags.get('dagster/asset_partition_range_end')}"
    )


def _previous_outcome(instance: DagsterInstance, run: DagsterRun) -> DagsterRunStatus | None:
    """How the previous run of the same job over the same hours ended, if one did."""
    tags = {k: v for k, v in run.tags.items() if k in PARTITION_TAGS}
    records = instance.get_run_records(filters=RunsFilter(job_name=run.job_name, tags=tags), limit=20)
    created = {r.dagster_run.run_id: r.create_timestamp for r in records}
    for record in records:  # newest first
        earlier = record.dagster_run
        if (
            earlier.run_id != run.run_id
            and earlier.status in (DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE)
            and record.create_timestamp <= created.get(run.run_id, record.create_timestamp)
        ):
            return earlier.status
    return None


def _what(run: DagsterRun) -> tuple[str, str]:
    """How an alert names a run: the offload and its hours, or the nightly job."""
    if any(tag in run.tags for tag in PARTITION_TAGS):
        return "offload", f" for hour(s) {_hours_of(run)}"
    return run.job_name, ""


def run_failure_alerts(name: str, jobs: list, description: str) -> SensorDefinition:
    """One alert when runs of `jobs` fail (per job and hours), none while they keep failing."""

    @run_failure_sensor(name=name, monitored_jobs=jobs, default_status=DefaultSensorStatus.RUNNING, description=description)
    def _failure_alerts(context: RunFailureSensorContext) -> None:
        run = context.dagster_run
        if _previous_outcome(context.instance, run) is DagsterRunStatus.FAILURE:
            context.log.info(f"{''.join(_what(run))} failed again; already alerted")
            return
        steps = context.get_step_failure_events()
        failed = [e.step_key or "?" for e in steps]
        # What each step said (a refused replace names table, hour, warm and cold rows).
        errors = [e.step_failure_data.error.message.strip() for e in steps if e.step_failure_data.error]
        alerter, (what, scope) = Alerter.from_env(), _what(run)
        _send_run_alert(
            context.instance, run, alerter,
            f"{what} run FAILED{scope}: {'tables' if scope else 'steps'} {', '.join(failed) or 'unknown'}: "
            f"{context.failure_event.message} {' | '.join(errors)[:2000]} {alerter.run_link(run.run_id)}",
            context.log,
        )

    return _failure_alerts


def run_recovery_alerts(name: str, jobs: list, description: str) -> SensorDefinition:
    """One message when runs of `jobs` that had failed (same job and hours) succeed again."""

    @run_status_sensor(
        run_status=DagsterRunStatus.SUCCESS, name=name, monitored_jobs=jobs,
        default_status=DefaultSensorStatus.RUNNING, description=description,
    )
    def _recovery_alerts(context: RunStatusSensorContext) -> None:
        run = context.dagster_run
        if _previous_outcome(context.instance, run) is DagsterRunStatus.FAILURE:
            alerter, (what, scope) = Alerter.from_env(), _what(run)
            _send_run_alert(context.instance, run, alerter, f"{what} RECOVERED{scope}. {alerter.run_link(run.run_id)}", context.log)

    return _recovery_alerts


def offload_failure_alerts(job: OffloadJob) -> SensorDefinition:
    return run_failure_alerts(
        "offload_failure_alerts", [job], "One alert when the offload of some hours fails, none while it keeps failing."
    )


def offload_recovery_alerts(job: OffloadJob) -> SensorDefinition:
    return run_recovery_alerts(
        "offload_recovery_alerts", [job], "One message when the offload of hours that had failed succeeds again."
    )


def nightly_failure_alerts(jobs: list) -> SensorDefinition:
    return run_failure_alerts(
        "nightly_failure_alerts", jobs,
        "One alert when a nightly job (compaction, expiry and orphans, audit) fails, none while it keeps failing.",
    )


def nightly_recovery_alerts(jobs: list) -> SensorDefinition:
    return run_recovery_alerts(
        "nightly_recovery_alerts", jobs, "One message when a nightly job that had failed succeeds again."
    )
