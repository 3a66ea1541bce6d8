"""The cold tier's Prometheus metrics, as a prometheus-client collector over `TierReader`.

Names follow Prometheus' conventions: a `cold_assets_` prefix, base units (`_seconds`,
`_bytes`), `_total` counters, instants as `_timestamp_seconds` (PromQL's `time() - x` is the
age, and stays right between scrapes). Labels never use `job` or `instance`, which Prometheus
sets itself (the nightly jobs are `nightly_job`). The exporter reads in the background every
`refresh_seconds` (TierCollector.start); scrapes render the newest reading, however many
Prometheus servers scrape and however slow the instance or the catalog answers.

The offload duration and the commit latency are histograms, not last-value gauges: ticks,
backfills and repairs write hours of very different sizes, and a gauge would show whichever
came last between two scrapes; a histogram keeps every one, and its quantiles over a window
are what an SLO needs. A commit is observed once per snapshot (it serves every hour of its
checkpoint)."""

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    InfoMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from cold_assets.federation import view_name
from cold_assets.monitoring.hour_states import HourState
from cold_assets.monitoring.tier_status import Offloaded, TierReader, TierStatus

DURATION_BUCKETS = (0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, float("inf"))
COMMIT_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, float("inf"))
PREFIX = "cold_assets"
# The exporter reads in the background, a reading at a time: a scrape renders the newest one
# and never waits on the instance or the catalog (a slow reading makes readings old, not
# scrapes fail). Only the very first scrape waits for the first reading, this long at most.
FIRST_READING_WAIT_S = 10.0
# A reading in progress this long, or readings failing this long, is a stuck exporter:
# /-/healthy says so, and `cold-assets metrics` exits for its supervisor to restart it.
STALE_AFTER_S = 120.0  # the page names a reading older than this (and 3 refreshes) as stale
STUCK_S = 600.0


@dataclass(frozen=True)
class Reading:
    """One reading and the counters as they stood after it, unchanged once made: what a scrape
    renders, whatever reading comes next meanwhile."""

    status: TierStatus
    offloaded: dict[str, Offloaded]
    durations: dict[str, tuple[tuple[int, ...], float]]  # per table: cumulative bucket counts, sum
    commits: dict[str, tuple[tuple[int, ...], float]]  # the same, of the catalog commits
    read_seconds: float
    succeeded_at: float  # Unix seconds


