"""The cold tier's state as an operator sees it, read from Dagster's instance and the catalog's
metadata only: no data file is scanned and no warm table queried (the jobs did that and
recorded it). The metrics exporter and the status page both render a `TierStatus`.

`TierReader` follows the event log incrementally: each read fetches only the records newer than
the last one it saw (materializations, check evaluations, observations), so a scrape costs
the same after years of history as on day one. Its counters (rows and bytes offloaded, offload
durations) start at zero when the reader starts, as a Prometheus exporter's counters do."""

import json
import logging
from collections import deque
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version

import dagster
import pyiceberg
from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    EventLogRecord,
    RunsFilter,
)
from pyiceberg.catalog import Catalog

from cold_assets.defs.alerts import ALERT_TAG, ALERTS_SENT, UNDELIVERED
from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.check_history import CheckCursor, follow_check
from cold_assets.defs.checks import COMPARED_AT, CONTENT_PARITY
from cold_assets.defs.nightly import AUDIT_RANGE, COMPACTION_JOB, DAILY_AUDIT_JOB, EXPIRY_JOB
from cold_assets.hours import HourPolicy
from cold_assets.internals import SensorState, sensor_states
from cold_assets.monitoring.hour_states import HourState, VerdictBook, state_now, verdicts_of
from cold_assets.partitions import hour_of, hourly_partitions, partition_key_of
from cold_assets.settings import Settings
from cold_assets.tables import TABLES, MirroredTable

log = logging.getLogger(__name__)

NIGHTLY_JOBS = (COMPACTION_JOB, EXPIRY_JOB, DAILY_AUDIT_JOB)
REPAIR_SENSORS = ("self_healing", "ttl_guard")
WATCHED_SENSORS = ("parity_alerts", "self_healing", "ttl_guard")
RUN_ALERTS = "run_alerts"  # the run failure and recovery sensors: their undelivered alerts wait in run tags
SENSOR_NAME_TAG = "dagster/sensor_name"  # Dagster's tag on every run a sensor requested
PAGE = 500
# Storage ids can commit out of order under concurrent runs (PostgreSQL): each follow reads
# this many ids back again, and what it already took is recognized by its id.
OVERLAP_IDS = 200
STARTED = (DagsterRunStatus.STARTED, DagsterRunStatus.SUCCESS, DagsterRunStatus.FAILURE, DagsterRunStatus.CANCELED)


@dataclass(frozen=True)
class Maintenance:
    """A table's latest compaction or expiry, as its nightly run observed it."""

    at: datetime
    facts: dict[str, float]


@dataclass(frozen=True)
class TableShape:
    """The table's current metadata, as the catalog holds it."""

    snapshots: int
    manifests: int
    data_files: int
    data_bytes: int
    records: int
    metadata_file_bytes: int


@dataclass
class TableStatus:
    spec: MirroredTable
    hours: dict[str, HourState]  # the window's hours, oldest first
    watermark: datetime | None  # of the newest hour offloaded: cold holds its warm rows ingested up to here
    last_offload: datetime | None  # when that offload was recorded
    shape: TableShape | None  # None where the catalog could not be read (`read_error` says why)
    read_error: str | None
    cutover: datetime | None  # the federated view reads cold before this instant
    compaction: Maintenance | None
    expiry: Maintenance | None

    def hours_in(self, state: HourState) -> int:
        return sum(1 for s in self.hours.values() if s is state)


@dataclass(frozen=True)
class NightlyRun:
    job: str
    status: str  # Dagster's status of the job's newest run, e.g. SUCCESS, FAILURE, QUEUED; NEVER_RUN
    started: datetime | None  # of the newest run that started (a queued one has not)
    ended: datetime | None  # of that run, once it ended


@dataclass(frozen=True)
class SensorHealth:
    last_tick: datetime | None
    last_tick_failed: bool


@dataclass
class Offloaded:
    """What offloads recorded since the reader started (counters)."""

    rows: int = 0
    bytes: int = 0
    hours: int = 0
    durations: list[float] = field(default_factory=list)  # new since the last take
    commits: list[float] = field(default_factory=list)  # catalog commit latencies, new since the last take


