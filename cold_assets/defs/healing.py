"""Self-healing: closed hours to repair (a failed parity check remembered per hour, late rows,
a failed materialization), requested as replacing runs with backoff, never where warm holds
fewer rows than cold (that alerts instead)."""

import hashlib
import json
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from clickhouse_connect.driver.client import Client
from dagster import (
    AssetCheckKey,
    AssetPartitionStatus,
    DagsterInstance,
    DagsterRunStatus,
    DefaultSensorStatus,
    PartitionKeyRange,
    PartitionsDefinition,
    RepositoryDefinition,
    RunRequest,
    RunsFilter,
    SensorDefinition,
    SensorEvaluationContext,
    SkipReason,
    TimeWindow,
    TimeWindowPartitionsDefinition,
    sensor,
)
from pyiceberg.catalog import Catalog
from pyiceberg.table import Table

from cold_assets.defs.alerts import Alerter, Outbox
from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.check_history import follow_parity_checks
from cold_assets.defs.checks import CHECK_NAMES
from cold_assets.defs.resources import ClickHouseResource, IcebergResource
from cold_assets.defs.schedules import OffloadJob
from cold_assets.hours import HourPolicy, HourStatus
from cold_assets.internals import BulkActionsFilter, BulkActionStatus
from cold_assets.offload.bookkeeping import snapshot_id
from cold_assets.parity.checksums import ParityBasis, fingerprint, partitions_parity, warm_fingerprints
from cold_assets.parity.proofs import fresh, still_proven
from cold_assets.partitions import hour_of, partition_key_of
from cold_assets.settings import Settings
from cold_assets.tables import EVENT_TABLES, TABLES, Layer, MirroredTable, table_by_cold_name
from cold_assets.warm.embedded_lock import EmbeddedWarmTierBusy
from cold_assets.warm.isolated import on_warm
from cold_assets.warm.read import FAR_FUTURE, warm_now, warm_read_query

SENSOR_LOCK_TIMEOUT_S = 20  # a sensor tick must end well inside Dagster's 60 s limit
SENSOR_CHILD_TIMEOUT_S = 40  # ... and so must its look at the embedded warm tier, leaving time for the rest


def sensor_warm(clickhouse: ClickHouseResource) -> ClickHouseResource:
    return clickhouse.model_copy(update={"lock_timeout_seconds": min(clickhouse.lock_timeout_seconds, SENSOR_LOCK_TIMEOUT_S)})



