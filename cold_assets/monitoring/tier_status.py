"""The cold tier's state as an operator sees it, read from Dagster's instance and the catalog's
metadata only: no data file is scanned and no warm table queried (the jobs did that and
recorded it). The metrics exporter and the status page both render a `TierStatus`.

`TierReader` follows the event log incrementally: each read fetches only the records newer than
the last one it saw (materializations, check evaluations, observations, by storage id), so a
scrape costs the same after years of history as on day one. Its counters (rows and bytes
offloaded, offload durations) start at zero when the reader starts, as a Prometheus exporter's
counters do."""

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from importlib.metadata import version

import dagster
import pyiceberg
from dagster import AssetCheckKey, AssetKey, AssetRecordsFilter, DagsterInstance, DagsterRunStatus, RunsFilter
from pyiceberg.catalog import Catalog

from cold_assets.defs.alerts import ALERTS_SENT
from cold_assets.defs.assets import cold_asset_key
from cold_assets.defs.check_history import evaluation_of
from cold_assets.defs.checks import CONTENT_PARITY
from cold_assets.defs.nightly import AUDIT_RANGE, COMPACTION_JOB, DAILY_AUDIT_JOB, EXPIRY_JOB
from cold_assets.hours import HourPolicy
from cold_assets.internals import COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES, sensor_cursors
from cold_assets.monitoring.hour_states import HourState, state_now, verdicts_of
from cold_assets.partitions import hour_of, hourly_partitions, partition_key_of
from cold_assets.settings import Settings
from cold_assets.tables import TABLES, MirroredTable

NIGHTLY_JOBS = (COMPACTION_JOB, EXPIRY_JOB, DAILY_AUDIT_JOB)
REPAIR_SENSORS = ("self_healing", "ttl_guard")
ALERTING_SENSORS = ("parity_alerts", "self_healing", "ttl_guard")
SENSOR_NAME_TAG = "dagster/sensor_name"  # Dagster's tag on every run a sensor requested
# How far back a reader that just started looks for the newest verdicts and observations:
# the checks of about two days of ticks, and about two weeks of nightly observations.
FIRST_CHECK_EVALUATIONS = 200
FIRST_OBSERVATIONS = 60
PAGE = 500
PLANNED_WAIT_S = 6 * 3600  # longer than any offload run


@dataclass
class Maintenance:
    """A table's latest compaction or expiry, as its nightly run observed it."""

    at: datetime
    facts: dict[str, float]


@dataclass
class TableStatus:
    spec: MirroredTable
    hours: dict[str, HourState]  # the window's hours, oldest first
    watermark: datetime | None  # of the newest hour offloaded: cold holds its warm rows ingested up to here
    last_offload: datetime | None  # when that offload was recorded
    snapshots: int
    manifests: int
    data_files: int
    data_bytes: int
    records: int
    metadata_file_bytes: int
    cutover: datetime | None  # the federated view reads cold before this instant
    compaction: Maintenance | None
    expiry: Maintenance | None

    def hours_in(self, state: HourState) -> int:
        return sum(1 for s in self.hours.values() if s is state)


@dataclass
class NightlyRun:
    job: str
    status: str  # Dagster's run status, e.g. SUCCESS, FAILURE
    started: datetime | None
    ended: datetime | None


@dataclass
class Offloaded:
    """What offloads recorded since the reader started (counters)."""

    rows: int = 0
    bytes: int = 0
    hours: int = 0
    durations: list[float] = field(default_factory=list)  # new since the last take


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
    alerts_undelivered: dict[str, int]
    ttl_risk_hours: list[str]  # near warm's TTL without a cold copy proven equal (the TTL guard's last look)
    federation_stuck: list[str]  # warm tables whose view's cutover nears the TTL with rows to lose (the same)
    versions: dict[str, str]


def _value(metadata: Mapping[str, object], name: str) -> object:
    entry = metadata.get(name)
    return getattr(entry, "value", entry)


def _timestamp(metadata: Mapping[str, object], name: str) -> datetime | None:
    value = _value(metadata, name)
    return datetime.fromtimestamp(float(value), UTC) if isinstance(value, int | float) else None