@dataclass
class TierStatus:
    at: datetime
    window: list[str]
    warm_horizon: datetime  # hours before it are past warm's TTL
    tables: list[TableStatus]
    nightly: list[NightlyRun]
    repairs_requested: dict[str, int]  # per sensor: runs it requested
    repairs_failed: dict[str, int]
    alerts_sent: dict[str, int]  # per sensor, as its cursor counts them
    alerts_undelivered: dict[str, int]  # per sensor; RUN_ALERTS for the run failure alerts
    sensors: dict[str, SensorHealth]
    ttl_risk_hours: list[str]  # near warm's TTL without a cold copy proven equal (the TTL guard's last look)
    federation_stuck: list[str]  # warm tables whose view's cutover nears the TTL with rows to lose (the same)
    versions: dict[str, str]


def _value(metadata: Mapping[str, object], name: str) -> object:
    entry = metadata.get(name)
    return getattr(entry, "value", entry)


def _timestamp(metadata: Mapping[str, object], name: str) -> datetime | None:
    value = _value(metadata, name)
    return datetime.fromtimestamp(float(value), UTC) if isinstance(value, int | float) else None


def cursor_state(cursor: str | None) -> dict:
    """A sensor's cursor as its JSON state; {} where it has none or it is not a JSON object."""
    try:
        state = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}


class _Seen:
    """What a follow took lately (the storage ids its overlap re-reads, the offload ranges a run
    wrote), bounded: the oldest are forgotten first."""

    def __init__(self, size: int = 20 * OVERLAP_IDS):
        self._order: deque[Hashable] = deque(maxlen=size)
        self._items: set[Hashable] = set()

    def seen(self, item: Hashable) -> bool:
        return item in self._items

    def first_time(self, item: Hashable) -> bool:
        if item in self._items:
            return False
        if len(self._order) == self._order.maxlen:
            self._items.discard(self._order[0])
        self._order.append(item)
        self._items.add(item)
        return True