IN_FLIGHT = [DagsterRunStatus.QUEUED, DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def in_flight_ranges(
    instance: DagsterInstance, job_name: str, partitions_def: PartitionsDefinition, repository_def: RepositoryDefinition | None = None
) -> set[tuple[str, datetime]]:
    """(cold table, offload range start) pairs that a queued or running offload run, or a
    backfill still in progress, already covers: a repair request for them would only do the
    work twice. A run of any hour of a range covers the range (the daily bars' day): a second
    replace of it would only conflict with the first."""
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
    return {(table, table_by_cold_name(table).offload_range(hour_of(key))[0]) for table, key in covered}


def hour_keys(partitions_def: TimeWindowPartitionsDefinition, start: datetime, end: datetime) -> list[str]:
    """The hourly partition keys of [start, end) that the partitions definition has (none
    before its first partition: a run of such a key fails), by its own calendar."""
    start = max(start, partitions_def.start)
    return list(partitions_def.get_partition_keys_in_time_window(TimeWindow(start, end))) if end > start else []


REPROCESSED_CHANGED = "cold no longer holds the rows the reprocess wrote"
WARM_MOVED_SINCE_REPROCESS = "warm's hour changed since it was reprocessed"


# What each kind of shrunk hour tells the operator: none is repaired from warm.
_FEWER_ROWS_ALERT = (
    "WARM HOLDS FEWER ROWS than cold ({reason}): warm lost rows that cold keeps, so no repair is requested (a replace "
    "would delete them). If the deletion was a mistake, `cold-assets restore` the hour from cold; if it is meant, "
    "materialize the hour with allow_fewer_rows: true."
)
_SHRUNK_ALERTS = {
    REPROCESSED_CHANGED: (
        "REPROCESSED HOUR CHANGED: {reason} (a data file lost, a rollback to before the reprocess). Warm keeps the earlier "
        "logic's rows, so no repair from warm is requested: run `cold-assets reprocess` for its day again, with the DDL "
        "cold's rows should follow (--ddl)."
    ),
    WARM_MOVED_SINCE_REPROCESS: (
        "WARM CHANGED SINCE THE REPROCESS: {reason} (a late trade, feed_limits.max_lateness raised since; or rows lost). "
        "The reprocessed rows do not reflect it, and no repair from warm is requested: once raw holds the hour's "
        "messages, run `cold-assets reprocess` for its day again."
    ),
}


# Gold hours a sensor's late-row look found equal in both tiers, per cold table (its uuid):
# hour -> [cold snapshot, when proven (Unix seconds), warm's fingerprint then]. A sensor keeps
# them in the code server's memory from tick to tick, a cache rather than state: lost with the
# process, the next tick compares every hour, as before.
GoldProofs = dict[str, dict[str, list]]


def _uuid(table: Table) -> str:
    return str(table.metadata.table_uuid)


def _gold_hours_to_compare(
    client: Client, cold_table: Table, spec: MirroredTable, keys: list[str], proofs: dict[str, list], now: datetime,
    policy: HourPolicy,
) -> tuple[list[str], dict[str, list]]:
    """Of `keys`, the closed gold hours to compare with cold (an open one is the schedule's),
    and the proofs that still hold: cold's hour unchanged since (still_proven) and warm's
    fingerprint of it the same (one query over the hours with a proof)."""
    closed = [key for key in keys if policy.status(spec, hour_of(key), now) is HourStatus.CLOSED]
    candidates = still_proven(cold_table, spec, proofs, closed, now)
    if candidates:
        ranges = {key: spec.offload_range(hour_of(key)) for key in candidates}
        query = warm_read_query(
            client, spec, None, min(lo for lo, _ in ranges.values()), max(hi for _, hi in ranges.values()), until=FAR_FUTURE
        )
        warm = warm_fingerprints(client, cold_table, spec, query, None)  # as parity compares a closed replace hour
        candidates = {
            key: proof for key, proof in candidates.items() if proof[2:] == [warm.get(int(ranges[key][0].timestamp()), "0:0")]
        }
    return [key for key in closed if key not in candidates], candidates


class Repairs:
    """What a healing tick found: hours to replace (and why), and (table, hour) where warm holds
    fewer rows than cold, which are alerted, never replaced."""

    def __init__(self) -> None:
        self.tables: dict[str, set[str]] = {}  # hour -> cold tables
        self.reasons: dict[str, list[str]] = {}
        self.shrunk: dict[tuple[str, str], str] = {}  # (table, hour) -> what warm and cold hold
        self.gold_proofs: GoldProofs = {}  # after late_rows: what it proved, and the proofs it kept

    def add(self, hour: str, tables: list[str], reason: str) -> None:
        self.tables.setdefault(hour, set()).update(tables)
        self.reasons.setdefault(hour, []).append(reason)

    def late_rows(
        self, client: Client, catalog: Catalog, keys: list[str], now: datetime, policy: HourPolicy,
        gold_proofs: GoldProofs | None = None,
    ) -> None:
        """Closed hours whose warm rows moved away from cold (late data): the trade tables by
        their counts, the gold tables by their content (a late trade changes a bar, not the
        number of bars). Gold is compared on its own: a repair of raw alone leaves raw's counts
        equal and the bars stale. A gold hour in `gold_proofs` (the last ticks') whose warm
        fingerprint and cold range did not change since is not read from cold again: warm's
        fingerprints are one query, cold's files one read per hour that changed (or every
        PROOF_HOURS). What was proven is left in `self.gold_proofs`."""
        for spec in TABLES:
            content = spec.layer is Layer.GOLD
            cold_table = catalog.load_table(spec.cold_identifier)
            ranges_seen: set[datetime] = set()  # the daily bars: one repair per day, not per hour of it
            proofs = gold_proofs.get(_uuid(cold_table), {}) if content and gold_proofs is not None else None
            compare: list[str] = keys
            proven: dict[str, list] = {}
            if proofs is not None:
                compare, proven = _gold_hours_to_compare(client, cold_table, spec, keys, proofs, now, policy)
            parities = partitions_parity(
                client, cold_table, spec, compare, content, now=now, policy=policy, cold_counts_from_manifests=True
            ) if compare else []
            if proofs is not None and (proven_at := snapshot_id(cold_table)) is not None:  # the snapshot parity read
                # What parity compared is the proof: warm's fingerprint as it read it. Proofs of
                # hours this tick did not look at are kept while fresh (the TTL guard looks at a
                # slice of its window a tick).
                proven |= {
                    parity.partition_key: [proven_at, now.timestamp(), fingerprint(parity.warm_rows, parity.warm_checksum or 0)]
                    for parity in parities
                    if parity.basis is ParityBasis.WARM_HOUR and parity.content_checked and parity.content_matches
                }
                looked_at = set(keys)
                aside = {hour: proof for hour, proof in proofs.items() if hour not in looked_at and fresh(proof, now)}
                self.gold_proofs[_uuid(cold_table)] = aside | proven
            for parity in parities:
                same = parity.content_matches if content else parity.counts_match
                if parity.basis is not ParityBasis.WARM_HOUR or same:
                    continue  # open hours are the schedule's; cold-only ones are cold's
                range_start, range_end = spec.offload_range(hour_of(parity.partition_key))
                if range_start in ranges_seen or self._requested(spec.cold, range_start, range_end):
                    continue  # (the daily bars' day is already redone by a repair of one of its hours)
                ranges_seen.add(range_start)
                if parity.warm_has_fewer:
                    self.shrunk[(spec.cold, parity.partition_key)] = f"warm {parity.warm_rows} rows, cold {parity.cold_rows}"
                    continue
                # Every message lands in raw first: a raw hour that changed means late rows, and
                # every layer of that hour is redone. A difference in one later layer only is a
                # damaged cold table: that table is redone.
                # (The rejects' hours are ingestion hours: a late trade does not change them.)
                affected = [t.cold for t in EVENT_TABLES] if spec.layer is Layer.RAW else [spec.cold]
                self.add(parity.partition_key, affected, f"{spec.cold} warm {parity.warm_rows} / cold {parity.cold_rows}")

    def _requested(self, table: str, start: datetime, end: datetime) -> bool:
        return any(table in tables and start <= hour_of(hour) < end for hour, tables in self.tables.items())

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
                    and (spec.cold, key) not in self.shrunk
                    and policy.status(spec, hour_of(key), now) is HourStatus.CLOSED
                ):
                    self.add(key, [spec.cold], f"{spec.cold}: its latest materialization failed")

    def alert_shrunk(
        self, state: dict, outbox: Outbox, looked_at: set[str] | None = None, window: set[str] | None = None
    ) -> None:
        """One alert per (table, hour) where warm holds fewer rows than cold, while it lasts. A
        tick that looked at part of its `window` only (`looked_at`) keeps what it alerted of the
        rest of the window: those hours were not looked at, not found whole."""
        alerted = {(table, hour) for table, hour in (item.split("|") for item in state.get("shrunk", []))}  # "table|hour"
        unseen = {
            (table, hour) for table, hour in alerted
            if looked_at is not None and hour not in looked_at and (window is None or hour in window)
        }
        for table, hour in sorted(set(self.shrunk) - alerted):
            reason = self.shrunk[(table, hour)]
            outbox.send(f"cold.{table} hour {hour}: " + _SHRUNK_ALERTS.get(reason, _FEWER_ROWS_ALERT).format(reason=reason))
        state["shrunk"] = sorted(f"{table}|{hour}" for table, hour in set(self.shrunk) | unseen)

    def requests(
        self, covered: set[tuple[str, datetime]], prefix: str, attempts: "RepairAttempts", window: list[str], complete: bool = True,
        looked_at: list[str] | None = None,
    ) -> list[RunRequest]:
        """One replacing run per hour, of the tables no launched run or backfill covers already
        (`covered`: in_flight_ranges),
        as often as `attempts` allows (a repair that did not fix its hour is tried again with
        backoff), at most MAX_REQUESTS_PER_TICK, oldest hours first. `complete` says this tick
        looked for every kind of damage: only then is an hour it did not find taken as healed
        (or, gone from the `window` it looks at, as abandoned); `looked_at` is the part of the
        window this tick looked at (default: all of it)."""
        requests: list[RunRequest] = []
        if complete:
            attempts.healed(set(self.tables), set(window), None if looked_at is None else set(looked_at))
        for hour, found in sorted(self.tables.items()):
            if len(requests) == MAX_REQUESTS_PER_TICK:
                break  # the rest next tick: a failed week-long backfill is not 168 runs at once
            tables = {t for t in found if (t, table_by_cold_name(t).offload_range(hour_of(hour))[0]) not in covered}
            if not tables:
                attempts.in_flight(hour)  # a run or backfill covers it: its outcome is awaited
                continue
            attempt = attempts.next_attempt(hour, sorted(tables))
            if attempt is None:
                continue  # backing off after a repair that did not fix the hour
            signature = hashlib.sha1("|".join(sorted(self.reasons[hour])).encode()).hexdigest()[:12]
            requests.append(
                RunRequest(
                    # A new key per incident and attempt: Dagster never launches a run key twice.
                    run_key=f"{prefix}-{hour}-{signature}-{attempts.incident(hour)}-{attempt}",
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
MAX_REQUESTS_PER_TICK = 24


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

    def healed(self, still_damaged: set[str], window: set[str], looked_at: set[str] | None = None) -> None:
        """Forgets the hours no longer found damaged among those this tick `looked_at` (default:
        the whole window). One the sensor still looks at is whole again; one that left its
        window (past the lookback, or cold-only) was never proven whole: that is said, not
        called a recovery."""
        looked_at = window if looked_at is None else looked_at
        for hour in sorted(set(self._by_hour) - still_damaged):
            if hour in window and hour not in looked_at:
                continue  # not looked at this tick (a sensor that spreads its window over ticks)
            done = self._by_hour.pop(hour)
            if hour not in window:
                self._outbox.send(
                    f"REPAIR ABANDONED: hour {hour} left this sensor's window while still damaged after "
                    f"{done['attempts']} repair(s); rows may be missing from cold. See the operations runbook."
                )
            elif done.get("alerted"):
                self._outbox.send(f"REPAIR RECOVERED: hour {hour} is no longer found damaged.")

    def incident(self, hour: str) -> str:
        """When this run of damage of `hour` was first seen: a second incident after a recovery
        gets run keys of its own."""
        return str(int(self._by_hour[hour].get("since", 0) * 1000))

    def in_flight(self, hour: str) -> None:
        """A repair of `hour` is still running: the wait before another counts from its end."""
        if hour in self._by_hour:
            self._by_hour[hour]["requested"] = self._now.timestamp()

    def next_attempt(self, hour: str, tables: list[str]) -> int | None:
        """The number of the next repair of `hour`, or None while backing off."""
        done = self._by_hour.get(hour)
        if done is None:
            self._by_hour[hour] = {"attempts": 1, "requested": self._now.timestamp(), "since": self._now.timestamp()}
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
    gold_proofs: GoldProofs = {}  # from tick to tick, in this process (Repairs.late_rows); rebound, never changed

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
        nonlocal gold_proofs
        state = json.loads(context.cursor) if context.cursor else {}
        failing: dict[str, dict] = state.setdefault("failing", {})  # "table|check|hour" -> what differed
        for failing_key, _, differing, _ in follow_parity_checks(context.instance, state):
            if differing is not None:
                failing[failing_key] = differing
            else:
                failing.pop(failing_key, None)  # that hour passed since
        busy = None
        try:
            now, window, found = on_warm(
                clickhouse.embedded, SENSOR_CHILD_TIMEOUT_S, late_rows_in_lookback,
                clickhouse, iceberg, partitions_def, lookback, policy, gold_proofs,
            )
            gold_proofs = found.gold_proofs
        except EmbeddedWarmTierBusy as error:
            # The failed checks' hours are known without the warm tier: they are not thrown away.
            busy, now, found = error, datetime.now(UTC), Repairs()
            window = heal_window(partitions_def, now, lookback, policy)
        first = window[0] if window else partition_key_of(now)
        for failing_key, differing in sorted(failing.items()):
            table, check, hour = failing_key.split("|")
            if hour < first:
                del failing[failing_key]  # past the lookback (or cold-only): no longer this sensor's
                continue
            if policy.status(table_by_cold_name(table), hour_of(hour), now) is not HourStatus.CLOSED:
                continue
            warm_rows = differing["warm_rows_now"] if differing.get("warm_rows_now") is not None else differing["warm_rows"]
            if differing.get("refused"):
                # The offload refused it: warm lost rows cold keeps (new rows may hide the loss in
                # the hour's count). A replace would delete them: alerted, never requested.
                found.shrunk[(table, hour)] = "the offload refused to replace it: warm lost rows cold keeps"
            elif differing.get("basis") == ParityBasis.REPROCESSED.value:
                # Warm keeps the earlier logic's rows: a replace from warm would undo the reprocess.
                found.shrunk[(table, hour)] = WARM_MOVED_SINCE_REPROCESS if differing.get("warm_moved") else REPROCESSED_CHANGED
            elif warm_rows < differing["cold_rows"]:
                found.shrunk[(table, hour)] = f"warm {warm_rows} rows, cold {differing['cold_rows']}"
            else:
                found.add(hour, [table], f"{table} {check} failed")
        found.failed_materializations(context.instance, partitions_def, window, now, policy)
        alerter = Alerter.from_env()
        outbox = Outbox(state, alerter, context.log)
        if busy is None:
            found.alert_shrunk(state, outbox)
        covered = in_flight_ranges(context.instance, job.name, partitions_def, context.repository_def)
        attempts = RepairAttempts(state, context.instance, now, settings.heal_max_attempts, retry_wait, outbox, alerter)
        requests = found.requests(covered, "heal", attempts, window, complete=busy is None)
        context.update_cursor(json.dumps(state))
        note = f"; warm tier busy, late rows not looked for this tick: {busy}" if busy else ""
        return requests or SkipReason(
            f"no hour to repair requested ({len(state['repairs'])} backing off) in the last {lookback.days} days"
            + (f"; {len(found.shrunk)} (table, hour) where warm holds fewer rows than cold" if found.shrunk else "")
            + (f"; {len(outbox.pending)} alerts undelivered, tried again next tick" if outbox.pending else "")
            + note
        )

    return _self_healing


def heal_window(partitions_def: TimeWindowPartitionsDefinition, now: datetime, lookback: timedelta, policy: HourPolicy) -> list[str]:
    """The hours the self-healing looks at: the lookback, never past what warm still holds."""
    current = now.replace(minute=0, second=0, microsecond=0)
    horizon = policy.warm_horizon(now).replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return hour_keys(partitions_def, max(current - lookback, horizon), current)


def late_rows_in_lookback(
    clickhouse: ClickHouseResource, iceberg: IcebergResource, partitions_def: TimeWindowPartitionsDefinition,
    lookback: timedelta, policy: HourPolicy, gold_proofs: GoldProofs | None = None,
) -> tuple[datetime, list[str], Repairs]:
    """The self-healing's look at warm (in a child process on the embedded tier, see
    warm/isolated.py): warm's clock, the hours looked at, and the late rows found in them."""
    found = Repairs()
    with sensor_warm(clickhouse).connect() as client:
        now = warm_now(client)
        window = heal_window(partitions_def, now, lookback, policy)
        found.late_rows(client, iceberg.catalog(), window, now, policy, gold_proofs)
    return now, window, found