class TierReader:
    def __init__(self, instance: DagsterInstance, catalog: Catalog, settings: Settings, window: timedelta = timedelta(days=7)):
        if window <= timedelta(0):
            raise ValueError(f"the status window must be positive, got {window}")
        self.instance, self.catalog, self.window = instance, catalog, window
        self.policy = HourPolicy.from_settings(settings)
        self.partitions_def = hourly_partitions(settings)
        self.offloaded: dict[str, Offloaded] = {t.cold: Offloaded() for t in TABLES}
        # Per table: hour -> (when the verdict was recorded, the hour's state by it).
        self._verdicts: dict[str, dict[str, tuple[float, HourState]]] = {t.cold: {} for t in TABLES}
        self._materialization_cursor: dict[str, int] = {}
        self._check_cursor: dict[str, int] = {}
        self._observation_cursor: dict[str, int] = {}
        self._watermark: dict[str, tuple[str, datetime, datetime]] = {}  # newest hour offloaded, its watermark, recorded at
        self._cutover: dict[str, datetime] = {}
        self._maintenance: dict[tuple[str, str], Maintenance] = {}
        self._clickhouse_version = "unknown"
        self._counted: dict[str, set[tuple[str, datetime]]] = {t.cold: set() for t in TABLES}

    def read(self, now: datetime | None = None) -> TierStatus:
        now = now or datetime.now(UTC)
        current = now.replace(minute=0, second=0, microsecond=0)
        first = max(current - self.window + timedelta(hours=1), self.partitions_def.start)
        window = [partition_key_of(first + timedelta(hours=i)) for i in range(int((current - first) / timedelta(hours=1)) + 1)]
        tables = [self._table(spec, window, now) for spec in TABLES]
        cursors = {name: cursor_state(c) for name, c in sensor_cursors(self.instance, ALERTING_SENSORS).items()}
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
            alerts_sent={s: int(cursors.get(s, {}).get(ALERTS_SENT, 0)) for s in ALERTING_SENSORS},
            alerts_undelivered={s: len(cursors.get(s, {}).get("undelivered", [])) for s in ALERTING_SENSORS},
            ttl_risk_hours=list(cursors.get("ttl_guard", {}).get("at_risk", [])),
            federation_stuck=list(cursors.get("ttl_guard", {}).get("stuck", [])),
            versions={
                "cold_assets": version("cold-assets"),
                "dagster": dagster.__version__,
                "pyiceberg": pyiceberg.__version__,
                "clickhouse": self._clickhouse_version,
            },
        )

    def _table(self, spec: MirroredTable, window: list[str], now: datetime) -> TableStatus:
        key = cold_asset_key(spec)
        self._follow_materializations(spec, key)
        self._follow_checks(spec, key)
        self._follow_observations(spec, key)
        verdicts = self._verdicts[spec.cold]
        for hour in [h for h in verdicts if h < window[0]]:
            del verdicts[hour]  # out of the window: never shown again
        materialized = self.instance.get_status_by_partition(key, window, self.partitions_def) or {}
        hours = {
            hour: state_now(verdicts[hour][1] if hour in verdicts else None, hour in materialized, spec, hour, now, self.policy)
            for hour in window
        }
        table = self.catalog.load_table(spec.cold_identifier)
        snapshot = table.current_snapshot()
        summary = snapshot.summary if snapshot is not None else None
        watermark = self._watermark.get(spec.cold)
        return TableStatus(
            spec=spec,
            hours=hours,
            watermark=watermark[1] if watermark else None,
            last_offload=watermark[2] if watermark else None,
            snapshots=len(table.metadata.snapshots),
            manifests=len(snapshot.manifests(table.io)) if snapshot is not None else 0,
            data_files=int(summary.get("total-data-files") or 0) if summary else 0,
            data_bytes=int(summary.get("total-files-size") or 0) if summary else 0,
            records=int(summary.get("total-records") or 0) if summary else 0,
            metadata_file_bytes=len(table.io.new_input(table.metadata_location)),
            cutover=self._cutover.get(spec.cold),
            compaction=self._maintenance.get((spec.cold, "compaction")),
            expiry=self._maintenance.get((spec.cold, "expiry")),
        )

    def _follow_materializations(self, spec: MirroredTable, key: AssetKey) -> None:
        cursor = self._materialization_cursor.get(spec.cold)
        if cursor is None:
            # Started now: the newest few give the watermark; the counters start at zero.
            newest = self.instance.fetch_materializations(key, limit=20).records
            self._materialization_cursor[spec.cold] = newest[0].storage_id if newest else 0
            self._note_watermarks(spec, newest)
            return
        while True:
            records = self.instance.fetch_materializations(
                AssetRecordsFilter(asset_key=key, after_storage_id=cursor), limit=PAGE, ascending=True
            ).records
            self._note_watermarks(spec, records)
            for record in records:
                self._count(spec, record)
            if records:
                cursor = records[-1].storage_id
            if len(records) < PAGE:
                break
        self._materialization_cursor[spec.cold] = cursor

    def _note_watermarks(self, spec: MirroredTable, records: Iterable) -> None:
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

    def _count(self, spec: MirroredTable, record: object) -> None:
        materialization = record.asset_materialization  # type: ignore[attr-defined]
        if materialization is None or materialization.partition is None:
            return
        metadata = materialization.metadata
        offloaded = self.offloaded[spec.cold]
        offloaded.hours += 1
        duration = _value(metadata, "duration_s")
        if isinstance(duration, int | float):
            offloaded.durations.append(float(duration))
        # An offload range (the daily bars' day) is written once for all its hours: counted once per run.
        written = (record.run_id, spec.offload_range(hour_of(materialization.partition))[0])  # type: ignore[attr-defined]
        if written in self._counted[spec.cold]:
            return
        self._counted[spec.cold].add(written)
        offloaded.rows += int(_value(metadata, "rows_written") or 0)  # type: ignore[call-overload]
        offloaded.bytes += int(_value(metadata, "bytes_written") or 0)  # type: ignore[call-overload]
        if len(self._counted[spec.cold]) > 10_000:
            self._counted[spec.cold] = {written}  # runs long done: their ranges come no more

    def _follow_checks(self, spec: MirroredTable, key: AssetKey) -> None:
        check = AssetCheckKey(key, CONTENT_PARITY)
        storage = self.instance.event_log_storage
        last = self._check_cursor.get(spec.cold)
        records, before = [], None
        while True:
            limit = PAGE if last is not None else FIRST_CHECK_EVALUATIONS
            page = storage.get_asset_check_execution_history(check, limit=limit, cursor=before)
            fresh = [r for r in page if last is None or r.id > last]
            records += fresh
            if last is None or len(fresh) < len(page) or len(page) < PAGE:
                break
            before = page[-1].id
        # A record is made when its run plans the check and completed in place later: the
        # cursor stays below the oldest one still planned, so that its verdict is read then
        # (not for ever: a run that died leaves its records planned).
        planned = [
            r.id for r in records
            if r.status.value == "PLANNED" and time.time() - r.create_timestamp < PLANNED_WAIT_S
        ]
        if planned:
            self._check_cursor[spec.cold] = min(planned) - 1
        elif records:
            self._check_cursor[spec.cold] = max(r.id for r in records)
        elif last is None:
            self._check_cursor[spec.cold] = 0
        for record in sorted(records, key=lambda r: r.id):
            evaluation = evaluation_of(record) if record.status in COMPLETED_ASSET_CHECK_EXECUTION_RECORD_STATUSES else None
            if evaluation is None:
                continue
            metadata = {name: value.value for name, value in evaluation.metadata.items()}
            # A warning is a check that could not compute the checksums: it proves nothing.
            content_checked = evaluation.passed or evaluation.severity.value == "ERROR"
            at = record.event.timestamp if record.event else record.create_timestamp
            self._verdict(spec, at, verdicts_of(metadata, content_checked))

    def _follow_observations(self, spec: MirroredTable, key: AssetKey) -> None:
        cursor = self._observation_cursor.get(spec.cold)
        if cursor is None:
            records = list(reversed(self.instance.fetch_observations(key, limit=FIRST_OBSERVATIONS).records))
        else:
            records = []
            while True:
                page = self.instance.fetch_observations(
                    AssetRecordsFilter(asset_key=key, after_storage_id=cursor), limit=PAGE, ascending=True
                ).records
                records += page
                if page:
                    cursor = page[-1].storage_id
                if len(page) < PAGE:
                    break
        if records:
            self._observation_cursor[spec.cold] = records[-1].storage_id
        elif cursor is None:
            self._observation_cursor[spec.cold] = 0
        for record in records:
            observation = record.asset_observation
            if observation is None:
                continue
            metadata = observation.metadata
            at = datetime.fromtimestamp(record.timestamp, UTC)
            if AUDIT_RANGE in metadata:
                values = {name: value.value for name, value in metadata.items()}
                self._verdict(spec, record.timestamp, verdicts_of(values))
                self._clickhouse_version = str(values.get("clickhouse_version") or self._clickhouse_version)
            elif (cutover := _timestamp(metadata, "federation_cutover")) is not None:
                self._cutover[spec.cold] = cutover
            elif (kind := str(_value(metadata, "maintenance"))) in ("compaction", "expiry"):
                facts = {name: float(v.value) for name, v in metadata.items() if isinstance(v.value, int | float)}
                self._maintenance[(spec.cold, kind)] = Maintenance(at, facts)

    def _verdict(self, spec: MirroredTable, at: float, states: dict[str, HourState]) -> None:
        verdicts = self._verdicts[spec.cold]
        for hour, state in states.items():
            if hour not in verdicts or verdicts[hour][0] <= at:
                verdicts[hour] = (at, state)

    def _nightly(self, job: str) -> NightlyRun:
        records = self.instance.get_run_records(RunsFilter(job_name=job), limit=1)
        if not records:
            return NightlyRun(job, "NEVER_RUN", None, None)
        record = records[0]

        def at(ts: float | None) -> datetime | None:
            return datetime.fromtimestamp(ts, UTC) if ts else None

        return NightlyRun(job, record.dagster_run.status.value, at(record.start_time), at(record.end_time))


def cursor_state(cursor: str | None) -> dict:
    """A sensor's cursor as its JSON state; {} where it has none or it is not JSON."""
    try:
        state = json.loads(cursor) if cursor else {}
    except ValueError:
        return {}
    return state if isinstance(state, dict) else {}