class TierReader:
    def __init__(self, instance: DagsterInstance, catalog: Catalog, settings: Settings, window: timedelta | None = None):
        """`window`: the hours shown and counted, up to the current one (default: warm's
        retention and a day, so that the hours warm forgot last show as cold-only)."""
        window = window if window is not None else timedelta(days=settings.warm_retention_days + 1)
        if window < timedelta(hours=1):
            raise ValueError(f"the status window must be at least an hour, got {window}")
        self.instance, self.catalog, self.window = instance, catalog, window
        self.policy = HourPolicy.from_settings(settings)
        self.partitions_def = hourly_partitions(settings)
        self.offloaded: dict[str, Offloaded] = {t.cold: Offloaded() for t in TABLES}
        self._books = {t.cold: VerdictBook(t) for t in TABLES}
        self._materialization_cursor: dict[str, int] = {}
        self._check_cursor: dict[str, CheckCursor] = {}
        self._observation_cursor: dict[str, int] = {}
        self._seen = {t.cold: _Seen() for t in TABLES}
        self._ranges_counted = {t.cold: _Seen() for t in TABLES}
        self._materialized: dict[str, set[str]] = {t.cold: set() for t in TABLES}  # the window's hours ever materialized
        self._watermark: dict[str, tuple[str, datetime, datetime]] = {}  # newest hour offloaded, its watermark, recorded at
        self._cutover: dict[str, datetime] = {}
        self._maintenance: dict[tuple[str, str], Maintenance] = {}
        self._clickhouse_version = "unknown"
        self._versions = {"cold_assets": version("cold-assets"), "dagster": dagster.__version__, "pyiceberg": pyiceberg.__version__}
        # A newly started reader reads this far back: the check records of about two days of
        # ticks (Dagster keeps a planned record per hour of a run, and the evaluation as one
        # more: a tick's two hours are three records), and about five observations a day
        # (audit, federation, compaction, expiry) of the window.
        self.first_check_evaluations = 600
        self.first_observations = max(60, 5 * (window.days + 2))

    def read(self, now: datetime | None = None) -> TierStatus:
        now = now or datetime.now(UTC)
        current = now.replace(minute=0, second=0, microsecond=0)
        first = max(current - self.window + timedelta(hours=1), self.partitions_def.start)
        hours = int((current - first) / timedelta(hours=1)) + 1 if first <= current else 0
        window = [partition_key_of(first + timedelta(hours=i)) for i in range(hours)]
        tables = [self._table(spec, window, now) for spec in TABLES]
        sensors = sensor_states(self.instance, WATCHED_SENSORS)
        cursors = {name: cursor_state(state.cursor) for name, state in sensors.items()}
        ttl_guard = cursors.get("ttl_guard", {})
        self._cutovers_seen_by_the_ttl_guard(ttl_guard)
        for table in tables:
            table.cutover = self._cutover.get(table.spec.cold)
        return TierStatus(
            at=now,
            window=window,
            warm_horizon=self.policy.warm_horizon(now),
            tables=tables,
            nightly=[self._nightly(job) for job in NIGHTLY_JOBS],
            repairs_requested={s: self.instance.get_runs_count(RunsFilter(tags={SENSOR_NAME_TAG: s})) for s in REPAIR_SENSORS},
            repairs_failed={
                s: self.instance.get_runs_count(RunsFilter(tags={SENSOR_NAME_TAG: s}, statuses=[DagsterRunStatus.FAILURE]))
                for s in REPAIR_SENSORS
            },
            alerts_sent={s: int(cursors.get(s, {}).get(ALERTS_SENT, 0)) for s in WATCHED_SENSORS},
            alerts_undelivered={s: len(cursors.get(s, {}).get("undelivered", [])) for s in WATCHED_SENSORS}
            | {RUN_ALERTS: self.instance.get_runs_count(RunsFilter(tags={ALERT_TAG: UNDELIVERED}))},
            sensors={name: _health(sensors.get(name)) for name in WATCHED_SENSORS},
            ttl_risk_hours=list(ttl_guard.get("at_risk", [])),
            federation_stuck=list(ttl_guard.get("stuck", [])),
            versions=self._versions | {"clickhouse": self._clickhouse_version},
        )

    def _table(self, spec: MirroredTable, window: list[str], now: datetime) -> TableStatus:
        key = cold_asset_key(spec)
        self._follow_materializations(spec, key, window)
        self._follow_checks(spec, key)
        self._follow_observations(spec, key)
        book = self._books[spec.cold]
        if window:
            book.forget_before(window[0])
        # The window's hours ever materialized (a failed or running materialization after one
        # that succeeded leaves it: cold holds that one), as the follow took them in.
        materialized = self._materialized[spec.cold]
        if window:
            materialized.difference_update([h for h in materialized if h < window[0]])
        hours = {hour: state_now(book.state(hour), hour in materialized, spec, hour, now, self.policy) for hour in window}
        watermark = self._watermark.get(spec.cold)
        try:
            shape, error = self._shape(spec), None
        except Exception as failure:  # one table's catalog read failing leaves the others' figures
            log.warning("cold-assets metrics: reading %s from the catalog failed: %r", spec.cold, failure)
            shape, error = None, f"{type(failure).__name__}: {failure}"
        return TableStatus(
            spec=spec,
            hours=hours,
            watermark=watermark[1] if watermark else None,
            last_offload=watermark[2] if watermark else None,
            shape=shape,
            read_error=error,
            cutover=None,
            compaction=self._maintenance.get((spec.cold, "compaction")),
            expiry=self._maintenance.get((spec.cold, "expiry")),
        )

    def _shape(self, spec: MirroredTable) -> TableShape:
        table = self.catalog.load_table(spec.cold_identifier)
        snapshot = table.current_snapshot()
        summary = snapshot.summary if snapshot is not None else None

        def total(name: str) -> int:
            return int(summary.get(name) or 0) if summary is not None else 0

        return TableShape(
            snapshots=len(table.metadata.snapshots),
            manifests=len(snapshot.manifests(table.io)) if snapshot is not None else 0,
            data_files=total("total-data-files"),
            data_bytes=total("total-files-size"),
            records=total("total-records"),
            metadata_file_bytes=len(table.io.new_input(table.metadata_location)),
        )

    def _follow_materializations(self, spec: MirroredTable, key: AssetKey, window: list[str]) -> None:
        cursor = self._materialization_cursor.get(spec.cold)
        if cursor is None:
            # Started now: the watermark is the newest hour's among the last records written
            # (a stopped schedule's last hours) and the window's last hours' records (after a
            # backfill wrote old hours last); the counters start at zero.
            newest = self.instance.fetch_materializations(key, limit=20).records
            self._note_watermarks(spec, newest)
            recent = window[-48:]
            if recent:
                self._note_watermarks(spec, self.instance.fetch_materializations(
                    AssetRecordsFilter(asset_key=key, asset_partitions=recent), limit=len(recent) * 4
                ).records)
            cursor = newest[0].storage_id if newest else 0
            self._materialization_cursor[spec.cold] = cursor
            # The window's hours materialized so far, asked of those hours only (Dagster's
            # get_materialized_partitions groups the asset's whole history, every reading).
            if window:  # (no partitions asked: all of them)
                self._materialized[spec.cold].update(self.instance.get_latest_storage_id_by_partition(
                    key, DagsterEventType.ASSET_MATERIALIZATION, set(window)
                ))
            # What the next follows' overlap re-reads of before now is not new: not counted
            # (what was written since, above the cursor, is).
            for record in self.instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, after_storage_id=max(0, cursor - OVERLAP_IDS), before_storage_id=cursor + 1),
                limit=OVERLAP_IDS + 1,
            ).records:
                self._seen[spec.cold].first_time(record.storage_id)
            return
        after = max(0, cursor - OVERLAP_IDS)
        while True:
            records = self.instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=PAGE, ascending=True
            ).records
            for record in records:
                if not self._seen[spec.cold].seen(record.storage_id):
                    self._note_watermarks(spec, [record])
                    self._count(spec, record)
                    if record.partition_key is not None:
                        self._materialized[spec.cold].add(record.partition_key)
                    self._seen[spec.cold].first_time(record.storage_id)  # once taken in whole
            if records:
                after = records[-1].storage_id
                self._materialization_cursor[spec.cold] = max(cursor, after)  # kept page by page
            if len(records) < PAGE:
                break

    def _note_watermarks(self, spec: MirroredTable, records: Iterable[EventLogRecord]) -> None:
        """The table's freshness is the watermark of its newest hour offloaded: a repair of an
        old hour, whose watermark is as fresh, must not hide a schedule that stopped."""
        for record in records:
            materialization = record.asset_materialization
            if materialization is None or materialization.partition is None:
                continue
            watermark = _timestamp(materialization.metadata, "watermark")
            newest = self._watermark.get(spec.cold)
            if watermark is not None and (newest is None or (materialization.partition, watermark) > (newest[0], newest[1])):
                self._watermark[spec.cold] = (materialization.partition, watermark, datetime.fromtimestamp(record.timestamp, UTC))

    def _count(self, spec: MirroredTable, record: EventLogRecord) -> None:
        materialization = record.asset_materialization
        if materialization is None or materialization.partition is None:
            return
        metadata = materialization.metadata
        offloaded = self.offloaded[spec.cold]
        offloaded.hours += 1
        duration = _value(metadata, "duration_s")
        if isinstance(duration, int | float):
            offloaded.durations.append(float(duration))
        # An offload range (the daily bars' day) is written once for all its hours of a run:
        # each hour's record holds the range's rows and bytes, counted once.
        if self._ranges_counted[spec.cold].first_time((record.run_id, spec.offload_range(hour_of(materialization.partition))[0])):
            offloaded.rows += _int(_value(metadata, "rows_written"))
            offloaded.bytes += _int(_value(metadata, "bytes_written"))
        # A commit serves every hour of its checkpoint: observed once, by its snapshot.
        commit = _value(metadata, "commit_s")
        if isinstance(commit, int | float) and self._ranges_counted[spec.cold].first_time(("commit", _value(metadata, "snapshot_id"))):
            offloaded.commits.append(float(commit))

    def _follow_checks(self, spec: MirroredTable, key: AssetKey) -> None:
        check = AssetCheckKey(key, CONTENT_PARITY)
        evaluations, self._check_cursor[spec.cold] = follow_check(
            self.instance, check, self._check_cursor.get(spec.cold), first_page=self.first_check_evaluations
        )
        for record, evaluation in evaluations:
            metadata = {name: value.value for name, value in evaluation.metadata.items()}
            # (Before `hours_unchecked` was recorded: a check that only warned computed no checksum.)
            content_checked = evaluation.passed or evaluation.severity.value == "ERROR"
            compared = metadata.get(COMPARED_AT)
            if isinstance(compared, int | float):
                self._books[spec.cold].record(float(compared), verdicts_of(metadata, content_checked))
            else:  # (recorded before checks carried it)
                at = record.event.timestamp if record.event else record.create_timestamp
                self._books[spec.cold].record(at, verdicts_of(metadata, content_checked), exact=False)

    def _follow_observations(self, spec: MirroredTable, key: AssetKey) -> None:
        cursor = self._observation_cursor.get(spec.cold)
        if cursor is None:
            records = list(reversed(self.instance.fetch_observations(key, limit=self.first_observations).records))
            if records:
                self._observation_cursor[spec.cold] = records[-1].storage_id
            else:
                self._observation_cursor[spec.cold] = 0
        else:
            records, after = [], max(0, cursor - OVERLAP_IDS)
            while True:
                page = self.instance.fetch_observations(
                    AssetRecordsFilter(asset_key=key, after_storage_id=after), limit=PAGE, ascending=True
                ).records
                records += page
                if page:
                    after = page[-1].storage_id
                    self._observation_cursor[spec.cold] = max(cursor, after)
                if len(page) < PAGE:
                    break
        for record in records:  # (re-read ones apply again, to the same result)
            observation = record.asset_observation
            if observation is None:
                continue
            metadata = observation.metadata
            if AUDIT_RANGE in metadata:
                values = {name: value.value for name, value in metadata.items()}
                compared = values.get(COMPARED_AT)
                if isinstance(compared, int | float):
                    self._books[spec.cold].record(float(compared), verdicts_of(values))
                else:
                    self._books[spec.cold].record(self._run_start(record), verdicts_of(values), exact=False)
                self._clickhouse_version = str(values.get("clickhouse_version") or self._clickhouse_version)
            elif (cutover := _timestamp(metadata, "federation_cutover")) is not None:
                self._cutover[spec.cold] = max(cutover, self._cutover.get(spec.cold, cutover))
            elif (kind := str(_value(metadata, "maintenance"))) in ("compaction", "expiry"):
                facts = {name: float(v.value) for name, v in metadata.items() if isinstance(v.value, int | float)}
                observed = datetime.fromtimestamp(record.timestamp, UTC)
                if (spec.cold, kind) not in self._maintenance or self._maintenance[(spec.cold, kind)].at <= observed:
                    self._maintenance[(spec.cold, kind)] = Maintenance(observed, facts)

    def _run_start(self, record: EventLogRecord) -> float:
        """When the run that recorded an audit began (an audit recorded before `compared_at`
        was: it compared no hour later than that)."""
        run = self.instance.get_run_record_by_id(record.run_id)
        return run.start_time if run is not None and run.start_time else record.timestamp

    def _cutovers_seen_by_the_ttl_guard(self, state: dict) -> None:
        """The TTL guard reads every view's cutover each tick (keyed by warm table): newer than
        the audit's observation when `cold-assets federate` moved it since."""
        for spec in TABLES:
            seen = (state.get("cutovers") or {}).get(spec.warm)
            if isinstance(seen, str):
                try:
                    cutover = datetime.fromisoformat(seen)
                except ValueError:
                    continue
                self._cutover[spec.cold] = max(cutover, self._cutover.get(spec.cold, cutover))

    def _nightly(self, job: str) -> NightlyRun:
        newest = self.instance.get_run_records(RunsFilter(job_name=job), limit=1)
        if not newest:
            return NightlyRun(job, "NEVER_RUN", None, None)
        # (A run cancelled while queued, or that failed to launch, has no start.)
        started = self.instance.get_run_records(RunsFilter(job_name=job, statuses=list(STARTED)), limit=5)
        record = next((r for r in started if r.start_time), None)

        def at(ts: float | None) -> datetime | None:
            return datetime.fromtimestamp(ts, UTC) if ts else None

        return NightlyRun(
            job, newest[0].dagster_run.status.value,
            at(record.start_time) if record else None, at(record.end_time) if record else None,
        )


def _health(state: SensorState | None) -> SensorHealth:
    if state is None or state.last_tick_at is None:
        return SensorHealth(None, False)
    return SensorHealth(datetime.fromtimestamp(state.last_tick_at, UTC), state.last_tick_failed)


def _int(value: object) -> int:
    return int(value) if isinstance(value, int | float) else 0