class TierCollector(Collector):
    def __init__(self, reader: TierReader, refresh_seconds: float = 15.0):
        if refresh_seconds < 0:
            raise ValueError(f"refresh_seconds must not be negative, got {refresh_seconds}")
        self.reader, self.refresh_seconds = reader, refresh_seconds
        self._reading_lock = threading.Lock()  # one reading at a time
        self._reading: Reading | None = None
        self._first = threading.Event()  # set once a first reading ended, however
        self._durations: dict[str, tuple[list[int], float]] = {}
        self._commits: dict[str, tuple[list[int], float]] = {}
        self._background = False
        self._stopping = threading.Event()
        self._refresher: threading.Thread | None = None
        self.last_failure: str | None = None  # why the newest reading failed, if it did
        self._failing_since: float | None = None
        self._reading_since: float | None = None  # a reading in progress started then

    def start(self) -> None:
        """Reads in the background from now on, every `refresh_seconds`, a reading at a time,
        until stop()."""
        self._background = True
        self._stopping.clear()

        def refresh_until_stopped() -> None:
            while not self._stopping.is_set():
                try:
                    self.refresh()
                except Exception:  # (kept in last_failure, served by the health check)
                    pass
                self._stopping.wait(self.refresh_seconds)

        self._refresher = threading.Thread(target=refresh_until_stopped, name="cold-assets-metrics-reader", daemon=True)
        self._refresher.start()

    def stop(self) -> None:
        """Ends the background reading (after a reading in progress)."""
        self._stopping.set()
        if self._refresher is not None:
            self._refresher.join()

    def refresh(self) -> Reading:
        """A new reading, made now (after any reading in progress)."""
        with self._reading_lock:
            self._reading_since = time.time()
            started = time.monotonic()
            try:
                status = self.reader.read()
            except Exception as failure:
                self.last_failure = f"{type(failure).__name__}: {failure}"
                self._failing_since = self._failing_since or time.time()
                raise
            finally:
                self._reading_since = None
                self._first.set()
            self.last_failure, self._failing_since = None, None
            self._reading = Reading(
                status=status,
                offloaded={table: replace(o, durations=[], commits=[]) for table, o in self.reader.offloaded.items()},
                durations=_take(self._durations, {t: o.durations for t, o in self.reader.offloaded.items()}, DURATION_BUCKETS),
                commits=_take(self._commits, {t: o.commits for t, o in self.reader.offloaded.items()}, COMMIT_BUCKETS),
                read_seconds=time.monotonic() - started,
                succeeded_at=time.time(),
            )
            return self._reading

    def reading(self) -> Reading:
        """The reading a scrape renders: the newest (in the background), or one made now if
        the newest is older than `refresh_seconds` (without a background reader)."""
        if self._background:
            self._first.wait(FIRST_READING_WAIT_S)
            if self._reading is None:
                raise RuntimeError(f"no reading of the instance and catalog yet: {self.last_failure or 'the first is in progress'}")
            return self._reading
        current = self._reading
        if current is not None and time.time() - current.succeeded_at < self.refresh_seconds:
            return current
        return self.refresh()

    def status(self) -> TierStatus:
        return self.reading().status

    def staleness(self) -> str | None:
        """Why the newest reading may no longer be the tier's state (None: it is fresh):
        readings since have failed, or none has ended for a while."""
        reading = self._reading
        if reading is None:
            return None
        age = time.time() - reading.succeeded_at
        shown = f"this is the reading of {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(reading.succeeded_at))}"
        if self.last_failure is not None:
            return f"STALE: readings fail ({self.last_failure}); {shown}"
        if self._background and age > max(3 * self.refresh_seconds, STALE_AFTER_S):
            return f"STALE: no reading for {age:.0f} s; {shown}"
        return None

    def reading_for(self) -> float:
        """How long the reading in progress has been (0: none)."""
        since = self._reading_since
        return time.time() - since if since is not None else 0.0

    def stuck_for(self) -> float:
        """How long a reading has been in progress, or readings have been failing (0: neither)."""
        failing = self._failing_since
        return max(self.reading_for(), time.time() - failing if failing is not None else 0.0)

    def collect(self) -> Iterator[Metric]:
        reading = self.reading()
        status = reading.status
        yield from self._tables(reading)
        yield from self._nightly(status)
        yield from self._repairs_and_sensors(status)
        info = InfoMetricFamily(f"{PREFIX}_build", "Versions of cold-assets and what it runs on.")
        info.add_metric([], status.versions)
        yield info
        horizon = GaugeMetricFamily(
            f"{PREFIX}_warm_ttl_horizon_timestamp_seconds", "Hours starting before this instant are past the warm tier's TTL."
        )
        horizon.add_metric([], status.warm_horizon.timestamp())
        yield horizon
        read = GaugeMetricFamily(f"{PREFIX}_exporter_read_seconds", "Time the last reading of the instance and catalog took.")
        read.add_metric([], reading.read_seconds)
        succeeded = GaugeMetricFamily(
            f"{PREFIX}_exporter_last_success_timestamp_seconds", "When the reading these metrics come from was made."
        )
        succeeded.add_metric([], reading.succeeded_at)
        yield from (read, succeeded)

    def _tables(self, reading: Reading) -> Iterator[Metric]:
        status = reading.status
        table = ["table"]

        def gauge(name: str, doc: str, labels: list[str] = table) -> GaugeMetricFamily:
            return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=labels)

        behind = gauge("table_behind_seconds", "Now minus the newest hour's watermark: how far cold is behind warm.")
        watermark = gauge("table_watermark_timestamp_seconds", "The newest hour's watermark: cold holds its warm rows up to it.")
        last = gauge("table_last_offload_timestamp_seconds", "When the newest hour's offload was recorded.")
        hours = gauge("table_hours", "The status window's hours by state (newest verdict of the checks or the audit).", ["table", "state"])
        read_ok = gauge("table_read_ok", "1 if the catalog answered for the table at the last reading; its shape is absent otherwise.")
        snapshots = gauge("table_snapshots", "Snapshots in the table's metadata.")
        manifests = gauge("table_manifests", "Manifests of the current snapshot.")
        files = gauge("table_data_files", "Live data files.")
        size = gauge("table_data_bytes", "Live data files' bytes.")
        mean = gauge("table_data_file_mean_bytes", "Mean size of a live data file.")
        records = gauge("table_records", "Rows in the current snapshot.")
        metadata = gauge("table_metadata_file_bytes", "Size of the current metadata.json, which every commit writes and every read parses.")
        cutover = gauge(
            "federation_cutover_timestamp_seconds", "The federated view reads cold before this instant and warm from it.", ["table", "view"]
        )
        rows = CounterMetricFamily(f"{PREFIX}_offload_rows", "Rows offloaded since the exporter started.", labels=table)
        written = CounterMetricFamily(f"{PREFIX}_offload_bytes", "Bytes of data files offloaded since the exporter started.", labels=table)
        offloads = CounterMetricFamily(f"{PREFIX}_offload_hours", "Hours materialized since the exporter started.", labels=table)
        commits = HistogramMetricFamily(
            f"{PREFIX}_commit_seconds", "Time a catalog commit of offloaded hours took, since the exporter started.", labels=table
        )
        durations = HistogramMetricFamily(
            f"{PREFIX}_offload_duration_seconds", "Time an hour's offload took, commit included, since the exporter started.", labels=table
        )
        bounds = ["+Inf" if b == float("inf") else str(b) for b in DURATION_BUCKETS]
        commit_bounds = ["+Inf" if b == float("inf") else str(b) for b in COMMIT_BUCKETS]
        for t in status.tables:
            name = [t.spec.cold]
            if t.watermark is not None:
                behind.add_metric(name, max(0.0, status.at.timestamp() - t.watermark.timestamp()))
                watermark.add_metric(name, t.watermark.timestamp())
            if t.last_offload is not None:
                last.add_metric(name, t.last_offload.timestamp())
            for state in HourState:
                hours.add_metric([t.spec.cold, state.value], t.hours_in(state))
            read_ok.add_metric(name, 1.0 if t.shape is not None else 0.0)
            if t.shape is not None:
                snapshots.add_metric(name, t.shape.snapshots)
                manifests.add_metric(name, t.shape.manifests)
                files.add_metric(name, t.shape.data_files)
                size.add_metric(name, t.shape.data_bytes)
                mean.add_metric(name, t.shape.data_bytes / t.shape.data_files if t.shape.data_files else 0.0)
                records.add_metric(name, t.shape.records)
                metadata.add_metric(name, t.shape.metadata_file_bytes)
            if t.cutover is not None:
                cutover.add_metric([t.spec.cold, view_name(t.spec)], t.cutover.timestamp())
            offloaded = reading.offloaded[t.spec.cold]
            rows.add_metric(name, offloaded.rows)
            written.add_metric(name, offloaded.bytes)
            offloads.add_metric(name, offloaded.hours)
            counts, total = reading.durations.get(t.spec.cold, ((0,) * len(DURATION_BUCKETS), 0.0))
            durations.add_metric(name, list(zip(bounds, counts, strict=True)), total)
            counts, total = reading.commits.get(t.spec.cold, ((0,) * len(COMMIT_BUCKETS), 0.0))
            commits.add_metric(name, list(zip(commit_bounds, counts, strict=True)), total)
        yield from (behind, watermark, last, hours, read_ok, snapshots, manifests, files, size, mean, records, metadata, cutover)
        yield from (rows, written, offloads, durations, commits)

    def _nightly(self, status: TierStatus) -> Iterator[Metric]:
        job = ["nightly_job"]
        started = GaugeMetricFamily(
            f"{PREFIX}_nightly_last_run_start_timestamp_seconds", "When the job's newest run that started started.", labels=job
        )
        ended = GaugeMetricFamily(f"{PREFIX}_nightly_last_run_end_timestamp_seconds", "When that run ended.", labels=job)
        duration = GaugeMetricFamily(f"{PREFIX}_nightly_last_run_duration_seconds", "How long that run took.", labels=job)
        success = GaugeMetricFamily(
            f"{PREFIX}_nightly_last_run_success",
            "1 if the job's newest run succeeded, 0 otherwise (failed, queued, running, or never run).", labels=job,
        )
        for run in status.nightly:
            if run.started is not None:
                started.add_metric([run.job], run.started.timestamp())
            if run.ended is not None:
                ended.add_metric([run.job], run.ended.timestamp())
                if run.started is not None:
                    duration.add_metric([run.job], (run.ended - run.started).total_seconds())
            success.add_metric([run.job], 1.0 if run.status == "SUCCESS" else 0.0)
        failed = GaugeMetricFamily(f"{PREFIX}_nightly_last_run_failed", "1 if the job's newest run failed.", labels=job)
        for run in status.nightly:
            failed.add_metric([run.job], 1.0 if run.status in ("FAILURE", "CANCELED") else 0.0)
        yield from (started, ended, duration, success, failed)
        table = ["table"]
        facts = {
            ("compaction", "data_files_before"): ("compaction_data_files_before", "Data files of the last compaction's range, before."),
            ("compaction", "data_files_after"): ("compaction_data_files_after", "Data files of the last compaction's range, after."),
            ("compaction", "bytes_before"): ("compaction_bytes_before", "Bytes of the last compaction's range, before."),
            ("compaction", "bytes_after"): ("compaction_bytes_after", "Bytes of the last compaction's range, after."),
            ("expiry", "snapshots_expired"): ("expiry_snapshots_expired", "Snapshots the last expiry expired."),
            ("expiry", "orphans_removed"): ("expiry_orphans_removed", "Orphan files the last expiry removed."),
        }
        families = {key: GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=table) for key, (name, doc) in facts.items()}
        at = {
            kind: GaugeMetricFamily(f"{PREFIX}_{kind}_last_timestamp_seconds", f"When the table's last {kind} was observed.", labels=table)
            for kind in ("compaction", "expiry")
        }
        for t in status.tables:
            for kind, maintenance in (("compaction", t.compaction), ("expiry", t.expiry)):
                if maintenance is None:
                    continue
                at[kind].add_metric([t.spec.cold], maintenance.at.timestamp())
                for (fact_kind, fact), family in families.items():
                    if fact_kind == kind and fact in maintenance.facts:
                        family.add_metric([t.spec.cold], maintenance.facts[fact])
        yield from families.values()
        yield from at.values()

    def _repairs_and_sensors(self, status: TierStatus) -> Iterator[Metric]:
        sensor = ["sensor"]
        requested = CounterMetricFamily(f"{PREFIX}_repair_runs", "Repair runs the sensor requested.", labels=sensor)
        failed = CounterMetricFamily(f"{PREFIX}_repair_runs_failed", "Repair runs the sensor requested that failed.", labels=sensor)
        for name, count in status.repairs_requested.items():
            requested.add_metric([name], count)
            failed.add_metric([name], status.repairs_failed[name])
        sent = CounterMetricFamily(f"{PREFIX}_alerts_sent", "Alerts delivered (to the log where no webhook is set).", labels=sensor)
        for name, count in status.alerts_sent.items():
            sent.add_metric([name], count)
        undelivered = GaugeMetricFamily(
            f"{PREFIX}_alerts_undelivered", "Alerts the webhook refused, to be sent again (run_alerts: run failures').", labels=sensor
        )
        for name, count in status.alerts_undelivered.items():
            undelivered.add_metric([name], count)
        ticked = GaugeMetricFamily(f"{PREFIX}_sensor_last_tick_timestamp_seconds", "When the sensor last ticked (0: never).", labels=sensor)
        tick_failed = GaugeMetricFamily(f"{PREFIX}_sensor_last_tick_failed", "1 if the sensor's newest tick failed.", labels=sensor)
        for name, health in status.sensors.items():
            # A sensor that never ticked (its daemon never ran) is as old as can be: 0.
            ticked.add_metric([name], health.last_tick.timestamp() if health.last_tick is not None else 0.0)
            tick_failed.add_metric([name], 1.0 if health.last_tick_failed else 0.0)
        yield from (requested, failed, sent, undelivered, ticked, tick_failed)
        risk = GaugeMetricFamily(
            f"{PREFIX}_ttl_risk_hours", "Warm hours near the TTL without a cold copy proven equal, at the TTL guard's last look."
        )
        risk.add_metric([], len(status.ttl_risk_hours))
        stuck = GaugeMetricFamily(
            f"{PREFIX}_federation_stuck", "1 where the view's cutover nears warm's TTL with rows to lose (the TTL guard).", labels=["view"]
        )
        for t in status.tables:
            stuck.add_metric([view_name(t.spec)], 1.0 if t.spec.warm in status.federation_stuck else 0.0)
        yield from (risk, stuck)


def _take(
    histograms: dict[str, tuple[list[int], float]], new: dict[str, list[float]], buckets: tuple[float, ...]
) -> dict[str, tuple[tuple[int, ...], float]]:
    """Adds each table's new observations to its cumulative bucket counts and sum (emptying
    them); returns every table's, frozen."""
    for table, values in new.items():
        counts, total = histograms.get(table, ([0] * len(buckets), 0.0))
        for seconds in values:
            for i, bound in enumerate(buckets):
                if seconds <= bound:
                    counts[i] += 1
            total += seconds
        values.clear()
        histograms[table] = (counts, total)
    return {table: (tuple(counts), total) for table, (counts, total) in histograms.items()}
